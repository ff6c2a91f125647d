// GET /metrics: the Prometheus text exposition of the API's registry, queue and consumer gauges refreshed first.
import { createRoute, z } from "@hono/zod-openapi";
import type { App, AppDeps } from "../deps.ts";
import { collectRedisGauges } from "../metrics/collect.ts";
import { BEARER_SECURITY, errorResponses } from "../openapi.ts";

export const metricsRoute = createRoute({
  method: "get",
  path: "/metrics",
  summary: "Prometheus metrics",
  description:
    "Text exposition format 0.0.4. Worker figures (compression, capture downtime, webhook deliveries) are derived " +
    "from the events and outcomes workers append; queue depths and consumer lag are read from Redis at each scrape.",
  tags: ["Health"],
  security: BEARER_SECURITY,
  responses: {
    200: { description: "Metrics", content: { "text/plain": { schema: z.string() } } },
    ...errorResponses(),
  },
});

export function registerMetricsRoutes(app: App, deps: AppDeps): void {
  app.openapi(metricsRoute, async (c) => {
    if (deps.redis.status === "ready") await collectRedisGauges(deps, deps.metrics);
    const body = await deps.metrics.registry.metrics();
    return c.text(body, 200, { "content-type": deps.metrics.registry.contentType });
  });
}
