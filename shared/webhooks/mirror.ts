// What the API hands the webhook worker through Redis: each endpoint's URL, state and sealed secrets,
// and the stream of attempt outcomes the worker reports back for the API's delivery log.
import type { Redis } from "ioredis";
import { z } from "zod";

export const endpointMirrorKey = (prefix: string, endpointId: string) => `${prefix}:webhooks:endpoint:${endpointId}`;
export const outcomeStreamKey = (prefix: string) => `${prefix}:webhooks:outcomes`;

/** Outcomes are consumed within seconds; the cap only bounds a stream nobody reads. */
const OUTCOME_STREAM_MAX_LENGTH = 100_000;

export interface EndpointMirror {
  url: string;
  enabled: boolean;
  /** Why it is disabled, shown to a delivery that finds it so. */
  disabledReason: string | null;
  /** SecretBox-sealed signing secrets: never in clear outside the API's and the worker's memory. */
  sealedSecrets: string;
}

export async function writeEndpointMirror(
  redis: Redis,
  prefix: string,
  endpointId: string,
  mirror: EndpointMirror,
): Promise<void> {
  await redis.hset(endpointMirrorKey(prefix, endpointId), {
    url: mirror.url,
    enabled: mirror.enabled ? "1" : "0",
    disabled_reason: mirror.disabledReason ?? "",
    secrets: mirror.sealedSecrets,
  });
}

export async function deleteEndpointMirror(redis: Redis, prefix: string, endpointId: string): Promise<void> {
  await redis.del(endpointMirrorKey(prefix, endpointId));
}

export async function readEndpointMirror(
  redis: Redis,
  prefix: string,
  endpointId: string,
): Promise<EndpointMirror | undefined> {
  const fields = await redis.hgetall(endpointMirrorKey(prefix, endpointId));
  if (!fields.url || !fields.secrets) return undefined;
  return {
    url: fields.url,
    enabled: fields.enabled === "1",
    disabledReason: fields.disabled_reason || null,
    sealedSecrets: fields.secrets,
  };
}

/** One delivery attempt as the worker saw it. `sent` is false when no request went out (endpoint gone or disabled). */
export const DELIVERY_OUTCOME = z.object({
  delivery_id: z.string(),
  endpoint_id: z.string(),
  attempted_at: z.iso.datetime(),
  sent: z.boolean(),
  succeeded: z.boolean(),
  status_code: z.number().int().nullable(),
  duration_ms: z.number().int().nullable(),
  error: z.string().nullable(),
  /** When the next retry is due; null when this outcome is final. */
  next_attempt_at: z.iso.datetime().nullable(),
  /** The receiver answered 410 Gone: the endpoint must be disabled. */
  gone: z.boolean(),
});
export type DeliveryOutcome = z.infer<typeof DELIVERY_OUTCOME>;

export async function reportOutcome(redis: Redis, prefix: string, outcome: DeliveryOutcome): Promise<void> {
  await redis.xadd(
    outcomeStreamKey(prefix),
    "MAXLEN",
    "~",
    String(OUTCOME_STREAM_MAX_LENGTH),
    "*",
    "outcome",
    JSON.stringify(DELIVERY_OUTCOME.parse(outcome)),
  );
}

export function decodeOutcome(fields: string[]): DeliveryOutcome {
  const index = fields.indexOf("outcome");
  if (index < 0 || index % 2 !== 0) throw new Error("stream entry has no outcome field");
  return DELIVERY_OUTCOME.parse(JSON.parse(fields[index + 1]!));
}
