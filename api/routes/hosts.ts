// GET /hosts, POST /hosts/{hostId}/ping and DELETE /hosts/{hostId}: the worker hosts this service can place work on.
import { createRoute, z } from "@hono/zod-openapi";
import { ApiError } from "../../shared/errors.ts";
import { HOST_RECORD_SCHEMA } from "../../shared/hosts.ts";
import { commandWaitMs, knownHosts } from "../commands.ts";
import type { App, AppDeps } from "../deps.ts";
import { RETIRED_HOST_SCHEMA, retireHost } from "../host-retirement.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";

const HOST_SCHEMA = HOST_RECORD_SCHEMA.extend({
  online: z.boolean(),
  offline_reason: z.string().nullable().openapi({ description: "Why the host is offline; null while online" }),
}).openapi("Host");
const HOST_ID_PARAM = z.object({
  hostId: z
    .string()
    .max(63)
    .openapi({ param: { name: "hostId", in: "path" }, example: "host-1" }),
});

export const listHostsRoute = createRoute({
  method: "get",
  path: "/hosts",
  summary: "List worker hosts",
  tags: ["Hosts"],
  security: BEARER_SECURITY,
  responses: {
    200: jsonResponse(z.array(HOST_SCHEMA), "Known hosts"),
    ...errorResponses(),
  },
});

export const pingHostRoute = createRoute({
  method: "post",
  path: "/hosts/{hostId}/ping",
  summary: "Round-trip a job through a host's queue",
  description: "Proves that the host's capture worker takes jobs from its queue and answers.",
  tags: ["Hosts"],
  security: BEARER_SECURITY,
  request: { params: HOST_ID_PARAM },
  responses: {
    200: {
      description: "The host answered",
      content: {
        "application/json": {
          schema: z.object({ host_id: z.string(), round_trip_ms: z.number() }).openapi("HostPing"),
        },
      },
    },
    ...errorResponses(404, 504),
  },
});

export const retireHostRoute = createRoute({
  method: "delete",
  path: "/hosts/{hostId}",
  summary: "Retire a worker host that is gone for good",
  description:
    "Extension. For a host lost with its disk: it must be offline (409 while online). It leaves the host directory; " +
    "every snapshot it owned that the object store holds is adopted by an online host (pulled from the store, then " +
    "that host's own: forks, restores and deletes work there); snapshots the store never received are reported " +
    "lost; its instances read Unknown with a state_error that starts with `lost:` (delete one, or restore it from a " +
    "stored snapshot of it: it comes back under its id on the host that holds the snapshot). Calling it again finishes " +
    "adoptions that failed. Never start a retired host's workers again under the same HOST_ID.",
  tags: ["Hosts"],
  security: BEARER_SECURITY,
  request: { params: HOST_ID_PARAM },
  responses: {
    200: jsonResponse(RETIRED_HOST_SCHEMA, "The host is retired; what became of its resources"),
    ...errorResponses(404, 409),
  },
});

export function registerHostRoutes(app: App, deps: AppDeps): void {
  app.openapi(retireHostRoute, async (c) => c.json(await retireHost(deps, c.req.valid("param").hostId), 200));

  app.openapi(listHostsRoute, async (c) => c.json(await knownHosts(deps), 200));

  app.openapi(pingHostRoute, async (c) => {
    const { hostId } = c.req.valid("param");
    const host = (await knownHosts(deps)).find((candidate) => candidate.id === hostId);
    if (!host) throw new ApiError("not_found", `host ${hostId} not found`);
    if (!host.online) throw new ApiError("unavailable", `host ${hostId} is offline: ${host.offline_reason}`);
    const started = performance.now();
    const result = await deps.jobs.run(
      "host.ping",
      { sentAt: new Date().toISOString() },
      { hostId, timeoutMs: commandWaitMs(deps) },
    );
    return c.json({ host_id: result.hostId, round_trip_ms: Math.round(performance.now() - started) }, 200);
  });
}
