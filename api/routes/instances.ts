// Instances: create, list, get, delete, lifecycle operations and console logs. Work runs on the owning host.
import { createRoute, z } from "@hono/zod-openapi";
import { streamSSE } from "hono/streaming";
import { parseGoDuration } from "../../shared/duration.ts";
import { ApiError, notFound } from "../../shared/errors.ts";
import { assertOperationAllowed, type InstanceOperation } from "../../shared/instances/transitions.ts";
import { formatSize, parseSize } from "../../shared/schemas/common.ts";
import { resolveCompression } from "../../shared/schemas/compression.ts";
import {
  CREATE_INSTANCE_BODY,
  type CreateInstanceBody,
  INSTANCE_SCHEMA,
  INSTANCE_STATE,
  INSTANCE_STATS_SCHEMA,
  type Instance,
  STANDBY_INSTANCE_BODY,
  type StandbyInstanceBody,
} from "../../shared/schemas/instance.ts";
import { assertHostOnline, hostsForPlacement, runHostCommand } from "../commands.ts";
import type { App, AppDeps } from "../deps.ts";
import { deleteLostInstance } from "../host-retirement.ts";
import { presentInstance, presentInstances } from "../host-status.ts";
import { compressionLabels, timed } from "../metrics/metrics.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import { chooseHost } from "../placement.ts";
import { instanceNameScope, withNameReservation } from "../read-model/names.ts";
import { findInstance, findInstancesByIdPrefix, instanceCountsByHost, listInstances } from "../read-model/queries.ts";
import { newResourceId, placeOnce } from "../resource-ids.ts";
import { INSTANCE_PATH, tagFilterFromQuery } from "./params.ts";

export const createInstanceRoute = createRoute({
  method: "post",
  path: "/instances",
  summary: "Create and boot an instance",
  tags: ["Instances"],
  security: BEARER_SECURITY,
  request: { body: { content: { "application/json": { schema: CREATE_INSTANCE_BODY } }, required: true } },
  responses: { 201: jsonResponse(INSTANCE_SCHEMA, "The running instance"), ...errorResponses(400, 409, 501, 504) },
});

export const listInstancesRoute = createRoute({
  method: "get",
  path: "/instances",
  summary: "List instances",
  tags: ["Instances"],
  security: BEARER_SECURITY,
  request: {
    query: z.object({
      state: INSTANCE_STATE.optional(),
      // tags[k]=v pairs are read from the raw query; declared here for the document.
      tags: z
        .record(z.string(), z.string())
        .optional()
        .openapi({ param: { style: "deepObject", explode: true } }),
    }),
  },
  responses: { 200: jsonResponse(z.array(INSTANCE_SCHEMA), "Instances, oldest first"), ...errorResponses(400) },
});

export const getInstanceRoute = createRoute({
  method: "get",
  path: "/instances/{id}",
  summary: "Get an instance by id or name",
  tags: ["Instances"],
  security: BEARER_SECURITY,
  request: { params: INSTANCE_PATH },
  responses: { 200: jsonResponse(INSTANCE_SCHEMA, "The instance"), ...errorResponses(404, 409) },
});

export const deleteInstanceRoute = createRoute({
  method: "delete",
  path: "/instances/{id}",
  summary: "Stop and delete an instance and its files (its snapshots stay)",
  tags: ["Instances"],
  security: BEARER_SECURITY,
  request: { params: INSTANCE_PATH },
  responses: { 204: { description: "Deleted" }, ...errorResponses(404, 504) },
});

const LIFECYCLE = {
  stop: { job: "instance.stop", summary: "Stop the instance (its disk is kept)" },
  start: { job: "instance.start", summary: "Boot a Stopped instance from its disk" },
  restore: { job: "instance.restore", summary: "Resume a Standby instance from its captured state" },
} as const satisfies Record<string, { job: string; summary: string }>;

/** Operations with a duration histogram of the reference server's, labelled by the instance's compression policy. */
const TIMED_OPERATIONS: Partial<Record<keyof typeof LIFECYCLE, "standbyDuration" | "restoreDuration">> = {
  restore: "restoreDuration",
};

const compressionPolicyLabels = (deps: AppDeps, instance: Instance) =>
  compressionLabels(resolveCompression(instance.snapshot_policy?.compression, deps.defaultCompression));

const lifecycleRoute = (operation: keyof typeof LIFECYCLE) =>
  createRoute({
    method: "post",
    path: `/instances/{id}/${operation}`,
    summary: LIFECYCLE[operation].summary,
    tags: ["Instances"],
    security: BEARER_SECURITY,
    request: { params: INSTANCE_PATH },
    responses: {
      200: jsonResponse(INSTANCE_SCHEMA, "The instance after the operation"),
      ...errorResponses(404, 409, 504),
    },
  });

export const standbyInstanceRoute = createRoute({
  method: "post",
  path: "/instances/{id}/standby",
  summary: "Capture memory and device state, then stop the VMM",
  description:
    "With compression (request, else the instance's snapshot_policy, else the server default) the captured memory " +
    "is compressed in the background after `compression_delay` (else snapshot_policy.standby_compression_delay). " +
    "A restore waits for a compression in flight and decompresses first.",
  tags: ["Instances"],
  security: BEARER_SECURITY,
  request: {
    params: INSTANCE_PATH,
    body: { content: { "application/json": { schema: STANDBY_INSTANCE_BODY } }, required: false },
  },
  responses: {
    200: jsonResponse(INSTANCE_SCHEMA, "The instance in Standby"),
    ...errorResponses(400, 404, 409, 504),
  },
});

export const instanceStatsRoute = createRoute({
  method: "get",
  path: "/instances/{id}/stats",
  summary: "What the guest's QEMU process uses: CPU time, resident and virtual memory",
  description:
    "Read on the instance's host from its QEMU process, in the reference's shape. A 409 when the instance has no " +
    "running VM. Guests have no network here: the network counters are always 0.",
  tags: ["Instances"],
  security: BEARER_SECURITY,
  request: { params: INSTANCE_PATH },
  responses: {
    200: jsonResponse(INSTANCE_STATS_SCHEMA, "The instance's usage"),
    ...errorResponses(404, 409, 503, 504),
  },
});

export const instanceLogsRoute = createRoute({
  method: "get",
  path: "/instances/{id}/logs",
  summary: "Serial console of the guest, as Server-Sent Events (one JSON string per line)",
  tags: ["Instances"],
  security: BEARER_SECURITY,
  request: {
    params: INSTANCE_PATH,
    query: z.object({
      tail: z.coerce.number().int().min(1).max(10_000).default(100),
      follow: z.enum(["true", "false"]).optional().openapi({ description: "Not supported: must be absent or false" }),
      source: z.enum(["app"]).optional(),
    }),
  },
  responses: {
    200: { description: "The last `tail` lines", content: { "text/event-stream": { schema: z.string() } } },
    ...errorResponses(400, 404, 501, 504),
  },
});

export function registerInstanceRoutes(app: App, deps: AppDeps): void {
  app.openapi(createInstanceRoute, async (c) => {
    const body = c.req.valid("json");
    const instance = newInstance(body, await pickHost(deps, body.hypervisor, body.host_id));
    const result = await withNameReservation(deps.db, instanceNameReservation(body.name, instance.id), () =>
      runHostCommand(deps, instance.host_id, "instance.create", { instance }, `GET /instances/${instance.id}`),
    );
    return c.json(presentInstance(deps, result.instance), 201);
  });

  app.openapi(listInstancesRoute, async (c) => {
    const { state } = c.req.valid("query");
    const tags = tagFilterFromQuery(c.req.queries() as Record<string, string[]>);
    return c.json(presentInstances(deps, await listInstances(deps.db, { state, tags })), 200);
  });

  app.openapi(getInstanceRoute, async (c) =>
    c.json(presentInstance(deps, await requireInstance(deps, c.req.valid("param").id)), 200),
  );

  app.openapi(deleteInstanceRoute, async (c) => {
    const instance = await requireInstance(deps, c.req.valid("param").id);
    if (await deleteLostInstance(deps, instance)) return c.body(null, 204);
    await runHostCommand(
      deps,
      instance.host_id,
      "instance.delete",
      { instance_id: instance.id },
      `GET /instances/${instance.id}`,
    );
    return c.body(null, 204);
  });

  registerLifecycleRoutes(app, deps);

  app.openapi(standbyInstanceRoute, async (c) => {
    const instance = await requireInstance(deps, c.req.valid("param").id);
    assertOperationAllowed("standby", instance);
    const payload = { instance_id: instance.id, ...standbyCompression(deps, instance, c.req.valid("json")) };
    const result = await timed(deps.metrics.standbyDuration, compressionPolicyLabels(deps, instance), () =>
      runHostCommand(deps, instance.host_id, "instance.standby", payload, `GET /instances/${instance.id}`),
    );
    return c.json(presentInstance(deps, result.instance), 200);
  });

  app.openapi(instanceStatsRoute, async (c) => {
    const instance = await requireInstance(deps, c.req.valid("param").id);
    await assertHostOnline(deps, instance.host_id);
    const stats = await deps.jobs.run(
      "instance.stats",
      { instance_id: instance.id },
      { hostId: instance.host_id, timeoutMs: deps.jobResultTimeoutMs },
    );
    return c.json(stats, 200);
  });

  app.openapi(instanceLogsRoute, async (c) => {
    const { tail, follow } = c.req.valid("query");
    if (follow === "true") throw new ApiError("not_supported", "follow=true is not supported: poll with tail instead");
    const instance = await requireInstance(deps, c.req.valid("param").id);
    await assertHostOnline(deps, instance.host_id);
    const { lines } = await deps.jobs.run(
      "instance.logs",
      { instance_id: instance.id, tail },
      { hostId: instance.host_id, timeoutMs: deps.jobResultTimeoutMs },
    );
    return streamSSE(c, async (stream) => {
      for (const line of lines) await stream.writeSSE({ data: JSON.stringify(line) });
    });
  });
}

/** A new instance as the request describes it, placed on `hostId`: the record its host creates. */
function newInstance(body: CreateInstanceBody, hostId: string): Instance {
  return {
    id: newResourceId(),
    name: body.name,
    image: body.image,
    state: "Created",
    state_error: null,
    hypervisor: body.hypervisor,
    size: formatSize(parseSize(body.size)!),
    overlay_size: formatSize(parseSize(body.overlay_size)!),
    vcpus: body.vcpus,
    created_at: new Date().toISOString(),
    started_at: null,
    stopped_at: null,
    expires_at: null,
    has_snapshot: false,
    tags: body.tags ?? {},
    ...(body.snapshot_policy && { snapshot_policy: body.snapshot_policy }),
    ...(body.memory_load && { memory_load: body.memory_load }),
    host_id: hostId,
  };
}

/** stop, start and restore: one route each, the same shape (the transition table says what is allowed). */
function registerLifecycleRoutes(app: App, deps: AppDeps): void {
  for (const operation of Object.keys(LIFECYCLE) as Array<keyof typeof LIFECYCLE>) {
    app.openapi(lifecycleRoute(operation), async (c) => {
      const instance = await requireInstance(deps, c.req.valid("param").id);
      assertOperationAllowed(operation as InstanceOperation, instance);
      const run = () =>
        runHostCommand(
          deps,
          instance.host_id,
          LIFECYCLE[operation].job,
          { instance_id: instance.id },
          `GET /instances/${instance.id}`,
        );
      const histogram = TIMED_OPERATIONS[operation];
      const result = histogram
        ? await timed(deps.metrics[histogram], compressionPolicyLabels(deps, instance), run)
        : await run();
      return c.json(presentInstance(deps, result.instance), 200);
    });
  }
}

/** Standby memory compression: request → instance snapshot_policy → server default, as for snapshots. */
function standbyCompression(deps: AppDeps, instance: Instance, body: StandbyInstanceBody | undefined) {
  const policy = resolveCompression(body?.compression, instance.snapshot_policy?.compression, deps.defaultCompression);
  if (!policy.enabled) return { compression: null };
  const delay = body?.compression_delay ?? instance.snapshot_policy?.standby_compression_delay;
  return {
    compression: { algorithm: policy.algorithm!, level: policy.level! },
    compression_delay_ms: delay === undefined ? 0 : Math.max(0, Math.round(parseGoDuration(delay)!)),
  };
}

/** An instance by id, name or (as the reference takes it) a unique id prefix: 409 `ambiguous` when several match. */
export async function requireInstance(deps: AppDeps, reference: string): Promise<Instance> {
  const instance = await findInstance(deps.db, reference);
  if (instance) return instance;
  const candidates = await findInstancesByIdPrefix(deps.db, reference, 2);
  if (candidates.length > 1) throw new ApiError("ambiguous", `several instances have an id starting with ${reference}`);
  if (!candidates[0]) throw notFound("instance", reference);
  return candidates[0];
}

/** The requested host, or the online host that can run `hypervisor` (undefined: any) and has the fewest instances. */
export async function pickHost(deps: AppDeps, hypervisor: string | undefined, requested?: string): Promise<string> {
  // A keyed retry that took over its dead request's key goes where that request went (it is checked, not chosen).
  return placeOnce(async (recorded) =>
    chooseHost(
      await hostsForPlacement(deps, recorded ?? requested),
      await instanceCountsByHost(deps.db),
      hypervisor,
      recorded ?? requested,
    ),
  );
}

/** Instance names are unique across the fleet (creates and forks alike). */
export const instanceNameReservation = (name: string, resourceId: string) => ({
  scope: instanceNameScope(),
  name,
  resourceId,
  conflictMessage: `an instance named ${name} already exists`,
});
