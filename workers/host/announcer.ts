// Anti-entropy: the host announces the full state of everything it owns (records with their versions, and the
// tombstones of what it deleted) at start, after every reconnect to Redis and on an interval. The read model applies
// it like any event, so it converges whatever events were lost (a crash between a write and its append, a Redis that
// came back empty); a complete announcement also removes from the read model what the host no longer has.
import { randomBytes } from "node:crypto";
import type { AnnouncedTombstone, HostAnnouncement } from "../../shared/events/announcement.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { publishTombstone, type TombstoneStore } from "../../shared/host-records.ts";
import type { Logger } from "../../shared/logger.ts";
import { publishSnapshotRecord, type SnapshotStore } from "../../shared/snapshots/store.ts";
import type { InstanceManager } from "./instances.ts";

/** Resources per stream entry: keeps each entry well under a megabyte. */
const PART_SIZE = 200;

export interface HostAnnouncerOptions {
  hostId: string;
  instances: InstanceManager;
  store: SnapshotStore;
  tombstones: TombstoneStore;
  events: EventStream;
  tombstoneRetentionMs: number;
  log: Logger;
}

/** Everything the host owns, as one listing of its files. */
export interface HostState {
  /** Stamped before the listing was taken: what the read model holds of this host, in a state made before this, and
   * not in the listing is gone (api/read-model/ghosts.ts). */
  listedAt: string;
  instances: Awaited<ReturnType<InstanceManager["listRecords"]>>;
  snapshots: Awaited<ReturnType<SnapshotStore["list"]>>;
  tombstones: Awaited<ReturnType<TombstoneStore["list"]>>;
}

export class HostAnnouncer {
  private running?: Promise<void>;

  constructor(private readonly options: HostAnnouncerOptions) {}

  /** Lists the host's records and tombstones (one read of its files, which a caller may use twice). */
  async readState(): Promise<HostState> {
    const { instances, store, tombstones, tombstoneRetentionMs } = this.options;
    return {
      listedAt: new Date().toISOString(),
      instances: await instances.listRecords(),
      snapshots: await store.list(),
      tombstones: await tombstones.list(tombstoneRetentionMs),
    };
  }

  /**
   * Announces now, from `state` if given (read just before) or from a fresh listing; a call while one is running
   * waits for it and announces again (the state may have moved).
   */
  async announce(reason: string, state?: HostState): Promise<void> {
    while (this.running) await this.running.catch(() => {});
    this.running = (async () => this.announceOnce(reason, state ?? (await this.readState())))();
    try {
      await this.running;
    } finally {
      this.running = undefined;
    }
  }

  /**
   * Appends again the last event of every record and tombstone changed within `withinMs`: a crash between a record's
   * write and its append lost that event for webhook subscribers too, not only for the read model.
   */
  async republishRecent(withinMs: number, state: HostState): Promise<number> {
    const { instances, events } = this.options;
    const recent = (occurredAt: string | undefined) =>
      occurredAt !== undefined && Date.now() - Date.parse(occurredAt) < withinMs;
    let count = 0;
    for (const record of state.instances) {
      if (recent(record.last_event?.occurred_at) && (await instances.publish(record))) count++;
    }
    for (const record of state.snapshots) {
      if (recent(record.last_event?.occurred_at) && (await publishSnapshotRecord(events, record))) count++;
    }
    for (const tombstone of state.tombstones) {
      if (recent(tombstone.last_event.occurred_at) && (await publishTombstone(events, tombstone))) count++;
    }
    return count;
  }

  private async announceOnce(reason: string, state: HostState): Promise<void> {
    const { hostId, events, log } = this.options;
    const instanceEntries = state.instances.map(({ instance, version, last_event }) => ({
      instance,
      version,
      changed_at: last_event?.occurred_at,
    }));
    const snapshotEntries = state.snapshots.map(({ snapshot, version, last_event }) => ({
      snapshot,
      version,
      changed_at: last_event?.occurred_at,
    }));
    // A tombstone is announced without its last event: the read model applies versions, not events.
    const tombstoneEntries: AnnouncedTombstone[] = state.tombstones.map(({ last_event: _, ...tombstone }) => tombstone);
    // The three lists are cut as one sequence (instances, snapshots, tombstones) into parts of PART_SIZE.
    const total = instanceEntries.length + snapshotEntries.length + tombstoneEntries.length;
    const parts = Math.max(1, Math.ceil(total / PART_SIZE));
    const inPart = <T>(list: T[], offset: number, part: number) =>
      list.slice(Math.max(0, part * PART_SIZE - offset), Math.max(0, (part + 1) * PART_SIZE - offset));
    const base = {
      host_id: hostId,
      announcement_id: `ann_${randomBytes(8).toString("hex")}`,
      parts,
      announced_at: state.listedAt,
    };
    for (let part = 0; part < parts; part++) {
      const announcement: HostAnnouncement = {
        ...base,
        part,
        instances: inPart(instanceEntries, 0, part),
        snapshots: inPart(snapshotEntries, instanceEntries.length, part),
        tombstones: inPart(tombstoneEntries, instanceEntries.length + snapshotEntries.length, part),
      };
      await events.announce(announcement);
    }
    log.debug(
      {
        reason,
        instances: instanceEntries.length,
        snapshots: snapshotEntries.length,
        tombstones: tombstoneEntries.length,
        parts,
      },
      "announced host state",
    );
  }
}
