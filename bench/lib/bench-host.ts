// A worker host without VMs for the benches that drive the real anti-entropy path (bench/announce.ts, and the
// simulated fleet of bench/fleet.ts): the host's record stores and its HostAnnouncer over a data directory, and
// records written as a capture leaves them, without fsync (seeding thousands must be fast; the files are the same).
// A host may list its records from memory instead of its files (RecordsInMemory): what it appends is the same, and a
// simulated fleet on one machine then does not spend the machine on every host's listing.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { Redis } from "ioredis";
import type { EventStream } from "../../shared/events/stream.ts";
import { nextStamp, TombstoneStore } from "../../shared/host-records.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import { MEMORY_FILE, RECORD_FILE, type SnapshotRecord, SnapshotStore } from "../../shared/snapshots/store.ts";
import { HostAnnouncer, type HostAnnouncerOptions, type HostState } from "../../workers/host/announcer.ts";
import { InstanceManager, type InstanceRecord } from "../../workers/host/instances.ts";

/** How long the benches' hosts keep tombstones (they delete nothing; the listing still reads the directory). */
const TOMBSTONE_RETENTION_MS = 3_600_000;

export interface BenchHost {
  hostId: string;
  store: SnapshotStore;
  tombstones: TombstoneStore;
  instances: InstanceManager;
  announcer: HostAnnouncer;
}

/** The live records of a host as its files hold them, kept beside them by whoever writes them. */
export class RecordsInMemory {
  readonly instances = new Map<string, InstanceRecord>();
  readonly snapshots = new Map<string, SnapshotRecord>();
}

/** An announcer whose listing is `records` (tombstones: none; the simulated hosts delete nothing). */
class AnnouncerListingMemory extends HostAnnouncer {
  constructor(
    options: HostAnnouncerOptions,
    private readonly records: RecordsInMemory,
  ) {
    super(options);
  }

  override async readState(): Promise<HostState> {
    return {
      listedAt: new Date().toISOString(),
      instances: [...this.records.instances.values()],
      snapshots: [...this.records.snapshots.values()],
      tombstones: [],
    };
  }
}

/**
 * The stores and announcer a capture worker builds (workers/host/main.ts), over `dataDir`, with no hypervisor; with
 * `records`, the announcer lists those instead of reading the files.
 */
export function benchHost(options: {
  hostId: string;
  dataDir: string;
  redis: Redis;
  prefix: string;
  events: EventStream;
  log: Logger;
  records?: RecordsInMemory;
}): BenchHost {
  const { hostId, dataDir, redis, prefix, events, log, records } = options;
  const store = new SnapshotStore(dataDir, redis, prefix);
  const tombstones = new TombstoneStore(dataDir);
  const instances = new InstanceManager({
    dataDir,
    imagesDir: dataDir,
    hostId,
    drivers: new Map(),
    events,
    tombstones,
    log,
  });
  const announcerOptions = {
    hostId,
    instances,
    store,
    tombstones,
    events,
    tombstoneRetentionMs: TOMBSTONE_RETENTION_MS,
    log,
  };
  const announcer = records
    ? new AnnouncerListingMemory(announcerOptions, records)
    : new HostAnnouncer(announcerOptions);
  return { hostId, store, tombstones, instances, announcer };
}

/** A Standby snapshot's record as its capture writes it (version 1, `snapshot.created`), its event not appended. */
export function writeSnapshotRecord(store: SnapshotStore, snapshot: Snapshot, source: Instance): SnapshotRecord {
  const record: SnapshotRecord = {
    snapshot,
    source,
    memory_layout: "file",
    memory_payload: MEMORY_FILE,
    ...nextStamp(undefined, "snapshot.created", null),
  };
  mkdirSync(store.dir(snapshot.id), { recursive: true });
  writeFileSync(path.join(store.dir(snapshot.id), RECORD_FILE), JSON.stringify(record));
  return record;
}

/** An instance's record as its create writes it (version 1, `instance.created`), its event not appended. */
export function writeInstanceRecord(instances: InstanceManager, instance: Instance): InstanceRecord {
  const record: InstanceRecord = { instance, ...nextStamp(undefined, "instance.created", null) };
  const file = instances.files(instance.id).record;
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(record));
  return record;
}
