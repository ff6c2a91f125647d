// A host's digest against the read model: the buckets that differ (a row missing, extra, or at another version) and
// no other, other hosts' rows left out, missing marks cleared where the buckets agree; and the request to the host,
// at most one per cooldown and never a second while one waits. Real SQLite/PostgreSQL, real Redis and BullMQ.
import { afterEach, expect, it } from "vitest";
import { bucketOf, type DigestLine, digestBuckets, type HostDigest } from "../../shared/events/digest.ts";
import { queueName } from "../../shared/jobs/catalog.ts";
import { JobProducer } from "../../shared/jobs/producer.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../../shared/redis.ts";
import { openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { describeEachDialect } from "../../test/helpers/postgres.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import type { DialectName } from "../db/dialect.ts";
import { applyChanges, type Change } from "./apply.ts";
import { bucketAnnouncementJobId, compareDigest, requestBucketAnnouncement } from "./digests.ts";

const BUCKETS = 16;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const digestOf = (lines: DigestLine[]): HostDigest => ({
  host_id: "host-a",
  digest_id: "dig_test",
  digested_at: new Date().toISOString(),
  bucket_count: BUCKETS,
  buckets: digestBuckets(lines, BUCKETS),
});

describeEachDialect("a host's digest against the read model on %s", (dialect: DialectName) => {
  let database: TestDatabase | undefined;
  afterEach(async () => {
    await database?.close();
    database = undefined;
  });

  it("finds the buckets that differ and no other; clears missing marks where they agree", async () => {
    database = await openTestDatabase("digests", dialect);
    const { db } = database;
    const instance = sampleInstance({ host_id: "host-a" });
    const [kept, stale, extra] = [1, 2, 3].map(() => sampleSnapshot(instance));
    const otherHost = sampleSnapshot(sampleInstance({ host_id: "host-b" }), { host_id: "host-b" });
    const deleted = sampleSnapshot(instance);
    const changes: Change[] = [
      { kind: "instance", instance, version: 4, deletedAt: null },
      { kind: "snapshot", snapshot: kept!, version: 1, deletedAt: null },
      { kind: "snapshot", snapshot: stale!, version: 2, deletedAt: null },
      { kind: "snapshot", snapshot: extra!, version: 1, deletedAt: null },
      { kind: "snapshot", snapshot: otherHost, version: 1, deletedAt: null },
      { kind: "snapshot", snapshot: deleted, version: 2, deletedAt: new Date().toISOString() },
    ];
    await db.transaction().execute((trx) => applyChanges(trx, changes));
    const compare = (digest: HostDigest) => db.transaction().execute((trx) => compareDigest(trx, digest));
    const live = [
      { key: `instance:${instance.id}`, version: 4 },
      { key: `snapshot:${kept!.id}`, version: 1 },
      { key: `snapshot:${stale!.id}`, version: 2 },
      { key: `snapshot:${extra!.id}`, version: 1 },
    ];
    // The same rows (the other host's and the deleted one left out): nothing to ask.
    expect(await compare(digestOf(live))).toBeUndefined();

    // The host has `stale` at a newer version, lacks `extra`, and has one the read model never heard of.
    const unheard = `snapshot:${sampleSnapshot(instance).id}`;
    const hostHas = [live[0]!, live[1]!, { key: `snapshot:${stale!.id}`, version: 3 }, { key: unheard, version: 1 }];
    const expected = [
      ...new Set([`snapshot:${stale!.id}`, `snapshot:${extra!.id}`, unheard].map((key) => bucketOf(key, BUCKETS))),
    ].sort((a, b) => a - b);
    // Rows marked missing by an earlier announcement: the digest clears those in agreeing buckets.
    await db.updateTable("snapshots").set({ missing_since: new Date().toISOString() }).execute();
    await db.updateTable("instances").set({ missing_since: new Date().toISOString() }).execute();
    expect(await compare(digestOf(hostHas))).toEqual({
      hostId: "host-a",
      digestId: "dig_test",
      scope: { bucket_count: BUCKETS, buckets: expected },
    });
    const marks = [
      ...(await db.selectFrom("instances").select(["id", "missing_since"]).execute()).map((row) => ({
        ...row,
        key: `instance:${row.id}`,
      })),
      ...(await db.selectFrom("snapshots").select(["id", "missing_since", "host_id"]).execute())
        .filter((row) => row.host_id === "host-a" && row.id !== deleted.id)
        .map((row) => ({ ...row, key: `snapshot:${row.id}` })),
    ];
    for (const { key, missing_since } of marks) {
      expect(missing_since === null, key).toBe(!expected.includes(bucketOf(key, BUCKETS)));
    }
    // Another host's rows are not this digest's to clear.
    expect(
      (await db.selectFrom("snapshots").select("missing_since").where("id", "=", otherHost.id).executeTakeFirst())
        ?.missing_since,
    ).not.toBeNull();
  });
});

it("asks a host once per cooldown, and never again while its request waits", async () => {
  const prefix = uniquePrefix("digests");
  const redis = connectRedis(testRedisUrl(), "producer", 1_000);
  await waitForRedisReady(redis, 5_000);
  const jobs = new JobProducer({ redisUrl: testRedisUrl(), prefix, connection: redis, commandTimeoutMs: 1_000 });
  cleanups.push(async () => {
    await jobs.close();
    await closeRedis(redis);
  });
  const options = { redis, prefix, jobs, cooldownMs: 300, commandTimeoutMs: 1_000 };
  const resync = (digestId: string) => ({
    hostId: "host-a",
    digestId,
    scope: { bucket_count: BUCKETS, buckets: [3, 7] },
  });
  expect(await requestBucketAnnouncement(options, resync("dig_1"))).toBe(true);
  // Another replica, or the next digest read at once: within the cooldown, nothing.
  expect(await requestBucketAnnouncement(options, resync("dig_2"))).toBe(false);
  await new Promise((resolve) => setTimeout(resolve, 400));
  // The cooldown is over, but the first request still waits (no worker runs here): nothing again.
  expect(await requestBucketAnnouncement(options, resync("dig_3"))).toBe(false);
  const queue = jobs.queue(queueName("host", "host-a"));
  const job = await queue.getJob(bucketAnnouncementJobId("host-a"));
  expect(job?.name).toBe("host.announce");
  expect(job?.data.payload).toEqual({ reason: "digest dig_1: 2 buckets differ", scope: resync("dig_1").scope });
  expect((await queue.getJobCounts("waiting")).waiting).toBe(1);
});
