// The job catalog: every job's queue, payload and result schema, retry policy and deadline.
// Producers and consumers both import it; consumers parse the payload before acting.
import type { z } from "zod";
import { HOST_JOBS } from "./host-jobs.ts";

export interface JobDefinition<Payload extends z.ZodType = z.ZodType, Result extends z.ZodType = z.ZodType> {
  /** Which queue family carries it: one queue per host, or a shared queue. */
  queue: "host" | "compression" | "webhooks";
  payload: Payload;
  result: Result;
  attempts: number;
  backoff: { type: "fixed" | "exponential"; delayMs: number };
  /** The handler is aborted and the attempt fails after this long. */
  timeoutMs: number;
}

export const JOB_CATALOG = {
  ...HOST_JOBS,
} as const satisfies Record<string, JobDefinition>;

export type JobName = keyof typeof JOB_CATALOG;
export type JobPayload<Name extends JobName> = z.input<(typeof JOB_CATALOG)[Name]["payload"]>;
export type ParsedJobPayload<Name extends JobName> = z.output<(typeof JOB_CATALOG)[Name]["payload"]>;
export type JobResult<Name extends JobName> = z.output<(typeof JOB_CATALOG)[Name]["result"]>;

export type JobsOfQueue<Queue extends JobDefinition["queue"]> = {
  [Name in JobName]: (typeof JOB_CATALOG)[Name]["queue"] extends Queue ? Name : never;
}[JobName];

export function queueName(prefixless: JobDefinition["queue"], hostId?: string): string {
  if (prefixless === "host") {
    if (!hostId) throw new Error("a host job needs a host id");
    return `host-${hostId}`;
  }
  return prefixless;
}
