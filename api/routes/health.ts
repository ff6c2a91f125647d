// GET /health: reachability of Redis and the database, without auth.
import { createRoute, z } from "@hono/zod-openapi";
import { withDeadline } from "../../shared/redis.ts";
import { databaseIsReachable } from "../db/database.ts";
import type { App, AppDeps } from "../deps.ts";
import { jsonResponse } from "../openapi.ts";

const CHECK = z.enum(["ok", "down"]);
const HEALTH_SCHEMA = z
  .object({
    status: z.enum(["ok", "degraded"]),
    checks: z.object({ redis: CHECK, database: CHECK }),
  })
  .openapi("Health");

export const healthRoute = createRoute({
  method: "get",
  path: "/health",
  summary: "Service health",
  description: "Reports whether Redis and the read-model database answer. 503 when either does not.",
  tags: ["Health"],
  security: [],
  responses: {
    200: jsonResponse(HEALTH_SCHEMA, "All dependencies reachable"),
    503: jsonResponse(HEALTH_SCHEMA, "A dependency is down"),
  },
});

export function registerHealthRoutes(app: App, deps: AppDeps): void {
  app.openapi(healthRoute, async (c) => {
    const [redis, database] = await Promise.all([redisIsReachable(deps), databaseIsReachable(deps.db)]);
    const checks = { redis: redis ? "ok" : "down", database: database ? "ok" : "down" } as const;
    const healthy = redis && database;
    return c.json({ status: healthy ? "ok" : "degraded", checks }, healthy ? 200 : 503);
  });
}

async function redisIsReachable(deps: AppDeps): Promise<boolean> {
  try {
    return (await withDeadline(deps.redis.ping(), deps.redisCommandTimeoutMs, "ping")) === "PONG";
  } catch {
    return false;
  }
}
