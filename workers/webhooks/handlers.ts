// The delivery handler: read the endpoint's mirror, sign with standardwebhooks, POST, report the outcome,
// and either finish or fail with the delay the retry schedule (and Retry-After) ask for.
import { UnrecoverableError } from "bullmq";
import type { Redis } from "ioredis";
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import { type DeliveryOutcome, readEndpointMirror, reportOutcome } from "../../shared/webhooks/mirror.ts";
import { retryDelayMs } from "../../shared/webhooks/retry-schedule.ts";
import { activeSecrets, type SecretBox } from "../../shared/webhooks/secrets.ts";
import { signDelivery } from "../../shared/webhooks/signing.ts";
import type { UrlGuard } from "../../shared/webhooks/url-guard.ts";
import { postWebhook } from "./post.ts";

export interface WebhookHandlerDeps {
  /** A connection for mirror reads and outcome reports. */
  redis: Redis;
  prefix: string;
  secretBox: SecretBox;
  guard: UrlGuard;
  /** Delays before retry 1, 2, …; the attempt after the last one is final. */
  retrySchedule: readonly number[];
  timeoutMs: number;
}

/** A failed attempt that should be retried after `delayMs` (read by the worker's backoffStrategy). */
export class RetryableDeliveryError extends Error {
  override name = "RetryableDeliveryError";
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
  }
}

/** Delays for BullMQ: the one the handler computed, else (an unexpected error) the plain schedule. */
export function webhookBackoff(retrySchedule: readonly number[]) {
  return (attemptsMade: number, _type?: string, error?: Error): number =>
    error instanceof RetryableDeliveryError
      ? error.delayMs
      : (retryDelayMs(retrySchedule, attemptsMade) ?? retrySchedule.at(-1)!);
}

export function createWebhookHandlers(deps: WebhookHandlerDeps): JobHandlers<"webhook.deliver"> {
  return {
    "webhook.deliver": async (payload, { job, signal, log }) => {
      const attempt = job.attemptsMade + 1;
      const attemptedAt = new Date();
      const report = (result: Omit<DeliveryOutcome, "delivery_id" | "endpoint_id" | "attempted_at">) =>
        reportOutcome(deps.redis, deps.prefix, {
          delivery_id: payload.delivery_id,
          endpoint_id: payload.endpoint_id,
          attempted_at: attemptedAt.toISOString(),
          ...result,
        });

      const endpoint = await readEndpointMirror(deps.redis, deps.prefix, payload.endpoint_id);
      if (!endpoint?.enabled) {
        const why = endpoint ? `endpoint disabled: ${endpoint.disabledReason ?? "by its owner"}` : "endpoint deleted";
        await report(notSent(why));
        throw new UnrecoverableError(why);
      }

      const secrets = activeSecrets(deps.secretBox.open(endpoint.sealedSecrets), attemptedAt);
      const headers = signDelivery(payload.event_id, payload.body, secrets, attemptedAt);
      const result = await postWebhook(
        endpoint.url,
        payload.body,
        { ...headers },
        {
          guard: deps.guard,
          timeoutMs: deps.timeoutMs,
          signal,
        },
      );
      log.debug({ deliveryId: payload.delivery_id, status: result.statusCode, ms: result.durationMs }, "attempt");

      const sent = { sent: true, status_code: result.statusCode, duration_ms: result.durationMs };
      if (result.error === null) {
        await report({ ...sent, succeeded: true, error: null, next_attempt_at: null, gone: false }).catch(
          (error: Error) => log.error({ err: error.message }, "delivered, but the outcome could not be reported"),
        );
        return { status_code: result.statusCode!, duration_ms: result.durationMs };
      }
      const gone = result.statusCode === 410;
      const delayMs = gone ? undefined : retryDelayMs(deps.retrySchedule, attempt, result.retryAfterMs);
      const nextAttemptAt = delayMs === undefined ? null : new Date(Date.now() + delayMs).toISOString();
      await report({ ...sent, succeeded: false, error: result.error, next_attempt_at: nextAttemptAt, gone });
      if (delayMs === undefined) throw new UnrecoverableError(result.error);
      throw new RetryableDeliveryError(result.error, delayMs);
    },
  };
}

function notSent(error: string) {
  return {
    sent: false,
    succeeded: false,
    status_code: null,
    duration_ms: null,
    error,
    next_attempt_at: null,
    gone: false,
  };
}
