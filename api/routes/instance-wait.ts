// GET /instances/{id}/wait: blocks until the instance reaches a state, the timeout passes, or it enters Unknown.
import { createRoute, z } from "@hono/zod-openapi";
import { goDuration, parseGoDuration } from "../../shared/duration.ts";
import { INSTANCE_STATE } from "../../shared/schemas/instance.ts";
import type { App, AppDeps } from "../deps.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import { waitForInstanceState } from "../read-model/instance-wait.ts";
import { requireInstance } from "./instances.ts";
import { INSTANCE_PATH } from "./params.ts";

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_TIMEOUT_MS = 5 * 60_000;

const WAIT_RESPONSE = z
  .object({
    state: INSTANCE_STATE.openapi({ description: "Current instance state when the wait completed" }),
    timed_out: z.boolean().openapi({ description: "Whether the timeout expired before the target state was reached" }),
    state_error: z.string().nullable().optional().openapi({ description: "Error message when the state is Unknown" }),
  })
  .openapi("WaitForStateResponse");

export const waitInstanceRoute = createRoute({
  method: "get",
  path: "/instances/{id}/wait",
  summary: "Wait for an instance to reach a state",
  description:
    "Answers as soon as the instance is in `state` (at once if it already is), or enters Unknown, or after " +
    "`timeout` with `timed_out: true` and the state it is in. Woken by the instance's events, not by polling.",
  tags: ["Instances"],
  security: BEARER_SECURITY,
  request: {
    params: INSTANCE_PATH,
    query: z.object({
      // Unknown is where a wait ends on its own, never a target (the reference refuses it too).
      state: INSTANCE_STATE.exclude(["Unknown"]).openapi({ description: "Target state to wait for (not Unknown)" }),
      timeout: goDuration().optional().openapi({
        description: "Maximum wait (Go duration); default 60s, capped at 5m. Not a duration: 400 invalid_timeout",
        example: "30s",
      }),
    }),
  },
  responses: { 200: jsonResponse(WAIT_RESPONSE, "The state when the wait ended"), ...errorResponses(400, 404) },
});

export function registerInstanceWaitRoutes(app: App, deps: AppDeps): void {
  app.openapi(waitInstanceRoute, async (c) => {
    const { state, timeout } = c.req.valid("query");
    const instance = await requireInstance(deps, c.req.valid("param").id);
    const timeoutMs = Math.min(timeout === undefined ? DEFAULT_TIMEOUT_MS : parseGoDuration(timeout)!, MAX_TIMEOUT_MS);
    // A client that goes away, or the API shutting down, ends the wait.
    const signal = AbortSignal.any([c.req.raw.signal, deps.eventFeed.signal]);
    return c.json(await waitForInstanceState(deps, instance, state, timeoutMs, signal), 200);
  });
}
