// GET /events/dead-letters (extension): the stream entries the read model set aside because they cannot be applied.
import { createRoute, z } from "@hono/zod-openapi";
import { ApiError } from "../../shared/errors.ts";
import { redisCall } from "../../shared/redis.ts";
import type { App, AppDeps } from "../deps.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import { DEAD_LETTER_SCHEMA, listDeadLetters } from "../read-model/dead-letters.ts";

export const listDeadLettersRoute = createRoute({
  method: "get",
  path: "/events/dead-letters",
  summary: "Events the read model could not apply (extension)",
  description:
    "Entries that failed to apply PROJECTOR_MAX_ATTEMPTS times, or do not fit the event catalog, newest first. " +
    "The read model moved on without them; each is kept with its error for an operator to inspect.",
  tags: ["Events"],
  security: BEARER_SECURITY,
  request: {
    query: z.object({
      limit: z.coerce.number().int().min(1).max(1_000).default(100).openapi({ description: "At most this many" }),
    }),
  },
  responses: {
    200: jsonResponse(z.array(DEAD_LETTER_SCHEMA), "Dead letters, newest first"),
    ...errorResponses(400),
  },
});

export function registerDeadLetterRoutes(app: App, deps: AppDeps): void {
  app.openapi(listDeadLettersRoute, async (c) => {
    const { limit } = c.req.valid("query");
    if (deps.redis.status !== "ready") throw new ApiError("unavailable", "redis unavailable");
    const letters = listDeadLetters(deps.redis, deps.redisPrefix, limit);
    return c.json(await redisCall(letters, deps.redisCommandTimeoutMs, "list dead letters"), 200);
  });
}
