// The job catalog: every job's queue, payload and result schema, retry policy and deadline.
// Producers and consumers both import it; consumers parse the payload before acting.
import type { z } from "zod";
import { COMPRESSION_JOBS } from "./compression-jobs.ts";
import { HOST_JOBS } from "./host-jobs.ts";
import { SCHEDULE_JOBS } from "./schedule-jobs.ts";
import { WEBHOOK_JOBS } from "./webhook-jobs.ts";

export interface JobDefinition<Payload extends z.ZodType = z.ZodType, Result extends z.ZodType = z.ZodType> {
  /** Which queue family carries it: `host` and `compression` have one queue per host (payloads live on it). */
  queue: "host" | "compression" | "webhooks" | "schedules";
  payload: Payload;
  result: Result;
  attempts: number;
  /** "custom" defers to the worker's backoffStrategy (the webhook retry schedule). */
  backoff: { type: "fixed" | "exponential" | "custom"; delayMs: number };
  /** The handler is aborted and the attempt fails after this long. */
  timeoutMs: number;
}

export const JOB_CATALOG = {
  ...HOST_JOBS,
  ...WEBHOOK_JOBS,
  ...COMPRESSION_JOBS,
  ...SCHEDULE_JOBS,
} as const satisfies Record<string, JobDefinition>;

export type JobName = keyof typeof JOB_CATALOG;
export type JobPayload<Name extends JobName> = z.input<(typeof JOB_CATALOG)[Name]["payload"]>;
export type ParsedJobPayload<Name extends JobName> = z.output<(typeof JOB_CATALOG)[Name]["payload"]>;
export type JobResult<Name extends JobName> = z.output<(typeof JOB_CATALOG)[Name]["result"]>;

export type JobsOfQueue<Queue extends JobDefinition["queue"]> = {
  [Name in JobName]: (typeof JOB_CATALOG)[Name]["queue"] extends Queue ? Name : never;
}[JobName];

const PER_HOST_QUEUES: ReadonlySet<JobDefinition["queue"]> = new Set(["host", "compression"]);

export function queueName(family: JobDefinition["queue"], hostId?: string): string {
  if (!PER_HOST_QUEUES.has(family)) return family;
  if (!hostId) throw new Error(`a ${family} job needs a host id`);
  return `${family}-${hostId}`;
}

/**
 * BullMQ's key prefix for a queue: REDIS_PREFIX, then the queue's name as a hash tag, so that every key of one queue
 * (`<prefix>:{<queue>}:<queue>:wait`, `…:active`, …) hashes to one Redis Cluster slot, which its Lua scripts need,
 * while different queues (one per host) spread over the slots. Keys still start with `<prefix>:` (ACLs, scans).
 */
export const queuePrefix = (prefix: string, queue: string): string => `${prefix}:{${queue}}`;
