// What every record a host owns carries besides its resource: a version bumped with each change and written with it
// atomically, and the event that announces that change (its id fixed before the write, so re-appending it after a
// crash or a re-run job is harmless: consumers dedupe by event id).
import { mkdir, readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { type EventType, subjectOf } from "./events/catalog.ts";
import { type EventStream, newEventId } from "./events/stream.ts";
import { writeFileDurable } from "./files.ts";
import { INSTANCE_SCHEMA } from "./schemas/instance.ts";
import { SNAPSHOT_SCHEMA } from "./schemas/snapshot.ts";
import { z } from "./zod.ts";

export const LAST_EVENT = z.object({
  id: z.string(),
  type: z.string(),
  occurred_at: z.iso.datetime(),
  /** The host job that made the change: a re-run of that job returns this change instead of doing it again. */
  job_id: z.string().nullable(),
  /** For instance.forked / instance.restored. */
  snapshot_id: z.string().optional(),
});

export type LastEvent = z.infer<typeof LAST_EVENT>;

export interface Versioned {
  version: number;
  last_event: LastEvent | null;
}

/** The version and event of the next change to a record at `previous` (undefined: the record is new). */
export function nextStamp(
  previous: Versioned | undefined,
  type: EventType,
  jobId: string | null | undefined,
  snapshotId?: string,
): { version: number; last_event: LastEvent } {
  return {
    version: (previous?.version ?? 0) + 1,
    last_event: {
      id: newEventId(),
      type,
      occurred_at: new Date().toISOString(),
      job_id: jobId ?? null,
      ...(snapshotId ? { snapshot_id: snapshotId } : {}),
    },
  };
}

/** Did the job `jobId` make the record's last change (so a re-run of it has nothing left to do)? */
export const madeBy = (record: Versioned | undefined, jobId: string | null | undefined): boolean =>
  jobId != null && record?.last_event?.job_id === jobId;

export const TOMBSTONE = z.discriminatedUnion("kind", [
  z.object({
    kind: z.literal("instance"),
    version: z.number().int().nonnegative(),
    deleted_at: z.iso.datetime(),
    last_event: LAST_EVENT,
    instance: INSTANCE_SCHEMA,
  }),
  z.object({
    kind: z.literal("snapshot"),
    version: z.number().int().nonnegative(),
    deleted_at: z.iso.datetime(),
    last_event: LAST_EVENT,
    snapshot: SNAPSHOT_SCHEMA,
  }),
]);

export type Tombstone = z.infer<typeof TOMBSTONE>;
export type TombstoneKind = Tombstone["kind"];

/** `<DATA_DIR>/tombstones/<kind>-<id>.json`: what a host deleted, kept (and announced) for a retention period. */
export class TombstoneStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, "tombstones");
  }

  private file(kind: TombstoneKind, id: string): string {
    return path.join(this.dir, `${kind}-${id}.json`);
  }

  async write(tombstone: Tombstone): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const id = tombstone.kind === "instance" ? tombstone.instance.id : tombstone.snapshot.id;
    await writeFileDurable(this.file(tombstone.kind, id), `${JSON.stringify(tombstone)}\n`);
  }

  async read(kind: TombstoneKind, id: string): Promise<Tombstone | undefined> {
    try {
      return TOMBSTONE.parse(JSON.parse(await readFile(this.file(kind, id), "utf8")));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  }

  /** Every tombstone younger than `retentionMs`; older ones are removed on the way. */
  async list(retentionMs: number): Promise<Tombstone[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const kept: Tombstone[] = [];
    for (const name of names.filter((entry) => entry.endsWith(".json"))) {
      const file = path.join(this.dir, name);
      const text = await readFile(file, "utf8").catch(() => "null");
      const parsed = TOMBSTONE.safeParse(parseOrUndefined(text)); // an unreadable tombstone is skipped, not fatal
      if (!parsed.success) continue;
      if (Date.now() - Date.parse(parsed.data.deleted_at) > retentionMs) await rm(file, { force: true });
      else kept.push(parsed.data);
    }
    return kept;
  }
}

/** Appends a tombstone's deletion event (again): consumers dedupe by its id. Returns the event id. */
export async function publishTombstone(events: EventStream, tombstone: Tombstone): Promise<string> {
  const stamp = { ...tombstone.last_event, version: tombstone.version };
  if (tombstone.kind === "instance") {
    const { instance } = tombstone;
    await events.append("instance.deleted", subjectOf.instance(instance.id), { instance }, stamp);
  } else {
    const { snapshot } = tombstone;
    await events.append("snapshot.deleted", subjectOf.snapshot(snapshot.id), { snapshot }, stamp);
  }
  return tombstone.last_event.id;
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
