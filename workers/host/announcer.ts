// Anti-entropy: the host announces the full state of everything it owns (records with their versions, and the
// tombstones of what it deleted) at start, after every reconnect to Redis and when asked. On its interval it appends
// only a digest of that state (shared/events/digest.ts); the read model compares it with its own rows of the host and
// asks for the buckets that differ, which the host then announces alone (records and tombstones of those buckets). The
// read model applies announcements like any event, so it converges whatever events were lost (a crash between a write
// and its append, a Redis that came back empty); a complete announcement also removes from the read model what the host
// no longer has, among the keys it covers.
//
// There is no periodic full announcement behind the digests: every way the read model can differ from the host's live
// records (a row missing, extra, or at another version) changes the digest of its bucket, and records at one version
// do not differ (the version is bumped in the same write as every change, shared/host-records.ts). What a digest does
// not cover is tombstones of resources the read model never saw: it needs none (it serves no deleted rows), and a
// stale live event of one brings the row in, which the digest then shows.
import { randomBytes } from "node:crypto";
import type { AnnouncedTombstone, HostAnnouncement } from "../../shared/events/announcement.ts";
import { subjectOf } from "../../shared/events/catalog.ts";
import { type BucketScope, DIGEST_BUCKET_COUNT, digestBuckets, inScope } from "../../shared/events/digest.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { publishTombstone, type Tombstone, type TombstoneStore } from "../../shared/host-records.ts";
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

/** What to announce: from `state` if given (read just before) or from a fresh listing; with `scope`, those buckets. */
export interface AnnounceOptions {
  state?: HostState;
  scope?: BucketScope;
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

  /** Announces now (all, or the buckets of `scope`); a call while one is running waits for it (the state may move). */
  announce(reason: string, { state, scope }: AnnounceOptions = {}): Promise<void> {
    return this.oneAtATime(async () => this.announceOnce(reason, state ?? (await this.readState()), scope));
  }

  /** Appends a digest of what the host owns now (the interval's work): one small stream entry. */
  digest(): Promise<void> {
    return this.oneAtATime(async () => {
      const state = await this.readState();
      const lines = [
        ...state.instances.map(({ instance, version }) => ({ key: subjectOf.instance(instance.id), version })),
        ...state.snapshots.map(({ snapshot, version }) => ({ key: subjectOf.snapshot(snapshot.id), version })),
      ];
      await this.options.events.digest({
        host_id: this.options.hostId,
        digest_id: `dig_${randomBytes(8).toString("hex")}`,
        digested_at: state.listedAt,
        bucket_count: DIGEST_BUCKET_COUNT,
        buckets: digestBuckets(lines, DIGEST_BUCKET_COUNT),
      });
    });
  }

  /**
   * Runs one announcement or digest at a time: the parts of one announcement follow each other on the stream, and a
   * digest is never taken in the middle of an announcement.
   */
  private async oneAtATime(work: () => Promise<void>): Promise<void> {
    while (this.running) await this.running.catch(() => {});
    this.running = work();
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

  private async announceOnce(reason: string, state: HostState, scope: BucketScope | undefined): Promise<void> {
    const { hostId, events, log } = this.options;
    const instanceEntries = state.instances
      .filter(({ instance }) => inScope(subjectOf.instance(instance.id), scope))
      .map(({ instance, version, last_event }) => ({ instance, version, changed_at: last_event?.occurred_at }));
    const snapshotEntries = state.snapshots
      .filter(({ snapshot }) => inScope(subjectOf.snapshot(snapshot.id), scope))
      .map(({ snapshot, version, last_event }) => ({ snapshot, version, changed_at: last_event?.occurred_at }));
    // A tombstone is announced without its last event: the read model applies versions, not events.
    const tombstoneEntries: AnnouncedTombstone[] = state.tombstones
      .filter((tombstone) => inScope(tombstoneKey(tombstone), scope))
      .map(({ last_event: _, ...tombstone }) => tombstone);
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
      scope,
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
        buckets: scope?.buckets.length,
      },
      "announced host state",
    );
  }
}

/** A tombstone's key, as its resource's: the event subject. */
function tombstoneKey(tombstone: Tombstone): string {
  return tombstone.kind === "instance"
    ? subjectOf.instance(tombstone.instance.id)
    : subjectOf.snapshot(tombstone.snapshot.id);
}
