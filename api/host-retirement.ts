// DELETE /hosts/{id}: an operator retires a host that is gone for good, disk and all. The decision is recorded in the
// database (the API's own fact), the host leaves the directory, every snapshot it owned that the object store holds
// is adopted by an online host (pulled from the store and made that host's own, so forks, restores and deletes work
// there), and its instances are marked lost, with why, by an event appended on the dead host's behalf. Snapshots the
// store never received (storage local) went with the disk: they are reported lost and stay listed, offline. A second
// call finishes what a first one left (adoptions that failed, a host that came back in between excepted).

import { ApiError, notFound } from "../shared/errors.ts";
import { subjectOf } from "../shared/events/catalog.ts";
import { EventStream } from "../shared/events/stream.ts";
import { mirrorRetiredHosts, retireHostEntry } from "../shared/hosts.ts";
import type { Instance } from "../shared/schemas/instance.ts";
import type { Snapshot } from "../shared/schemas/snapshot.ts";
import { z } from "../shared/zod.ts";
import { commandWaitMs, knownHosts, waitForReadModel } from "./commands.ts";
import type { AppDeps } from "./deps.ts";
import { chooseHost } from "./placement.ts";
import { instanceCountsByHost } from "./read-model/queries.ts";

export const RETIRED_HOST_SCHEMA = z
  .object({
    host_id: z.string(),
    retired_at: z.string(),
    adopted_snapshots: z
      .array(z.object({ snapshot_id: z.string(), host_id: z.string() }))
      .openapi({ description: "Stored snapshots another host took over from the object store" }),
    lost_snapshots: z
      .array(z.string())
      .openapi({ description: "Snapshots the object store never received: their payload went with the host" }),
    failed_snapshots: z
      .array(z.object({ snapshot_id: z.string(), error: z.string() }))
      .openapi({ description: "Adoptions that failed this time (the store unreachable, no host online): call again" }),
    lost_instances: z
      .array(z.string())
      .openapi({ description: "Instances marked lost (their VM and disk were there)" }),
  })
  .openapi("RetiredHost");
export type RetiredHost = z.infer<typeof RETIRED_HOST_SCHEMA>;

/** The state_error of an instance whose host was retired; presentation keeps it rather than "host offline". */
export const LOST_PREFIX = "lost:";

export async function retireHost(deps: AppDeps, hostId: string): Promise<RetiredHost> {
  const host = (await knownHosts(deps)).find((candidate) => candidate.id === hostId);
  const earlier = await deps.db
    .selectFrom("retired_hosts")
    .select("retired_at")
    .where("host_id", "=", hostId)
    .executeTakeFirst();
  if (!host && !earlier) throw notFound("host", hostId);
  if (host?.online) {
    throw new ApiError(
      "invalid_state",
      `host ${hostId} is online: stop its workers first (a retired host must not come back under its id)`,
    );
  }
  const retiredAt = earlier?.retired_at ?? new Date().toISOString();
  if (!earlier) {
    await deps.db
      .insertInto("retired_hosts")
      .values({ host_id: hostId, retired_at: retiredAt })
      .onConflict((conflict) => conflict.column("host_id").doNothing())
      .execute();
  }
  await retireHostEntry(deps.redis, deps.redisPrefix, hostId);
  const result: RetiredHost = {
    host_id: hostId,
    retired_at: retiredAt,
    adopted_snapshots: [],
    lost_snapshots: [],
    failed_snapshots: [],
    lost_instances: [],
  };
  await adoptSnapshots(deps, hostId, result);
  await markInstancesLost(deps, hostId, retiredAt, result);
  deps.log.warn(
    {
      hostId,
      adopted: result.adopted_snapshots.length,
      lostSnapshots: result.lost_snapshots,
      failed: result.failed_snapshots,
      lostInstances: result.lost_instances,
    },
    "host retired",
  );
  return result;
}

/** The Redis rebuild's task: the retired hosts' ids, from the database, into the set their workers check. */
export async function mirrorRetirements(deps: AppDeps): Promise<number> {
  const rows = await deps.db.selectFrom("retired_hosts").select("host_id").execute();
  return mirrorRetiredHosts(
    deps.redis,
    deps.redisPrefix,
    rows.map((row) => row.host_id),
  );
}

/**
 * DELETE of an instance its retired host took with it: nothing is left to stop or remove, so the delete is appended
 * on the host's behalf. Returns false for any other instance (its host does the delete).
 */
export async function deleteLostInstance(deps: AppDeps, instance: Instance): Promise<boolean> {
  const version = await lostInstanceVersion(deps, instance);
  if (version === undefined) return false;
  const { event } = await new EventStream(deps.redis, deps.redisPrefix).append(
    "instance.deleted",
    subjectOf.instance(instance.id),
    { instance },
    { version: version + 1 },
  );
  await waitForReadModel(deps, event.id, "deleting a lost instance");
  return true;
}

/**
 * The read model's version of an instance its retired host took with it (what a delete or a restore elsewhere goes
 * above); undefined for any other instance.
 */
export async function lostInstanceVersion(deps: AppDeps, instance: Instance): Promise<number | undefined> {
  if (!instance.state_error?.startsWith(LOST_PREFIX)) return undefined;
  const retired = await deps.db
    .selectFrom("retired_hosts")
    .select("host_id")
    .where("host_id", "=", instance.host_id)
    .executeTakeFirst();
  if (!retired) return undefined;
  const row = await deps.db
    .selectFrom("instances")
    .select("version")
    .where("id", "=", instance.id)
    .executeTakeFirstOrThrow();
  return row.version;
}

async function adoptSnapshots(deps: AppDeps, hostId: string, result: RetiredHost): Promise<void> {
  const rows = await deps.db
    .selectFrom("snapshots")
    .select(["id", "version", "resource"])
    .where("host_id", "=", hostId)
    .where("deleted_at", "is", null)
    .orderBy("created_at")
    .execute();
  for (const row of rows) {
    const snapshot = JSON.parse(row.resource) as Snapshot;
    if ((snapshot.storage ?? "local") === "local") {
      result.lost_snapshots.push(row.id);
      continue;
    }
    try {
      const target = chooseHost(
        await knownHosts(deps),
        await instanceCountsByHost(deps.db),
        snapshot.source_hypervisor,
      );
      const adopted = await deps.jobs.run(
        "snapshot.adopt",
        { snapshot_id: row.id, from_host_id: hostId, min_version: row.version },
        { hostId: target, timeoutMs: commandWaitMs(deps) },
      );
      await waitForReadModel(deps, adopted.event_id, "snapshot.adopt");
      result.adopted_snapshots.push({ snapshot_id: row.id, host_id: target });
    } catch (error) {
      // The store never received a complete copy (storage uploading or error from the start): lost, not retryable.
      if (error instanceof ApiError && error.code === "not_found") result.lost_snapshots.push(row.id);
      else result.failed_snapshots.push({ snapshot_id: row.id, error: (error as Error).message });
    }
  }
}

/** Each live instance of the host reads Unknown, lost, with when and why: appended at its next version. */
async function markInstancesLost(deps: AppDeps, hostId: string, retiredAt: string, result: RetiredHost) {
  const rows = await deps.db
    .selectFrom("instances")
    .select(["id", "version", "resource"])
    .where("host_id", "=", hostId)
    .where("deleted_at", "is", null)
    .execute();
  const events = new EventStream(deps.redis, deps.redisPrefix);
  for (const row of rows) {
    const instance = JSON.parse(row.resource) as Instance;
    if (instance.state_error?.startsWith(LOST_PREFIX)) {
      result.lost_instances.push(row.id);
      continue;
    }
    const lost: Instance = {
      ...instance,
      state: "Unknown",
      state_error: `${LOST_PREFIX} host ${hostId} was retired at ${retiredAt}; its VM and disk went with it`,
    };
    const { event } = await events.append(
      "instance.updated",
      subjectOf.instance(row.id),
      { instance: lost },
      { version: row.version + 1 },
    );
    await waitForReadModel(deps, event.id, "marking a retired host's instance lost");
    result.lost_instances.push(row.id);
  }
}
