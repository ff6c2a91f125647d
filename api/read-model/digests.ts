// Anti-entropy by digest, the read model's side: a host's digest (shared/events/digest.ts) against the same digest of
// the host's live rows here. The buckets that differ are asked of the host, which announces just those (a
// bucket-scoped `host.announce`); in the buckets that agree the host holds every row at its version, so a row marked
// missing there (ghosts.ts) is found.
import type { Redis } from "ioredis";
import {
  type BucketScope,
  bucketOf,
  differingBuckets,
  digestBuckets,
  type HostDigest,
} from "../../shared/events/digest.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import { redisCall } from "../../shared/redis.ts";
import type { Trx } from "./apply.ts";
import { type RowRef, resourceKey, setMissingSince } from "./ghosts.ts";

/** Buckets of a host the read model does not agree with, as read from one of its digests. */
export interface BucketResync {
  hostId: string;
  digestId: string;
  scope: BucketScope;
}

type LiveRow = RowRef & { key: string; version: number; missingSince: string | null };

/**
 * Compares a host's digest with the read model's rows of that host (inside the projector's transaction, after every
 * entry before it); returns the buckets to ask for, or undefined when they all agree.
 */
export async function compareDigest(trx: Trx, digest: HostDigest): Promise<BucketResync | undefined> {
  const rows = await liveRows(trx, digest.host_id);
  const differing = differingBuckets(digest.buckets, digestBuckets(rows, digest.bucket_count));
  const differs = new Set(differing);
  const found = rows.filter((row) => row.missingSince !== null && !differs.has(bucketOf(row.key, digest.bucket_count)));
  if (found.length > 0) await setMissingSince(trx, found, null);
  if (differing.length === 0) return undefined;
  return {
    hostId: digest.host_id,
    digestId: digest.digest_id,
    scope: { bucket_count: digest.bucket_count, buckets: differing },
  };
}

/** The host's live rows (an index holds all this reads: migration 0013). */
async function liveRows(trx: Trx, hostId: string): Promise<LiveRow[]> {
  const rows: LiveRow[] = [];
  for (const kind of ["instance", "snapshot"] as const) {
    const live = await trx
      .selectFrom(kind === "instance" ? "instances" : "snapshots")
      .select(["id", "version", "missing_since"])
      .where("host_id", "=", hostId)
      .where("deleted_at", "is", null)
      .execute();
    for (const row of live) {
      rows.push({
        kind,
        id: row.id,
        key: resourceKey(kind, row.id),
        version: row.version,
        missingSince: row.missing_since,
      });
    }
  }
  return rows;
}

export interface BucketResyncOptions {
  /** A command connection (the API's producer connection). */
  redis: Redis;
  prefix: string;
  jobs: JobProducer;
  /** At most one request per host this often, across replicas: half the hosts' interval lets each digest ask. */
  cooldownMs: number;
  commandTimeoutMs: number;
}

/** The one job id of a host's bucket announcements: at most one waits or runs at a time. */
export const bucketAnnouncementJobId = (hostId: string) => `announce-buckets-${hostId}`;

/**
 * Asks the host to announce the buckets. Whatever the number of API replicas and of digests read (a projector that
 * catches up reads many in a row, each differing from a read model that is behind), a host gets at most one request per
 * cooldown, and never a second while one waits or runs. A request skipped here is made again from the next digest.
 * Returns whether the job was queued.
 */
export async function requestBucketAnnouncement(options: BucketResyncOptions, resync: BucketResync): Promise<boolean> {
  const { redis, prefix, jobs, cooldownMs, commandTimeoutMs } = options;
  const cooling = await redisCall(
    redis.set(`${prefix}:digest-resync:${resync.hostId}`, resync.digestId, "PX", cooldownMs, "NX"),
    commandTimeoutMs,
    "digest resync cooldown",
  );
  if (cooling === null) return false;
  return jobs.enqueueOnce(
    "host.announce",
    { reason: `digest ${resync.digestId}: ${resync.scope.buckets.length} buckets differ`, scope: resync.scope },
    { hostId: resync.hostId, jobId: bucketAnnouncementJobId(resync.hostId) },
  );
}
