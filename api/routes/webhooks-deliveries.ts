// The delivery log of an endpoint, and a manual retry of a finished delivery.
import { createRoute, z } from "@hono/zod-openapi";
import type { App, AppDeps } from "../deps.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import { listDeliveries, reopenDelivery, restoreDelivery } from "../webhooks/deliveries.ts";
import { DELIVERY_STATUSES, WEBHOOK_DELIVERY } from "../webhooks/schemas.ts";
import { WEBHOOK_ID_PARAM } from "./webhooks.ts";

const LIST_QUERY = z.object({
  status: z.enum(DELIVERY_STATUSES).optional(),
  limit: z.coerce
    .number()
    .int()
    .min(1)
    .max(500)
    .default(100)
    .openapi({ description: "Newest first, at most this many" }),
});

const DELIVERY_PARAMS = WEBHOOK_ID_PARAM.extend({
  did: z
    .string()
    .max(64)
    .openapi({ param: { name: "did", in: "path" }, example: "d4f8h2j6k0l3m7n1p5q9r2s6" }),
});

export const listDeliveriesRoute = createRoute({
  method: "get",
  path: "/webhooks/{id}/deliveries",
  summary: "An endpoint's delivery log",
  description: "Per event: attempts so far, the last status code, duration and error, and when the next retry is due.",
  tags: ["Webhooks"],
  security: BEARER_SECURITY,
  request: { params: WEBHOOK_ID_PARAM, query: LIST_QUERY },
  responses: {
    200: jsonResponse(z.array(WEBHOOK_DELIVERY), "Deliveries"),
    ...errorResponses(400, 404),
  },
});

export const retryDeliveryRoute = createRoute({
  method: "post",
  path: "/webhooks/{id}/deliveries/{did}/retry",
  summary: "Send a finished delivery again",
  description: "Starts a new round of attempts on the retry schedule, with the same webhook-id and body.",
  tags: ["Webhooks"],
  security: BEARER_SECURITY,
  request: { params: DELIVERY_PARAMS },
  responses: {
    202: jsonResponse(WEBHOOK_DELIVERY, "Queued"),
    ...errorResponses(404, 409),
  },
});

export function registerWebhookDeliveryRoutes(app: App, deps: AppDeps): void {
  app.openapi(listDeliveriesRoute, async (c) => {
    const { id } = c.req.valid("param");
    await deps.webhookEndpoints.get(id);
    return c.json(await listDeliveries(deps.db, id, c.req.valid("query")), 200);
  });

  app.openapi(retryDeliveryRoute, async (c) => {
    const { id, did } = c.req.valid("param");
    // Reopen, then enqueue; if the queue is unreachable the delivery is put back as it was (no transaction waits
    // on Redis).
    const reopened = await deps.db.transaction().execute((trx) => reopenDelivery(trx, id, did));
    try {
      await deps.jobs.enqueue(
        "webhook.deliver",
        { delivery_id: did, endpoint_id: id, event_id: reopened.delivery.event_id, body: reopened.body },
        { jobId: reopened.jobId },
      );
    } catch (error) {
      await restoreDelivery(deps.db, reopened.previous);
      throw error;
    }
    return c.json(reopened.delivery, 202);
  });
}
