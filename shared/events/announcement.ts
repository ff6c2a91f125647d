// A host's announcement: every record it owns and every tombstone it keeps, with their versions; all of them (its full
// state) or those of the digest buckets the read model asked for (its `scope`, shared/events/digest.ts).
// The read model applies it like any event (newer version wins), so whatever events were lost, it converges; once all
// parts of one announcement are in, what the read model holds of the host in the announcement's scope that it and the
// one before covering the same keys lack is removed.
import { INSTANCE_SCHEMA } from "../schemas/instance.ts";
import { SNAPSHOT_SCHEMA } from "../schemas/snapshot.ts";
import { z } from "../zod.ts";
import { BUCKET_SCOPE } from "./digest.ts";

const VERSION = z.number().int().nonnegative();
/** When the host made the record's state (its last event's occurred_at); absent from hosts that predate it. */
const CHANGED_AT = z.iso.datetime().optional();

export const ANNOUNCED_TOMBSTONE = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("instance"), version: VERSION, deleted_at: z.iso.datetime(), instance: INSTANCE_SCHEMA }),
  z.object({ kind: z.literal("snapshot"), version: VERSION, deleted_at: z.iso.datetime(), snapshot: SNAPSHOT_SCHEMA }),
]);

export const HOST_ANNOUNCEMENT = z.object({
  host_id: z.string(),
  /** One announcement may span several stream entries (parts); they share this id. */
  announcement_id: z.string(),
  part: z.number().int().nonnegative(),
  parts: z.number().int().positive(),
  /** Stamped before the host listed its records: a complete announcement removes what it lacks, made before this. */
  announced_at: z.iso.datetime(),
  instances: z.array(z.object({ version: VERSION, changed_at: CHANGED_AT, instance: INSTANCE_SCHEMA })),
  snapshots: z.array(z.object({ version: VERSION, changed_at: CHANGED_AT, snapshot: SNAPSHOT_SCHEMA })),
  tombstones: z.array(ANNOUNCED_TOMBSTONE),
  /** The digest buckets this announcement covers (every part says the same); absent: the host's full state. */
  scope: BUCKET_SCOPE.optional(),
});

export type HostAnnouncement = z.infer<typeof HOST_ANNOUNCEMENT>;
export type AnnouncedTombstone = z.infer<typeof ANNOUNCED_TOMBSTONE>;
