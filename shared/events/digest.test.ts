// The digest both sides compute: stable buckets, a bucket's hash that depends on its lines and not their order, a
// difference that shows in its own bucket only, and an entry of a few KB at 10,000 records.
import { describe, expect, it } from "vitest";
import { newId } from "../ids.ts";
import {
  BUCKET_SCOPE,
  bucketOf,
  DIGEST_BUCKET_COUNT,
  differingBuckets,
  digestBuckets,
  HOST_DIGEST,
  inScope,
} from "./digest.ts";

const lines = (count: number) =>
  Array.from({ length: count }, (_, index) => ({ key: `snapshot:${newId()}`, version: index % 7 }));

describe("digest", () => {
  it("puts a key in the same bucket in every release (hosts and API replicas of different releases must agree)", () => {
    expect(bucketOf("snapshot:abcdefghijklmnopqrstuvwx", 64)).toBe(45);
    expect(bucketOf("instance:abcdefghijklmnopqrstuvwx", 64)).toBe(0);
    expect(bucketOf("", 64)).toBe(5);
  });

  it("hashes a bucket's lines whatever their order; a change shows in its own bucket only", () => {
    const records = lines(1_000);
    const digest = digestBuckets(records, DIGEST_BUCKET_COUNT);
    expect(digestBuckets([...records].reverse(), DIGEST_BUCKET_COUNT)).toEqual(digest);
    expect(digest.reduce((total, bucket) => total + bucket.count, 0)).toBe(1_000);

    const [first, second, third, ...rest] = records;
    const newer = { ...first!, version: first!.version + 1 };
    const added = { key: `instance:${newId()}`, version: 1 };
    const changed = digestBuckets([newer, third!, ...rest, added], DIGEST_BUCKET_COUNT); // `second` gone
    const expected = [...new Set([first, second, added].map((line) => bucketOf(line!.key, DIGEST_BUCKET_COUNT)))];
    expect(differingBuckets(digest, changed)).toEqual(expected.sort((a, b) => a - b));
    expect(differingBuckets(digest, digest)).toEqual([]);
  });

  it("stays a small entry at 10,000 records, and its schema holds it to its bucket count", () => {
    const digest = {
      host_id: "host-a",
      digest_id: "dig_0123456789abcdef",
      digested_at: new Date().toISOString(),
      bucket_count: DIGEST_BUCKET_COUNT,
      buckets: digestBuckets(lines(10_000), DIGEST_BUCKET_COUNT),
    };
    expect(JSON.stringify(HOST_DIGEST.parse(digest)).length).toBeLessThan(4_096);
    expect(HOST_DIGEST.safeParse({ ...digest, buckets: digest.buckets.slice(1) }).success).toBe(false);
  });

  it("scopes keys to buckets; no scope covers every key", () => {
    const key = `snapshot:${newId()}`;
    const bucket = bucketOf(key, 8);
    expect(inScope(key, undefined)).toBe(true);
    expect(inScope(key, { bucket_count: 8, buckets: [bucket] })).toBe(true);
    expect(inScope(key, { bucket_count: 8, buckets: [(bucket + 1) % 8] })).toBe(false);
    expect(BUCKET_SCOPE.safeParse({ bucket_count: 8, buckets: [8] }).success).toBe(false);
    expect(BUCKET_SCOPE.safeParse({ bucket_count: 8, buckets: [] }).success).toBe(false);
  });
});
