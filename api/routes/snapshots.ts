// Snapshots: create from an instance, list, get, delete, fork into a new instance, restore onto the source.
// Wire-compatible with the Hypeman snapshots API; reads come from the read model, work runs on the owning host.
import { createRoute, z } from "@hono/zod-openapi";
import { ApiError, notFound } from "../../shared/errors.ts";
import type { HostStatus } from "../../shared/hosts.ts";
import { incompatibility } from "../../shared/hypervisor/machine.ts";
import { assertOperationAllowed } from "../../shared/instances/transitions.ts";
import { resolveCompression } from "../../shared/schemas/compression.ts";
import { INSTANCE_SCHEMA, type Instance } from "../../shared/schemas/instance.ts";
import {
  CREATE_SNAPSHOT_BODY,
  FORK_SNAPSHOT_BODY,
  RESTORE_SNAPSHOT_BODY,
  SNAPSHOT_KIND,
  SNAPSHOT_SCHEMA,
  type Snapshot,
  type SnapshotKind,
  TARGET_STATES_BY_KIND,
  type TargetState,
} from "../../shared/schemas/snapshot.ts";
import { replicaSetKey } from "../../shared/snapshots/replicas.ts";
import { SNAPSHOT_RECORD } from "../../shared/snapshots/store.ts";
import {
  assertHostOnline,
  commandWaitMs,
  hostsForPlacement,
  knownHosts,
  onlineHosts,
  runHostCommand,
} from "../commands.ts";
import type { App, AppDeps } from "../deps.ts";
import { fetchFromHost } from "../host-payloads.ts";
import { lostInstanceVersion } from "../host-retirement.ts";
import { presentInstance, presentSnapshot, presentStoredSnapshots } from "../host-status.ts";
import { timed } from "../metrics/metrics.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse, jsonText } from "../openapi.ts";
import { chooseHost, requireUsableHost } from "../placement.ts";
import { snapshotNameScope, withNameReservation } from "../read-model/names.ts";
import {
  decodeCursor,
  findInstanceIncludingDeleted,
  findSnapshot,
  instanceCountsByHost,
  listStoredSnapshots,
} from "../read-model/queries.ts";
import { newResourceId, placeOnce } from "../resource-ids.ts";
import { instanceNameReservation, requireInstance } from "./instances.ts";
import { INSTANCE_PATH, SNAPSHOT_PATH, tagFilterFromQuery } from "./params.ts";

const NEXT_CURSOR_HEADER = "x-next-cursor";

export const createSnapshotRoute = createRoute({
  method: "post",
  path: "/instances/{id}/snapshots",
  summary: "Create a snapshot for an instance",
  description:
    "Standby (memory + device state + disk) from a Running or Standby instance; Stopped (disk only) from a Stopped " +
    "one. Returns once the payload is durable; compression, if enabled, runs afterwards.",
  tags: ["Snapshots"],
  security: BEARER_SECURITY,
  request: {
    params: INSTANCE_PATH,
    body: { content: { "application/json": { schema: CREATE_SNAPSHOT_BODY } }, required: true },
  },
  responses: { 201: jsonResponse(SNAPSHOT_SCHEMA, "The snapshot"), ...errorResponses(400, 404, 409, 504, 507) },
});

export const listSnapshotsRoute = createRoute({
  method: "get",
  path: "/snapshots",
  summary: "List snapshots",
  description:
    "Oldest first. Filters are exact and ANDed; `tags[key]=value` pairs match case-sensitively. With `limit`, the " +
    `response carries an \`${NEXT_CURSOR_HEADER}\` header while more remain; pass it back as \`cursor\`.`,
  tags: ["Snapshots"],
  security: BEARER_SECURITY,
  request: {
    query: z.object({
      kind: SNAPSHOT_KIND.optional(),
      name: z.string().max(63).optional(),
      source_instance_id: z.string().max(128).optional(),
      tags: z
        .record(z.string(), z.string())
        .optional()
        .openapi({ param: { style: "deepObject", explode: true } }),
      limit: z.coerce.number().int().min(1).max(1000).optional(),
      cursor: z.string().max(512).optional(),
    }),
  },
  responses: { 200: jsonResponse(z.array(SNAPSHOT_SCHEMA), "Snapshots"), ...errorResponses(400) },
});

export const getSnapshotRoute = createRoute({
  method: "get",
  path: "/snapshots/{snapshotId}",
  summary: "Get snapshot details",
  tags: ["Snapshots"],
  security: BEARER_SECURITY,
  request: { params: SNAPSHOT_PATH },
  responses: { 200: jsonResponse(SNAPSHOT_SCHEMA, "The snapshot"), ...errorResponses(404) },
});

export const deleteSnapshotRoute = createRoute({
  method: "delete",
  path: "/snapshots/{snapshotId}",
  summary: "Delete a snapshot",
  description:
    "Cancels compression in flight, removes payload, record and every replica on other hosts. Never touches the " +
    "source or forks.",
  tags: ["Snapshots"],
  security: BEARER_SECURITY,
  request: { params: SNAPSHOT_PATH },
  responses: { 204: { description: "Deleted" }, ...errorResponses(404, 504) },
});

export const forkSnapshotRoute = createRoute({
  method: "post",
  path: "/snapshots/{snapshotId}/fork",
  summary: "Fork a new instance from a snapshot",
  description:
    "The fork maps the stored memory copy-on-write: no guest RAM is copied, and the snapshot is unchanged. With " +
    "`host_id` naming another host, that host first pulls a copy of the payload from the owning host (kept for " +
    "later forks there; deleting the snapshot deletes every copy).",
  tags: ["Snapshots"],
  security: BEARER_SECURITY,
  request: {
    params: SNAPSHOT_PATH,
    body: { content: { "application/json": { schema: FORK_SNAPSHOT_BODY } }, required: true },
  },
  responses: {
    201: jsonResponse(INSTANCE_SCHEMA, "The new instance"),
    ...errorResponses(400, 404, 409, 501, 504, 507),
  },
});

export const restoreSnapshotRoute = createRoute({
  method: "post",
  path: "/instances/{id}/snapshots/{snapshotId}/restore",
  summary: "Restore an instance from one of its snapshots",
  tags: ["Snapshots"],
  security: BEARER_SECURITY,
  request: {
    params: INSTANCE_PATH.merge(SNAPSHOT_PATH),
    body: { content: { "application/json": { schema: RESTORE_SNAPSHOT_BODY } }, required: false },
  },
  responses: {
    200: jsonResponse(INSTANCE_SCHEMA, "The restored instance"),
    ...errorResponses(400, 404, 409, 501, 504),
  },
});

export function registerSnapshotRoutes(app: App, deps: AppDeps): void {
  app.openapi(createSnapshotRoute, async (c) => {
    const instance = await requireInstance(deps, c.req.valid("param").id);
    return c.json(presentSnapshot(deps, await createSnapshot(deps, instance, c.req.valid("json"))), 201);
  });

  app.openapi(listSnapshotsRoute, async (c) => {
    const query = c.req.valid("query");
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
    if (query.cursor !== undefined && !after)
      throw new ApiError("invalid_request", "cursor: not a cursor this API issued");
    const page = await listStoredSnapshots(
      deps.db,
      {
        kind: query.kind,
        name: query.name,
        source_instance_id: query.source_instance_id,
        tags: tagFilterFromQuery(c.req.queries() as Record<string, string[]>),
      },
      { limit: query.limit, after },
    );
    if (page.nextCursor) c.header(NEXT_CURSOR_HEADER, page.nextCursor);
    return jsonText<Snapshot[]>(c, presentStoredSnapshots(deps, page.rows));
  });

  app.openapi(getSnapshotRoute, async (c) =>
    c.json(presentSnapshot(deps, await requireSnapshot(deps, c.req.valid("param").snapshotId)), 200),
  );

  app.openapi(deleteSnapshotRoute, async (c) => {
    const snapshot = await requireSnapshot(deps, c.req.valid("param").snapshotId);
    await deleteSnapshot(deps, snapshot);
    return c.body(null, 204);
  });

  app.openapi(forkSnapshotRoute, async (c) => {
    const body = c.req.valid("json");
    const snapshot = await requireSnapshot(deps, c.req.valid("param").snapshotId);
    const target = targetStateFor(snapshot.kind, body.target_state);
    const hypervisor = await targetHypervisorFor(deps, snapshot, body.target_hypervisor);
    // The named host is checked before whether it is online: a 409 that no retry changes beats a 503.
    const named = body.host_id ?? snapshot.host_id;
    if (target !== "Stopped") await assertHostCanLoad(deps, snapshot, named, "fork");
    const hostId = await forkHostFor(deps, snapshot, body.host_id, hypervisor);
    if (target !== "Stopped" && hostId !== named) await assertHostCanLoad(deps, snapshot, hostId, "fork");
    if (hostId !== snapshot.host_id) await replicateTo(deps, snapshot, hostId);
    const source =
      (await findInstanceIncludingDeleted(deps.db, snapshot.source_instance_id)) ??
      (await sourceFromHost(deps, snapshot));
    const id = newResourceId();
    const prepared = prepareFork(source, { id, name: body.name, hypervisor, host_id: hostId });
    const labels = { target_state: target, compression_state: snapshot.compression_state };
    const result = await withNameReservation(deps.db, instanceNameReservation(body.name, id), () =>
      timed(deps.metrics.forkDuration, labels, () =>
        runHostCommand(
          deps,
          hostId,
          "snapshot.fork",
          { snapshot_id: snapshot.id, instance: prepared, target_state: target },
          `GET /instances/${id}`,
        ),
      ),
    );
    return c.json(presentInstance(deps, result.instance), 201);
  });

  app.openapi(restoreSnapshotRoute, async (c) => {
    const params = c.req.valid("param");
    const body = c.req.valid("json") ?? {};
    const instance = await requireInstance(deps, params.id);
    const snapshot = await requireSnapshot(deps, params.snapshotId);
    if (snapshot.source_instance_id !== instance.id) {
      throw new ApiError(
        "invalid_request",
        `snapshot ${snapshot.id} belongs to instance ${snapshot.source_instance_name}, not ${instance.name}`,
      );
    }
    const target = targetStateFor(snapshot.kind, body.target_state);
    const hypervisor = await targetHypervisorFor(deps, snapshot, body.target_hypervisor);
    const lostAtVersion = await lostInstanceVersion(deps, instance);
    if (lostAtVersion !== undefined) {
      const restored = await restoreLostInstance(deps, { instance, snapshot, target, hypervisor, lostAtVersion });
      return c.json(presentInstance(deps, restored), 200);
    }
    if (instance.state === "Running") {
      throw new ApiError("invalid_state", `instance ${instance.name} is Running: stop it or put it in standby first`);
    }
    assertOperationAllowed("restoreSnapshot", instance);
    if (target !== "Stopped") await assertHostCanLoad(deps, snapshot, snapshot.host_id, "restore");
    const result = await runHostCommand(
      deps,
      instance.host_id,
      "snapshot.restore",
      { snapshot_id: snapshot.id, instance_id: instance.id, target_state: target },
      `GET /instances/${instance.id}`,
    );
    return c.json(presentInstance(deps, result.instance), 200);
  });
}

/** Captures a snapshot of `instance` on its host: the one path for requests and schedules alike. */
export async function createSnapshot(
  deps: AppDeps,
  instance: Instance,
  body: z.infer<typeof CREATE_SNAPSHOT_BODY>,
): Promise<Snapshot> {
  if (body.kind === "Stopped" && body.compression?.enabled) {
    throw new ApiError(
      "invalid_request",
      "compression applies to Standby snapshots only; a Stopped snapshot is disk only",
    );
  }
  assertOperationAllowed(body.kind === "Standby" ? "snapshotStandby" : "snapshotStopped", instance);
  const id = newResourceId();
  const compression =
    body.kind === "Stopped"
      ? { enabled: false }
      : resolveCompression(body.compression, instance.snapshot_policy?.compression, deps.defaultCompression);
  const prepared = prepareSnapshot(instance, {
    id,
    kind: body.kind,
    name: body.name ?? null,
    tags: body.tags ?? {},
    compression,
  });
  const reservation = {
    scope: snapshotNameScope(instance.id),
    name: body.name,
    resourceId: id,
    conflictMessage: `instance ${instance.name} already has a snapshot named ${body.name}`,
  };
  const result = await withNameReservation(deps.db, reservation, () =>
    runHostCommand(
      deps,
      instance.host_id,
      "snapshot.capture",
      { instance_id: instance.id, snapshot: prepared },
      `GET /snapshots/${id}`,
    ),
  );
  return result.snapshot;
}

/** Deletes a snapshot on its host (payload and record); answers once the read model shows it gone. */
export async function deleteSnapshot(deps: AppDeps, snapshot: Snapshot): Promise<void> {
  await runHostCommand(
    deps,
    snapshot.host_id,
    "snapshot.delete",
    { snapshot_id: snapshot.id },
    `GET /snapshots/${snapshot.id}`,
  );
  await dropReplicas(deps, snapshot.id);
}

/** A snapshot about to be captured of `instance`: what the API decides (id, name, tags, policy), nothing captured. */
export function prepareSnapshot(
  instance: Instance,
  fields: Pick<Snapshot, "id" | "kind" | "name" | "tags" | "compression">,
): Snapshot {
  return {
    ...fields,
    created_at: new Date().toISOString(),
    size_bytes: 0,
    source_hypervisor: instance.hypervisor,
    source_instance_id: instance.id,
    source_instance_name: instance.name,
    compression_state: "none",
    compression_error: null,
    compressed_size_bytes: null,
    uncompressed_size_bytes: null,
    host_id: instance.host_id,
    capture_downtime_ms: null,
    storage: "local",
    storage_error: null,
  };
}

/**
 * A restore of an instance its retired host took with it (DELETE /hosts/{id}): it comes back under its own id and
 * name on a host that can load the snapshot (its adopter, or where placement puts a fork of it), recorded there above
 * the lost row's version. Its disk is the snapshot's: what the lost host wrote after the snapshot went with it.
 */
async function restoreLostInstance(
  deps: AppDeps,
  lost: {
    instance: Instance;
    snapshot: Snapshot;
    target: TargetState;
    hypervisor: Instance["hypervisor"];
    lostAtVersion: number;
  },
): Promise<Instance> {
  const { instance, snapshot, target, hypervisor } = lost;
  const hostId = await forkHostFor(deps, snapshot, undefined, hypervisor);
  if (target !== "Stopped") await assertHostCanLoad(deps, snapshot, hostId, "restore");
  if (hostId !== snapshot.host_id) await replicateTo(deps, snapshot, hostId);
  const prepared: Instance = {
    ...instance,
    host_id: hostId,
    hypervisor,
    state: "Created",
    state_error: null,
    started_at: null,
    stopped_at: null,
  };
  const result = await runHostCommand(
    deps,
    hostId,
    "snapshot.fork",
    { snapshot_id: snapshot.id, instance: prepared, target_state: target, min_version: lost.lostAtVersion },
    `GET /instances/${instance.id}`,
  );
  return result.instance;
}

/** A new instance about to be forked from `source` (image, size, vcpus, policy carry over; tags do not). */
export function prepareFork(
  source: Instance,
  fields: Pick<Instance, "id" | "name" | "hypervisor" | "host_id">,
): Instance {
  return {
    ...source,
    ...fields,
    state: "Created",
    state_error: null,
    created_at: new Date().toISOString(),
    started_at: null,
    stopped_at: null,
    expires_at: null,
    has_snapshot: false,
    tags: {},
  };
}

export async function requireSnapshot(deps: AppDeps, id: string): Promise<Snapshot> {
  const snapshot = await findSnapshot(deps.db, id);
  if (!snapshot) throw notFound("snapshot", id);
  return snapshot;
}

/** The contract's target-state table: the first allowed state of a kind is its default unless one is given. */
export function targetStateFor(
  kind: SnapshotKind,
  requested: TargetState | undefined,
  fallback: TargetState = TARGET_STATES_BY_KIND[kind][0]!,
): TargetState {
  const allowed = TARGET_STATES_BY_KIND[kind];
  if (requested === undefined) return fallback;
  if (!allowed.includes(requested)) {
    throw new ApiError(
      "invalid_request",
      `target_state ${requested} is not allowed for a ${kind} snapshot (allowed: ${allowed.join(", ")})`,
    );
  }
  return requested;
}

/**
 * A Standby snapshot's device state loads only into a QEMU of its major version that knows its machine type: checked
 * on the host that will run it (a cross-host fork's target, not the owner).
 */
async function assertHostCanLoad(deps: AppDeps, snapshot: Snapshot, hostId: string, operation: "fork" | "restore") {
  if (snapshot.kind !== "Standby" || !snapshot.qemu_version || !snapshot.machine_type) return;
  const host = (await knownHosts(deps)).find((candidate) => candidate.id === hostId);
  if (!host || canLoad(snapshot, host)) return;
  const taken = { qemu_version: snapshot.qemu_version, machine_type: snapshot.machine_type };
  const reason = incompatibility(taken, host.qemu!);
  if (reason) {
    throw new ApiError("invalid_state", `cannot ${operation} snapshot ${snapshot.id} on host ${host.id}: ${reason}`);
  }
}

/**
 * No memory state crosses hypervisors: only Stopped snapshots take target_hypervisor (a Standby one refuses it even
 * when it names its own, as the reference server does), and the host must run the one named.
 */
async function targetHypervisorFor(deps: AppDeps, snapshot: Snapshot, requested: string | undefined) {
  if (requested === undefined) return snapshot.source_hypervisor;
  if (snapshot.kind !== "Stopped") {
    throw new ApiError("invalid_request", "target_hypervisor is only allowed for Stopped snapshots");
  }
  if (requested === snapshot.source_hypervisor) return snapshot.source_hypervisor;
  const host = (await onlineHosts(deps)).find((candidate) => candidate.id === snapshot.host_id);
  if (host && !host.hypervisors.includes(requested)) {
    throw new ApiError(
      "not_supported",
      `hypervisor ${requested} is not available on host ${host.id}; available: ${host.hypervisors.join(", ")}`,
    );
  }
  return requested as Snapshot["source_hypervisor"];
}

/**
 * The host a fork runs on: the one asked for (known, online, able), else the snapshot's own. When its own is offline
 * and the snapshot has gone to the object store, the least loaded online host that runs the hypervisor: it pulls the
 * payload from the store. A keyed retry that took over its dead request's key keeps the host that request chose.
 */
async function forkHostFor(deps: AppDeps, snapshot: Snapshot, requested: string | undefined, hypervisor: string) {
  return placeOnce(async (recorded) => {
    const named = recorded ?? requested;
    const hosts = await hostsForPlacement(deps, named);
    if (named !== undefined && named !== snapshot.host_id) return requireUsableHost(hosts, named, hypervisor).id;
    const owner = hosts.find((host) => host.id === snapshot.host_id);
    // local: not in the store, so only the owner has it (its offline answer is a 503 from the command).
    if (named !== undefined || owner?.online || (snapshot.storage ?? "local") === "local") return snapshot.host_id;
    // Among the hosts whose QEMU can load its state: the one chosen is checked again, and a 409 there would be wrong
    // while another host could run it.
    const able = hosts.filter((host) => !host.online || canLoad(snapshot, host));
    return chooseHost(able, await instanceCountsByHost(deps.db), hypervisor);
  });
}

/** Can this host's QEMU load the snapshot's device state (a host that does not say is not second-guessed)? */
function canLoad(snapshot: Snapshot, host: HostStatus): boolean {
  if (snapshot.kind !== "Standby" || !snapshot.qemu_version || !snapshot.machine_type || !host.qemu) return true;
  return !incompatibility({ qemu_version: snapshot.qemu_version, machine_type: snapshot.machine_type }, host.qemu);
}

/**
 * A fork on another host pulls the payload there first (once: the copy stays for later forks), from the object store
 * when it holds the snapshot, else from the owner, which must then be online (the host answers 503 otherwise).
 */
async function replicateTo(deps: AppDeps, snapshot: Snapshot, hostId: string) {
  if ((snapshot.storage ?? "local") === "local") await assertHostOnline(deps, snapshot.host_id);
  await deps.jobs.run(
    "snapshot.replicate",
    { snapshot_id: snapshot.id, owner_host_id: snapshot.host_id },
    { hostId, timeoutMs: commandWaitMs(deps) },
  );
}

/**
 * Every copy of a deleted snapshot goes too; a copy on an offline host stays until that host is back, whose replica
 * reconcile finds the owner's tombstone and drops it (workers/host/replicas.ts).
 */
async function dropReplicas(deps: AppDeps, snapshotId: string): Promise<void> {
  const hostIds = await deps.redis.smembers(replicaSetKey(deps.redisPrefix, snapshotId));
  if (hostIds.length === 0) return; // most snapshots have no replica: no need to list the hosts
  const online = new Set((await onlineHosts(deps)).map((host) => host.id));
  for (const hostId of hostIds) {
    if (!online.has(hostId)) {
      deps.log.warn({ snapshotId, hostId }, "a replica stays on an offline host");
      continue;
    }
    await deps.jobs.run(
      "snapshot.drop-replica",
      { snapshot_id: snapshotId },
      { hostId, timeoutMs: commandWaitMs(deps) },
    );
  }
}

/** An imported snapshot's source instance may never have lived here: its host's record keeps it. */
async function sourceFromHost(deps: AppDeps, snapshot: Snapshot): Promise<Instance> {
  const response = await fetchFromHost(deps, snapshot.host_id, `/snapshots/${snapshot.id}/record`);
  return SNAPSHOT_RECORD.parse(await response.json()).source;
}
