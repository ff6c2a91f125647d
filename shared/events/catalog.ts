// The event catalog: every event type workers emit, with the schema of its data.
// Resource events carry the whole resource as it is after the change, so consumers need no other source.

import { INSTANCE_SCHEMA } from "../schemas/instance.ts";
import { SNAPSHOT_SCHEMA } from "../schemas/snapshot.ts";
import { z } from "../zod.ts";

const snapshotData = z.object({ snapshot: SNAPSHOT_SCHEMA });
const instanceData = z.object({ instance: INSTANCE_SCHEMA });

export const EVENT_CATALOG = {
  "instance.created": instanceData,
  "instance.updated": instanceData,
  "instance.deleted": instanceData,
  "instance.forked": instanceData.extend({ snapshot_id: z.string() }),
  "instance.restored": instanceData.extend({ snapshot_id: z.string() }),
  "snapshot.created": snapshotData,
  /** POST /snapshots/{id}/compress: a new compression run is queued (the policy may have changed). */
  "snapshot.compression.queued": snapshotData,
  "snapshot.compression.started": snapshotData,
  "snapshot.compression.progress": snapshotData.extend({ bytes_done: z.number().int(), bytes_total: z.number().int() }),
  "snapshot.compression.completed": snapshotData,
  "snapshot.compression.failed": snapshotData,
  /** The owner started uploading the payload to the object store (after a capture, and again after a compression). */
  "snapshot.upload.started": snapshotData,
  /** The object store holds the snapshot as it is now (its manifest is written): any host can fork it. */
  "snapshot.stored": snapshotData,
  /** An upload failed; it is retried with back-off (storage_error says why). Forks from the host's copy still work. */
  "snapshot.upload.failed": snapshotData,
  /** Another host took over a retired host's stored snapshot (DELETE /hosts/{id}): `host_id` names it now. */
  "snapshot.adopted": snapshotData,
  "snapshot.deleted": snapshotData,
} as const;

export type EventType = keyof typeof EVENT_CATALOG;
export const EVENT_TYPES = Object.keys(EVENT_CATALOG) as EventType[];
export type EventData<Type extends EventType> = z.infer<(typeof EVENT_CATALOG)[Type]>;

/**
 * What every event carries around its data. `version` is the resource's version on the host that owns it, written
 * atomically with the record: a newer version always wins, whatever order events arrive in.
 */
export const EVENT_ENVELOPE = z.object({
  id: z.string(),
  type: z.enum(EVENT_TYPES as [EventType, ...EventType[]]),
  occurred_at: z.iso.datetime(),
  subject: z.string().openapi({ description: "snapshot:<id> or instance:<id>" }),
  version: z.number().int().nonnegative(),
  data: z.record(z.string(), z.unknown()),
});

export type EventEnvelope = z.infer<typeof EVENT_ENVELOPE>;

export type TypedEvent<Type extends EventType = EventType> = Omit<EventEnvelope, "type" | "data"> & {
  type: Type;
  data: EventData<Type>;
};

/** Parses an envelope and its data against the catalog; throws on anything that does not fit. */
export function parseEvent(value: unknown): TypedEvent {
  const envelope = EVENT_ENVELOPE.parse(value);
  const data = EVENT_CATALOG[envelope.type].parse(envelope.data);
  return { ...envelope, data } as TypedEvent;
}

export const subjectOf = {
  snapshot: (id: string) => `snapshot:${id}`,
  instance: (id: string) => `instance:${id}`,
};

/** Does `type` match a subscription pattern: an exact name, `*`, or a prefix wildcard like `snapshot.*`. */
export function eventTypeMatches(pattern: string, type: string): boolean {
  if (pattern === "*" || pattern === type) return true;
  return pattern.endsWith(".*") && type.startsWith(pattern.slice(0, -1));
}
