// Webhook subscriptions: create (returns the signing secret once), list, read, update, delete, rotate the secret.
import { createRoute, z } from "@hono/zod-openapi";
import type { App, AppDeps } from "../deps.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import {
  CREATE_WEBHOOK_BODY,
  UPDATE_WEBHOOK_BODY,
  WEBHOOK_ENDPOINT,
  WEBHOOK_ENDPOINT_WITH_SECRET,
} from "../webhooks/schemas.ts";

export const WEBHOOK_ID_PARAM = z.object({
  id: z
    .string()
    .max(64)
    .openapi({ param: { name: "id", in: "path" }, example: "k3v9x2m1q8w7e6r5t4y3u2i1" }),
});

const TAGS = ["Webhooks"];

export const createWebhookRoute = createRoute({
  method: "post",
  path: "/webhooks",
  summary: "Subscribe an endpoint to events",
  description: "The URL must be http(s) and, unless allow-listed, must not resolve to a private address.",
  tags: TAGS,
  security: BEARER_SECURITY,
  request: { body: { required: true, content: { "application/json": { schema: CREATE_WEBHOOK_BODY } } } },
  responses: {
    201: jsonResponse(WEBHOOK_ENDPOINT_WITH_SECRET, "The endpoint, with its signing secret (shown only now)"),
    ...errorResponses(400, 413),
  },
});

export const listWebhooksRoute = createRoute({
  method: "get",
  path: "/webhooks",
  summary: "List webhook endpoints",
  tags: TAGS,
  security: BEARER_SECURITY,
  responses: { 200: jsonResponse(z.array(WEBHOOK_ENDPOINT), "Every endpoint"), ...errorResponses() },
});

export const getWebhookRoute = createRoute({
  method: "get",
  path: "/webhooks/{id}",
  summary: "Read a webhook endpoint",
  tags: TAGS,
  security: BEARER_SECURITY,
  request: { params: WEBHOOK_ID_PARAM },
  responses: { 200: jsonResponse(WEBHOOK_ENDPOINT, "The endpoint"), ...errorResponses(404) },
});

export const updateWebhookRoute = createRoute({
  method: "patch",
  path: "/webhooks/{id}",
  summary: "Change a webhook endpoint's URL, event types, description or enabled state",
  tags: TAGS,
  security: BEARER_SECURITY,
  request: {
    params: WEBHOOK_ID_PARAM,
    body: { required: true, content: { "application/json": { schema: UPDATE_WEBHOOK_BODY } } },
  },
  responses: { 200: jsonResponse(WEBHOOK_ENDPOINT, "The endpoint as changed"), ...errorResponses(400, 404, 413) },
});

export const deleteWebhookRoute = createRoute({
  method: "delete",
  path: "/webhooks/{id}",
  summary: "Delete a webhook endpoint and its delivery log",
  tags: TAGS,
  security: BEARER_SECURITY,
  request: { params: WEBHOOK_ID_PARAM },
  responses: { 204: { description: "Deleted" }, ...errorResponses(404) },
});

export const rotateWebhookSecretRoute = createRoute({
  method: "post",
  path: "/webhooks/{id}/rotate-secret",
  summary: "Rotate an endpoint's signing secret",
  description: "Deliveries are signed with both the new and the previous secret for 24 hours.",
  tags: TAGS,
  security: BEARER_SECURITY,
  request: { params: WEBHOOK_ID_PARAM },
  responses: {
    200: jsonResponse(WEBHOOK_ENDPOINT_WITH_SECRET, "The endpoint with its new secret"),
    ...errorResponses(404),
  },
});

export function registerWebhookRoutes(app: App, deps: AppDeps): void {
  const endpoints = deps.webhookEndpoints;
  app.openapi(createWebhookRoute, async (c) => c.json(await endpoints.create(c.req.valid("json")), 201));
  app.openapi(listWebhooksRoute, async (c) => c.json(await endpoints.list(), 200));
  app.openapi(getWebhookRoute, async (c) => c.json(await endpoints.get(c.req.valid("param").id), 200));
  app.openapi(updateWebhookRoute, async (c) =>
    c.json(await endpoints.update(c.req.valid("param").id, c.req.valid("json")), 200),
  );
  app.openapi(deleteWebhookRoute, async (c) => {
    await endpoints.delete(c.req.valid("param").id);
    return c.body(null, 204);
  });
  app.openapi(rotateWebhookSecretRoute, async (c) =>
    c.json(await endpoints.rotateSecret(c.req.valid("param").id), 200),
  );
}
