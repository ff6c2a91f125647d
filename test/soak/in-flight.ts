// What the mid-run Redis data loss must not lose, set up before the pipelines start and checked at the end: a
// snapshot schedule (it fires again after the flush), a webhook subscription (no delivery is left pending), and two
// replicas on the second host (after the flush, the copy of a kept snapshot is in its replica set again, and the copy
// of a snapshot deleted after the flush is dropped from the disk).
import { existsSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { replicaSetKey } from "../../shared/snapshots/replicas.ts";
import { startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.ts";

export interface InFlightClient {
  baseUrl: string;
  apiKey: () => string;
  log: (line: string) => void;
  redisUrl: string;
  redisPrefix: string;
  /** The fleet's two hosts, and where each keeps its data. */
  hostIds: string[];
  dataDirOf: (hostId: string) => string;
}

export interface InFlight {
  /** The checks, each true when it held; waits up to `timeoutMs` for them to hold. */
  verify(
    flushedAt: number | undefined,
    timeoutMs: number,
  ): Promise<Array<{ name: string; ok: boolean; detail: string }>>;
  close(): Promise<void>;
}

const SCHEDULE_TAG = "snapfleet.schedule";

// biome-ignore lint/suspicious/noExplicitAny: answers are checked field by field, not typed here
type Json = any;

export async function startInFlight(client: InFlightClient, run: string): Promise<InFlight> {
  const receiver: WebhookReceiver = await startWebhookReceiver();
  const api = async (method: string, path: string, body?: unknown) => {
    for (;;) {
      const response = await fetch(`${client.baseUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${client.apiKey()}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      }).catch(() => undefined);
      if (response && response.status < 500) {
        const text = await response.text();
        return { status: response.status, json: (text ? JSON.parse(text) : undefined) as Json };
      }
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  };
  const hook = await api("POST", "/webhooks", { url: receiver.url, event_types: ["instance.*", "snapshot.created"] });
  if (hook.status !== 201) throw new Error(`webhook subscription: ${hook.status} ${JSON.stringify(hook.json)}`);
  const name = `soak-${run}-scheduled`;
  const created = await api("POST", "/instances", { name, size: "128MB" });
  if (created.status !== 201) throw new Error(`scheduled instance: ${created.status} ${JSON.stringify(created.json)}`);
  const schedule = await api("PUT", `/instances/${name}/snapshot-schedule`, {
    interval: "1m",
    retention: { max_count: 3 },
  });
  if (schedule.status !== 200) throw new Error(`schedule: ${schedule.status} ${JSON.stringify(schedule.json)}`);
  client.log(`in flight: webhook ${hook.json.id} to ${receiver.url}, a 1m schedule on ${name}`);

  // Two Standby snapshots of one instance, each copied to the other host by a Stopped fork there.
  const replicated = await api("POST", "/instances", { name: `soak-${run}-replicated`, size: "128MB" });
  if (replicated.status !== 201) throw new Error(`replicated instance: ${replicated.status}`);
  for (;;) {
    const current = await api("GET", `/instances/${replicated.json.id}`);
    if (current.json?.state === "Running") break;
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // no event to wait on from here
  }
  const copies: Record<"kept" | "gone", { snapshotId: string; hostId: string }> = {} as never;
  for (const which of ["kept", "gone"] as const) {
    const snapshot = await api("POST", `/instances/${replicated.json.id}/snapshots`, {
      kind: "Standby",
      name: `replica-${which}`,
    });
    if (snapshot.status !== 201)
      throw new Error(`replica snapshot: ${snapshot.status} ${JSON.stringify(snapshot.json)}`);
    const hostId = client.hostIds.find((id) => id !== snapshot.json.host_id)!;
    const fork = await api("POST", `/snapshots/${snapshot.json.id}/fork`, {
      name: `soak-${run}-replica-${which}-fork`,
      host_id: hostId,
      target_state: "Stopped",
    });
    if (fork.status !== 201) throw new Error(`fork on ${hostId}: ${fork.status} ${JSON.stringify(fork.json)}`);
    copies[which] = { snapshotId: snapshot.json.id, hostId };
  }
  client.log(`in flight: replicas of ${copies.kept.snapshotId} and ${copies.gone.snapshotId} on ${copies.kept.hostId}`);
  const redis = new Redis(client.redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true });
  redis.on("error", () => {}); // Redis is killed and restarted under it: each check asks again
  const replicaSet = (snapshotId: string) =>
    redis.smembers(replicaSetKey(client.redisPrefix, snapshotId)).catch(() => ["(redis did not answer)"]);
  const copyOnDisk = (copy: { snapshotId: string; hostId: string }) =>
    existsSync(path.join(client.dataDirOf(copy.hostId), "snapshots", copy.snapshotId));
  let goneDeleted = false;

  const checks = async (flushedAt: number | undefined) => {
    const snapshots = await api("GET", "/snapshots");
    const own = (
      snapshots.json as Array<{ source_instance_id: string; created_at: string; tags: Record<string, string> }>
    ).filter((snapshot) => snapshot.source_instance_id === created.json.id && SCHEDULE_TAG in snapshot.tags);
    const after = own.filter((snapshot) => flushedAt !== undefined && Date.parse(snapshot.created_at) > flushedAt);
    const pending = await api("GET", `/webhooks/${hook.json.id}/deliveries?status=pending`);
    if (!goneDeleted) {
      // Deleted after the Redis data loss: only a rebuilt replica set or the host's own reconcile drops its copy.
      const deleted = await api("DELETE", `/snapshots/${copies.gone.snapshotId}`);
      goneDeleted = deleted.status === 204 || deleted.status === 404;
    }
    const keptSet = await replicaSet(copies.kept.snapshotId);
    const goneSet = await replicaSet(copies.gone.snapshotId);
    return [
      {
        name: "a replica made before the Redis data loss is in its snapshot's replica set again",
        ok: copyOnDisk(copies.kept) && keptSet.includes(copies.kept.hostId),
        detail: `copy on ${copies.kept.hostId}: ${copyOnDisk(copies.kept)}, replica set [${keptSet.join(", ")}]`,
      },
      {
        name: "the replica of a snapshot deleted after the Redis data loss is dropped",
        ok: goneDeleted && !copyOnDisk(copies.gone) && goneSet.length === 0,
        detail: `deleted: ${goneDeleted}, copy on ${copies.gone.hostId}: ${copyOnDisk(copies.gone)}, replica set [${goneSet.join(", ")}]`,
      },
      {
        name: "schedule fires after the Redis data loss",
        ok: after.length > 0,
        detail: `${own.length} scheduled snapshots, ${after.length} after the flush`,
      },
      {
        name: "no webhook delivery left pending",
        ok: pending.status === 200 && pending.json.length === 0,
        detail: `${pending.json.length ?? "?"} pending, ${receiver.requests.length} received`,
      },
    ];
  };
  return {
    async verify(flushedAt, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const result = await checks(flushedAt);
        if (result.every((check) => check.ok) || Date.now() >= deadline) return result;
        await new Promise((resolve) => setTimeout(resolve, 5_000));
      }
    },
    async close() {
      redis.disconnect();
      await receiver.close();
    },
  };
}
