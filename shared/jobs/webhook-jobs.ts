// Jobs of the shared `webhooks` queue: one delivery of one event to one endpoint, retried on the configured schedule.
import { z } from "zod";
import type { JobDefinition } from "./catalog.ts";

export const WEBHOOK_JOBS = {
  "webhook.deliver": {
    queue: "webhooks",
    payload: z.object({
      delivery_id: z.string(),
      endpoint_id: z.string(),
      /** The event id: the `webhook-id` header, the same on every retry. */
      event_id: z.string(),
      /** The exact JSON body that is signed and sent: {type, timestamp, data}. No secret is ever in here. */
      body: z.string(),
    }),
    result: z.object({ status_code: z.number().int(), duration_ms: z.number().int() }),
    // The worker decides when the schedule (WEBHOOK_RETRY_SCHEDULE) is exhausted; this is only a ceiling.
    attempts: 100,
    backoff: { type: "custom", delayMs: 0 },
    // Above the longest allowed WEBHOOK_TIMEOUT_MS: the request's own timeout ends an attempt first.
    timeoutMs: 75_000,
  },
} as const satisfies Record<string, JobDefinition>;
