// The webhook resources as the HTTP API shows them: endpoint, endpoint with its secret, delivery.
import { EVENT_TYPES } from "../../shared/events/catalog.ts";
import { TIMESTAMP } from "../../shared/schemas/common.ts";
import { z } from "../../shared/zod.ts";

/** `*`, an exact event type, or a prefix wildcard (`snapshot.*`, `snapshot.compression.*`) that matches some type. */
export const EVENT_TYPE_PATTERN = z
  .string()
  .max(100)
  .refine(
    (pattern) =>
      pattern === "*" ||
      EVENT_TYPES.some((type) => type === pattern || (pattern.endsWith(".*") && type.startsWith(pattern.slice(0, -1)))),
    "must be *, an event type or a prefix wildcard like snapshot.* that matches one",
  )
  .openapi({ example: "snapshot.*" });

export const WEBHOOK_URL = z.string().max(2048).openapi({
  description: "http(s) URL; loopback, private, link-local and metadata addresses are refused unless allow-listed",
  example: "https://example.com/hooks/snapfleet",
});

export const WEBHOOK_ENDPOINT = z
  .object({
    id: z.string(),
    url: z.string(),
    description: z.string(),
    event_types: z.array(z.string()),
    enabled: z.boolean(),
    disabled_reason: z.string().nullable().openapi({ description: "Why the service disabled it, if it did" }),
    created_at: TIMESTAMP,
    updated_at: TIMESTAMP,
    last_success_at: TIMESTAMP.nullable(),
    failing_since: TIMESTAMP.nullable().openapi({ description: "First failed attempt since the last success" }),
  })
  .openapi("WebhookEndpoint");
export type WebhookEndpoint = z.infer<typeof WEBHOOK_ENDPOINT>;

export const WEBHOOK_ENDPOINT_WITH_SECRET = WEBHOOK_ENDPOINT.extend({
  secret: z.string().openapi({
    description: "The signing secret (whsec_…): shown only on creation and rotation",
    example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  }),
}).openapi("WebhookEndpointWithSecret");

export const CREATE_WEBHOOK_BODY = z
  .object({
    url: WEBHOOK_URL,
    event_types: z.array(EVENT_TYPE_PATTERN).min(1).max(50).default(["*"]),
    description: z.string().max(500).default(""),
  })
  .openapi("CreateWebhookRequest");

export const UPDATE_WEBHOOK_BODY = z
  .object({
    url: WEBHOOK_URL.optional(),
    event_types: z.array(EVENT_TYPE_PATTERN).min(1).max(50).optional(),
    description: z.string().max(500).optional(),
    enabled: z.boolean().optional().openapi({ description: "Re-enabling clears disabled_reason" }),
  })
  .openapi("UpdateWebhookRequest");
export type UpdateWebhookBody = z.infer<typeof UPDATE_WEBHOOK_BODY>;

export const DELIVERY_STATUSES = ["pending", "succeeded", "failed"] as const;

export const WEBHOOK_DELIVERY = z
  .object({
    id: z.string(),
    endpoint_id: z.string(),
    event_id: z.string().openapi({ description: "Also the webhook-id header of every attempt" }),
    event_type: z.string(),
    status: z.enum(DELIVERY_STATUSES).openapi({ description: "pending while attempts remain, then final" }),
    attempts: z.number().int(),
    last_status_code: z.number().int().nullable(),
    last_duration_ms: z.number().int().nullable(),
    last_error: z.string().nullable(),
    next_attempt_at: TIMESTAMP.nullable(),
    created_at: TIMESTAMP,
    updated_at: TIMESTAMP,
    delivered_at: TIMESTAMP.nullable(),
  })
  .openapi("WebhookDelivery");
export type WebhookDelivery = z.infer<typeof WEBHOOK_DELIVERY>;
