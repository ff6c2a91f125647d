// What shared/object-store.ts relies on from the S3 engine, checked on the test run's Ceph gateway with a client set up
// as the service's: objects read back whole and by range (a range past the end comes back short, not padded), a
// multipart upload of streamed file ranges assembled byte for byte, listing by prefix, delete, and NoSuchKey.
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, writeFileSync } from "node:fs";
import path from "node:path";
import {
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3ServiceException,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { tempDir } from "./helpers/fixtures.ts";
import { describeWith } from "./helpers/needs.ts";
import { emptyAndDeleteBucket, listKeys, s3Env, testS3Client } from "./helpers/object-store.ts";

const MiB = 1024 ** 2;
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describeWith("ceph", "the S3 engine the object store runs on (Ceph's gateway)", () => {
  const work = tempDir("s3-engine");
  let bucket = "";
  const s3 = () => testS3Client();
  const put = (key: string, body: Uint8Array) =>
    s3().send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }));
  const read = async (key: string, range?: string) => {
    const answer = await s3().send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: range }));
    return { answer, bytes: Buffer.from(await answer.Body!.transformToByteArray()) };
  };

  beforeAll(async () => {
    bucket = (await s3Env()).S3_BUCKET;
  });

  afterAll(async () => {
    if (bucket) await emptyAndDeleteBucket(bucket);
    work.remove();
  });

  it("serves an object whole, and a range as 206 with exactly its bytes, short where it runs past the end", async () => {
    const bytes = randomBytes(MiB);
    await put("whole/object", bytes);
    expect(sha256((await read("whole/object")).bytes)).toBe(sha256(bytes));

    const ranged = await read("whole/object", "bytes=1000-5095");
    expect(ranged.answer.$metadata.httpStatusCode).toBe(206);
    expect(ranged.answer.ContentRange).toBe(`bytes 1000-5095/${MiB}`);
    expect(ranged.bytes.equals(bytes.subarray(1000, 5096))).toBe(true);

    const pastEnd = await read("whole/object", `bytes=${MiB - 10}-${MiB + 100}`);
    expect(pastEnd.answer.$metadata.httpStatusCode).toBe(206);
    expect(pastEnd.bytes.equals(bytes.subarray(MiB - 10))).toBe(true);
  });

  it("assembles a multipart upload of 8 MiB parts streamed from a file's ranges byte for byte", async () => {
    const PART = 8 * MiB;
    const size = 20 * MiB + 12_345; // two full parts and a short last one
    const file = path.join(work.dir, "payload");
    const bytes = randomBytes(size);
    writeFileSync(file, bytes);
    const key = "multipart/payload";
    const { UploadId } = await s3().send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    const parts: CompletedPart[] = [];
    for (let start = 0, number = 1; start < size; start += PART, number++) {
      const end = Math.min(size, start + PART) - 1;
      const { ETag } = await s3().send(
        new UploadPartCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          PartNumber: number,
          Body: createReadStream(file, { start, end }),
          ContentLength: end - start + 1,
        }),
      );
      parts.push({ ETag, PartNumber: number });
    }
    expect(parts).toHaveLength(3);
    await s3().send(
      new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }),
    );

    const stored = await read(key);
    expect(stored.answer.ContentLength).toBe(size);
    expect(sha256(stored.bytes)).toBe(sha256(bytes));
    // Across the seam of the first two parts.
    const seam = await read(key, `bytes=${PART - 100}-${PART + 99}`);
    expect(seam.bytes.equals(bytes.subarray(PART - 100, PART + 100))).toBe(true);
    const open = await s3().send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    expect(open.Uploads ?? []).toEqual([]);
  }, 30_000);

  it("lists by prefix, deletes, and answers a missing key with NoSuchKey", async () => {
    for (const key of ["listed/a/1", "listed/a/2", "listed/b/1"]) await put(key, Buffer.from(key));
    expect(await listKeys(bucket, "listed/a/")).toEqual(["listed/a/1", "listed/a/2"]);

    await s3().send(new DeleteObjectCommand({ Bucket: bucket, Key: "listed/a/1" }));
    expect(await listKeys(bucket, "listed/")).toEqual(["listed/a/2", "listed/b/1"]);

    const missing = await read("listed/a/1").catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(S3ServiceException);
    expect((missing as S3ServiceException).name).toBe("NoSuchKey");
  });
});
