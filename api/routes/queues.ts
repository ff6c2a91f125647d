// GET /queues: every queue's job counts and the age of its oldest waiting job (the dashboard's queue panel).
import { createRoute, z } from "@hono/zod-openapi";
import { ApiError } from "../../shared/errors.ts";
import { withDeadline } from "../../shared/redis.ts";
import type { App, AppDeps } from "../deps.ts";
import { knownQueues, queueDepth } from "../metrics/collect.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";

const QUEUE_SCHEMA = z
  .object({
    queue: z.string().openapi({ example: "compression-h1" }),
    counts: z.record(z.string(), z.number().int()).openapi({ description: "Jobs by BullMQ state" }),
    oldestWaitingSeconds: z.number().openapi({ description: "Age of the oldest waiting job; 0 when none waits" }),
  })
  .openapi("QueueDepth");

export const listQueuesRoute = createRoute({
  method: "get",
  path: "/queues",
  summary: "Job queues with their depth",
  tags: ["Hosts"],
  security: BEARER_SECURITY,
  responses: {
    200: jsonResponse(z.array(QUEUE_SCHEMA), "The webhooks queue, then each host's queues"),
    ...errorResponses(),
  },
});

export function registerQueueRoutes(app: App, deps: AppDeps): void {
  app.openapi(listQueuesRoute, async (c) => {
    if (deps.redis.status !== "ready") throw new ApiError("unavailable", "redis unavailable");
    const depths = async () => Promise.all((await knownQueues(deps)).map((queue) => queueDepth(deps, queue.name)));
    try {
      return c.json(await withDeadline(depths(), deps.redisCommandTimeoutMs * 3, "queue depths"), 200);
    } catch (error) {
      throw new ApiError("unavailable", "redis did not answer in time", { cause: error });
    }
  });
}
