// Jobs carried by a host's own queue: everything that touches that host's VMs and payloads.
// The API prepares new resources (ids, names, policy) and awaits each result; the worker is the authority
// on what happened and emits the events that feed the read model. Every id in a payload is checked against the id
// format: workers join them into paths they write and remove.
import { z } from "zod";
import { BUCKET_SCOPE } from "../events/digest.ts";
import { HOST_ID, RESOURCE_ID } from "../schemas/common.ts";
import { INSTANCE_SCHEMA, INSTANCE_STATS_SCHEMA } from "../schemas/instance.ts";
import { SNAPSHOT_SCHEMA, TARGET_STATE } from "../schemas/snapshot.ts";
import type { JobDefinition } from "./catalog.ts";
import { STANDBY_COMPRESSION_POLICY } from "./compression-jobs.ts";

const NO_RETRY = { attempts: 1, backoff: { type: "fixed", delayMs: 0 } } as const;

/** Every state-changing job answers with the resource after the change and the id of the event it emitted. */
const INSTANCE_RESULT = z.object({ instance: INSTANCE_SCHEMA, event_id: z.string() });
const SNAPSHOT_RESULT = z.object({ snapshot: SNAPSHOT_SCHEMA, event_id: z.string() });
const INSTANCE_REF = z.object({ instance_id: RESOURCE_ID });
const PREPARED_INSTANCE = INSTANCE_SCHEMA.extend({ id: RESOURCE_ID });
const PREPARED_SNAPSHOT = SNAPSHOT_SCHEMA.extend({ id: RESOURCE_ID, source_instance_id: RESOURCE_ID });

export const HOST_JOBS = {
  "host.ping": {
    queue: "host",
    payload: z.object({ sentAt: z.iso.datetime() }),
    result: z.object({ hostId: z.string(), receivedAt: z.iso.datetime() }),
    ...NO_RETRY,
    timeoutMs: 5_000,
  },
  /**
   * Asks the host to announce the full state of what it owns now (a rebuild of the read model asks every host), or
   * with `scope` only the digest buckets the read model disagrees with (api/read-model/digests.ts).
   */
  "host.announce": {
    queue: "host",
    payload: z.object({ reason: z.string().max(200), scope: BUCKET_SCOPE.optional() }),
    result: z.object({ hostId: z.string(), receivedAt: z.iso.datetime() }),
    ...NO_RETRY,
    timeoutMs: 60_000,
  },
  /** Creates the instance's files and boots it; `instance` is the prepared resource (state Created). */
  "instance.create": {
    queue: "host",
    payload: z.object({ instance: PREPARED_INSTANCE }),
    result: INSTANCE_RESULT,
    ...NO_RETRY,
    timeoutMs: 120_000,
  },
  "instance.stop": { queue: "host", payload: INSTANCE_REF, result: INSTANCE_RESULT, ...NO_RETRY, timeoutMs: 60_000 },
  "instance.start": { queue: "host", payload: INSTANCE_REF, result: INSTANCE_RESULT, ...NO_RETRY, timeoutMs: 120_000 },
  "instance.standby": {
    queue: "host",
    payload: INSTANCE_REF.extend({
      /** Compress the captured RAM in the background, after `compression_delay_ms`; null or absent: never. */
      compression: STANDBY_COMPRESSION_POLICY.nullable().optional(),
      compression_delay_ms: z.number().int().min(0).optional(),
    }),
    result: INSTANCE_RESULT,
    ...NO_RETRY,
    timeoutMs: 120_000,
  },
  /**
   * The compression worker's word that a standby compression ended (packed, or failed for good with `error`): the
   * host reads where it stands from the instance's files and publishes it on the instance.
   */
  "instance.standby.compression.changed": {
    queue: "host",
    payload: INSTANCE_REF.extend({ error: z.string().max(2_000).nullable() }),
    result: z.object({ changed: z.boolean() }),
    attempts: 5,
    backoff: { type: "exponential", delayMs: 1_000 },
    timeoutMs: 60_000,
  },
  "instance.restore": {
    queue: "host",
    payload: INSTANCE_REF,
    result: INSTANCE_RESULT,
    ...NO_RETRY,
    timeoutMs: 120_000,
  },
  "instance.delete": { queue: "host", payload: INSTANCE_REF, result: INSTANCE_RESULT, ...NO_RETRY, timeoutMs: 60_000 },
  "instance.logs": {
    queue: "host",
    payload: INSTANCE_REF.extend({ tail: z.number().int().min(1).max(10_000) }),
    result: z.object({ lines: z.array(z.string()) }),
    ...NO_RETRY,
    timeoutMs: 10_000,
  },
  "instance.stats": {
    queue: "host",
    payload: INSTANCE_REF,
    result: INSTANCE_STATS_SCHEMA,
    ...NO_RETRY,
    timeoutMs: 10_000,
  },
  /** Captures a snapshot of the instance; `snapshot` is the prepared resource (id, name, tags, kind, policy). */
  "snapshot.capture": {
    queue: "host",
    payload: z.object({ instance_id: RESOURCE_ID, snapshot: PREPARED_SNAPSHOT }),
    result: SNAPSHOT_RESULT,
    ...NO_RETRY,
    timeoutMs: 600_000,
  },
  /**
   * Boots a new instance (the prepared `instance`) from a snapshot, in the target state. With `min_version`, the
   * instance is one a retired host took with it, restored here under its own id: recorded as `instance.restored`
   * above that version (the read model's), so it replaces the lost row.
   */
  "snapshot.fork": {
    queue: "host",
    payload: z.object({
      snapshot_id: RESOURCE_ID,
      instance: PREPARED_INSTANCE,
      target_state: TARGET_STATE,
      min_version: z.number().int().nonnegative().optional(),
    }),
    result: INSTANCE_RESULT,
    ...NO_RETRY,
    timeoutMs: 600_000,
  },
  /**
   * Forks an instance: captures it into the transient `snapshot` (Standby from Running/Standby, Stopped from
   * Stopped), boots the prepared `instance` from it in the target state, then deletes the transient snapshot.
   */
  "instance.fork": {
    queue: "host",
    payload: z.object({
      instance_id: RESOURCE_ID,
      from_running: z.boolean(),
      snapshot: PREPARED_SNAPSHOT,
      instance: PREPARED_INSTANCE,
      target_state: TARGET_STATE,
    }),
    result: INSTANCE_RESULT,
    ...NO_RETRY,
    timeoutMs: 600_000,
  },
  /** Puts the snapshot's source instance back to the snapshot's moment, in the target state. */
  "snapshot.restore": {
    queue: "host",
    payload: z.object({ snapshot_id: RESOURCE_ID, instance_id: RESOURCE_ID, target_state: TARGET_STATE }),
    result: INSTANCE_RESULT,
    ...NO_RETRY,
    timeoutMs: 600_000,
  },
  /** Makes this host hold a copy of a snapshot stored on `owner_host_id` (pulled from its payload server). */
  "snapshot.replicate": {
    queue: "host",
    payload: z.object({ snapshot_id: RESOURCE_ID, owner_host_id: HOST_ID }),
    result: z.object({ pulled_bytes: z.number().int(), ms: z.number() }),
    ...NO_RETRY,
    timeoutMs: 600_000,
  },
  /**
   * Takes over a retired host's snapshot from the object store (DELETE /hosts/{id}): pulled like a replica, then this
   * host's own, at a version above `min_version` (the read model's).
   */
  "snapshot.adopt": {
    queue: "host",
    payload: z.object({ snapshot_id: RESOURCE_ID, from_host_id: HOST_ID, min_version: z.number().int().nonnegative() }),
    result: SNAPSHOT_RESULT,
    ...NO_RETRY,
    timeoutMs: 600_000,
  },
  /** Removes this host's copy of a snapshot stored elsewhere. */
  "snapshot.drop-replica": {
    queue: "host",
    payload: z.object({ snapshot_id: RESOURCE_ID }),
    result: z.object({ dropped: z.boolean() }),
    ...NO_RETRY,
    timeoutMs: 60_000,
  },
  /** Queues compression of a snapshot in `none` or `error` again, with `compression` as its policy from now on. */
  "snapshot.recompress": {
    queue: "host",
    payload: z.object({ snapshot_id: RESOURCE_ID, compression: SNAPSHOT_SCHEMA.shape.compression }),
    result: SNAPSHOT_RESULT,
    ...NO_RETRY,
    timeoutMs: 60_000,
  },
  /** Cancels work in flight on the snapshot, removes its payload and emits snapshot.deleted. */
  "snapshot.delete": {
    queue: "host",
    payload: z.object({ snapshot_id: RESOURCE_ID }),
    result: SNAPSHOT_RESULT,
    ...NO_RETRY,
    timeoutMs: 60_000,
  },
} as const satisfies Record<string, JobDefinition>;
