import { afterAll, describe, expect, it } from "vitest";
import { testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import { closeRedis, connectRedis } from "../redis.ts";
import { digestBuckets } from "./digest.ts";
import { decodeEntry, decodeEvent, EventStream, peekEventType } from "./stream.ts";

const redis = connectRedis(testRedisUrl(), "worker", 2_000);
afterAll(() => closeRedis(redis));

describe("peekEventType", () => {
  it("reads the type of an appended event without decoding it, and nothing from an announcement or a digest", async () => {
    const stream = new EventStream(redis, uniquePrefix("peek"));
    const snapshot = sampleSnapshot(sampleInstance());
    await stream.append("snapshot.created", `snapshot:${snapshot.id}`, { snapshot }, { version: 1 });
    await stream.announce({
      host_id: "h1",
      announcement_id: "ann_0123456789abcdef",
      parts: 1,
      part: 0,
      announced_at: new Date().toISOString(),
      instances: [],
      snapshots: [],
      tombstones: [],
    });
    const digest = {
      host_id: "h1",
      digest_id: "dig_0123456789abcdef",
      digested_at: new Date().toISOString(),
      bucket_count: 2,
      buckets: digestBuckets([{ key: `snapshot:${snapshot.id}`, version: 1 }], 2),
    };
    await stream.digest(digest);
    const entries = (await redis.xrange(stream.key, "-", "+")).map(([, fields]) => fields);
    expect(entries.map(peekEventType)).toEqual(["snapshot.created", undefined, undefined]);
    expect(decodeEntry(entries[0]!)).toMatchObject({ kind: "event", event: { type: "snapshot.created" } });
    expect(decodeEntry(entries[2]!)).toEqual({ kind: "digest", digest });
    expect(decodeEvent(entries[2]!)).toBeUndefined();
    // An entry that does not begin as append writes it is left to a full decode.
    expect(peekEventType(["event", JSON.stringify({ type: "snapshot.created", id: "evt_1" })])).toBeUndefined();
  });
});
