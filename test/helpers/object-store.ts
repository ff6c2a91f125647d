// The test run's S3 store (one Ceph cluster, started by test/global-setup.ts) as a test uses it: a bucket of its own,
// the S3_* settings a service process reads to use that bucket, and listing and clean-up for the assertions.
import { randomBytes } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from "@aws-sdk/client-s3";
import { inject } from "vitest";
import { s3ClientFor } from "./ceph-cluster.ts";

/** What a service process reads (shared/config.ts) to keep its snapshots in a bucket of the test run's store. */
export interface S3Env {
  S3_ENDPOINT: string;
  S3_REGION: string;
  S3_ACCESS_KEY_ID: string;
  S3_SECRET_ACCESS_KEY: string;
  S3_BUCKET: string;
  S3_FORCE_PATH_STYLE: "true";
}

let client: S3Client | undefined;

/** One client per test file on the run's store, set up as radosgw needs (path style, checksums only when required). */
export function testS3Client(): S3Client {
  client ??= s3ClientFor(inject("s3"));
  return client;
}

/** A new, empty bucket of its own on each call, and the settings that point a service process at it. */
export async function s3Env(): Promise<S3Env> {
  const s3 = inject("s3");
  const bucket = `test-${Date.now().toString(36)}-${randomBytes(4).toString("hex")}`;
  await testS3Client().send(new CreateBucketCommand({ Bucket: bucket }));
  return {
    S3_ENDPOINT: s3.endpoint,
    S3_REGION: s3.region,
    S3_ACCESS_KEY_ID: s3.accessKeyId,
    S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    S3_BUCKET: bucket,
    S3_FORCE_PATH_STYLE: "true",
  };
}

/** Every key in `bucket` under `prefix`, sorted, across as many pages as the listing takes. */
export async function listKeys(bucket: string, prefix = ""): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await testS3Client().send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
    token = page.NextContinuationToken;
  } while (token);
  return keys.sort();
}

/** Deletes `bucket` with its objects and any multipart upload left open in it. */
export async function emptyAndDeleteBucket(bucket: string): Promise<void> {
  const s3 = testS3Client();
  const open = await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  for (const upload of open.Uploads ?? []) {
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }));
  }
  for (const key of await listKeys(bucket)) await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
}
