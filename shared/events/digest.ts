// A host's digest: the live records it owns, cut into buckets by a stable hash of each key (`instance:<id>`,
// `snapshot:<id>`), each bucket a count and a hash of its sorted `key@version` lines. The host appends one on its
// interval (workers/host/announcer.ts); the read model computes the same over the host's live rows
// (api/read-model/digests.ts) and asks the host to announce again only the buckets that differ. Both sides compute it
// here, so they agree by construction.
import { createHash } from "node:crypto";
import { z } from "../zod.ts";

/** Buckets per digest: about 150 records each at 10,000, and a digest entry of about 2.5 KB. */
export const DIGEST_BUCKET_COUNT = 64;
const MAX_BUCKET_COUNT = 1_024;
/** Hex digits kept of each bucket's SHA-256: 64 bits, so two different buckets look alike once in 2^64. */
const HASH_HEX_DIGITS = 16;

const BUCKET_COUNT = z.number().int().positive().max(MAX_BUCKET_COUNT);

export const DIGEST_BUCKET = z.object({ count: z.number().int().nonnegative(), hash: z.string() });

export const HOST_DIGEST = z
  .object({
    host_id: z.string(),
    digest_id: z.string(),
    /** Stamped before the host listed its records. */
    digested_at: z.iso.datetime(),
    bucket_count: BUCKET_COUNT,
    /** One per bucket, in bucket order. */
    buckets: z.array(DIGEST_BUCKET),
  })
  .refine((digest) => digest.buckets.length === digest.bucket_count, "a digest has bucket_count buckets");

/**
 * The buckets an announcement covers (of `bucket_count`): it carries the records and tombstones whose keys fall in
 * them, and is authoritative for those keys only. An announcement without one is the host's full state.
 */
export const BUCKET_SCOPE = z
  .object({ bucket_count: BUCKET_COUNT, buckets: z.array(z.number().int().nonnegative()).min(1) })
  .refine((scope) => scope.buckets.every((bucket) => bucket < scope.bucket_count), "a bucket beyond bucket_count");

export type HostDigest = z.infer<typeof HOST_DIGEST>;
export type DigestBucket = z.infer<typeof DIGEST_BUCKET>;
export type BucketScope = z.infer<typeof BUCKET_SCOPE>;

/** A live record as the digest sees it. */
export interface DigestLine {
  key: string;
  version: number;
}

/**
 * The bucket of a key: FNV-1a (32 bits) of its UTF-16 code units, modulo the count. Hosts and API replicas of different
 * releases must agree on it: digest.test.ts pins its values.
 */
export function bucketOf(key: string, bucketCount: number): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < key.length; index++) {
    hash ^= key.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % bucketCount;
}

/** Is `key` covered by `scope` (every key is, without one)? */
export function inScope(key: string, scope: BucketScope | undefined): boolean {
  return scope === undefined || scope.buckets.includes(bucketOf(key, scope.bucket_count));
}

/** The digest's buckets of `lines` (each key once). */
export function digestBuckets(lines: Iterable<DigestLine>, bucketCount: number): DigestBucket[] {
  const byBucket: string[][] = Array.from({ length: bucketCount }, () => []);
  for (const { key, version } of lines) byBucket[bucketOf(key, bucketCount)]!.push(`${key}@${version}`);
  return byBucket.map((bucket) => ({
    count: bucket.length,
    hash: createHash("sha256").update(bucket.sort().join("\n")).digest("hex").slice(0, HASH_HEX_DIGITS),
  }));
}

/** The buckets in which two digests of the same bucket count differ, in bucket order. */
export function differingBuckets(left: DigestBucket[], right: DigestBucket[]): number[] {
  if (left.length !== right.length) throw new Error(`digests of ${left.length} and ${right.length} buckets`);
  const differing: number[] = [];
  for (let bucket = 0; bucket < left.length; bucket++) {
    if (left[bucket]!.count !== right[bucket]!.count || left[bucket]!.hash !== right[bucket]!.hash) {
      differing.push(bucket);
    }
  }
  return differing;
}
