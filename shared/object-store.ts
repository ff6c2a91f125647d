// Snapshots in an S3-compatible object store (S3_BUCKET and the other S3_* settings), beyond the host that made them.
// One prefix per snapshot holds the export archive's entries one for one (shared/snapshots/archive.ts): snapshot.json,
// every payload in its seekable (.sfc) or image (.sqfs + .sums) form, and manifest.json, written last: the commit
// point, naming every other object with its size and sha256. An object is never rewritten in place under a name the
// manifest lists: a payload that changed (a compression that finished) is uploaded beside the old one, the manifest
// replaced, then the old object removed. What is read back is hostile until checked: the manifest is parsed, every
// object is checked against its size and sha256, and the payloads' chunk checksums are checked again when installed.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { type FileHandle, open, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import type { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import type { Config } from "./config.ts";
import { ApiError } from "./errors.ts";
import { loadFleetSecret, manifestSigningKey } from "./fleet-secret.ts";
import { ARCHIVE_FORMAT, ARCHIVE_MANIFEST_ENTRY, ARCHIVE_PAYLOAD_ENTRIES } from "./snapshots/archive.ts";
import { z } from "./zod.ts";

/** Multipart parts, and ranged GETs: a multiple of the codec's chunk, few enough requests, bounded memory. */
const PART_BYTES = 64 * 1024 ** 2;
const PARTS_IN_FLIGHT = 4;
const PIECE_BYTES = 8 * 1024 ** 2;
const PIECES_IN_FLIGHT = 4;
const CONNECT_TIMEOUT_MS = 10_000;
/** No byte either way for this long fails a request. */
const IDLE_TIMEOUT_MS = 60_000;
/** A manifest (with its record) larger than this is not one of ours. */
const MAX_JSON_BYTES = 4 * 1024 ** 2;
/** No payload object is larger (a device-state stream of the largest guest, with room): a manifest saying so lies. */
const MAX_OBJECT_BYTES = 2 * 1024 ** 4;

/**
 * The commit point: the snapshot's record itself (one PUT replaces record and file list together, so a reader never
 * sees a record that does not match its files), the version and compression state it was written at, and every
 * payload object with its size and sha256. Only the archive's payload entries may be named: a pull writes each object
 * to a file of its name.
 */
export const STORE_MANIFEST = z.object({
  format: z.literal(ARCHIVE_FORMAT),
  record: z.unknown(),
  record_version: z.number().int().nonnegative(),
  compression_state: z.string(),
  entries: z.array(
    z.object({
      name: z.enum(ARCHIVE_PAYLOAD_ENTRIES as [string, ...string[]]),
      size: z.number().int().nonnegative().max(MAX_OBJECT_BYTES),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
});
export type StoreManifest = z.infer<typeof STORE_MANIFEST>;
/** How a manifest is stored: its JSON text, and the HMAC of that text under the fleet's manifest key. */
const SIGNED_MANIFEST = z.object({ manifest: z.string(), signature: z.string().regex(/^[0-9a-f]{64}$/) });
export type ManifestEntry = StoreManifest["entries"][number];

export interface ObjectStoreSettings {
  /** Signs and verifies manifests (shared/fleet-secret.ts manifestSigningKey): write access to the bucket alone
   * cannot make a host fork forged memory. */
  signingKey: Buffer;
  bucket: string;
  region: string;
  endpoint?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  forcePathStyle?: boolean;
}

export class ObjectStore {
  readonly bucket: string;
  private readonly client: S3Client;
  private readonly signingKey: Buffer;

  constructor(settings: ObjectStoreSettings) {
    this.bucket = settings.bucket;
    this.signingKey = settings.signingKey;
    this.client = new S3Client({
      region: settings.region,
      endpoint: settings.endpoint,
      forcePathStyle: settings.forcePathStyle ?? Boolean(settings.endpoint),
      credentials:
        settings.accessKeyId && settings.secretAccessKey
          ? { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey }
          : undefined,
      // Checksums only where the API requires them: S3-compatible servers (radosgw) refuse a streamed upload with the
      // SDK's default trailing checksum. Integrity is ours: sha256 per object in the manifest, XXH64 per chunk.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 3,
      // A store that accepted and went silent fails the call (and is retried) rather than hang a pull or a delete.
      requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: IDLE_TIMEOUT_MS },
    });
  }

  key(snapshotId: string, entry: string): string {
    return `snapshots/${snapshotId}/${entry}`;
  }

  /**
   * The snapshot's manifest, or undefined when the store holds no complete copy. It is stored as its JSON text and
   * that text's HMAC: one that does not verify (written by anyone but the fleet's hosts) is refused before it is read.
   */
  async readManifest(snapshotId: string): Promise<StoreManifest | undefined> {
    const bytes = await this.getSmall(snapshotId, ARCHIVE_MANIFEST_ENTRY);
    if (!bytes) return undefined;
    const envelope = SIGNED_MANIFEST.safeParse(parseJson(bytes));
    const expected = envelope.success ? this.sign(envelope.data.manifest) : undefined;
    const given = envelope.success ? Buffer.from(envelope.data.signature, "hex") : undefined;
    if (!expected || !given || given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ApiError(
        "unavailable",
        `the object store's manifest of snapshot ${snapshotId} is not signed by this fleet`,
      );
    }
    const parsed = STORE_MANIFEST.safeParse(parseJson(Buffer.from(envelope.data!.manifest)));
    if (!parsed.success) {
      throw new ApiError("unavailable", `the object store's manifest of snapshot ${snapshotId} is not one of ours`);
    }
    return parsed.data;
  }

  /** Writes the manifest, signed: the commit point of an upload. */
  async putManifest(snapshotId: string, manifest: StoreManifest, signal?: AbortSignal): Promise<void> {
    const text = JSON.stringify(manifest);
    const envelope = { manifest: text, signature: this.sign(text).toString("hex") };
    await this.putBytes(snapshotId, ARCHIVE_MANIFEST_ENTRY, Buffer.from(JSON.stringify(envelope)), signal);
  }

  private sign(text: string): Buffer {
    return createHmac("sha256", this.signingKey).update(text).digest();
  }

  /**
   * Uploads a file as one object: a single streamed PUT up to one part's size, else a multipart upload whose parts are
   * read straight from their ranges of the file, several in flight (no part is copied into a buffer first; measured
   * against lib-storage's Upload, which buffers every part of a stream: bench/README.md, Transfer). A failed upload is
   * aborted, so no part is left behind.
   */
  async putFile(snapshotId: string, entry: string, file: string, signal?: AbortSignal): Promise<void> {
    const key = this.key(snapshotId, entry);
    const size = (await stat(file)).size;
    const what = `upload of ${entry} of snapshot ${snapshotId}`;
    if (size <= PART_BYTES) {
      await this.client
        .send(
          new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: createReadStream(file), ContentLength: size }),
          { abortSignal: signal },
        )
        .catch((error: unknown) => {
          throw unavailable(what, error);
        });
      return;
    }
    const { UploadId } = await this.client
      .send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal })
      .catch((error: unknown) => {
        throw unavailable(what, error);
      });
    try {
      const count = Math.ceil(size / PART_BYTES);
      const parts: CompletedPart[] = [];
      let next = 0;
      const sendParts = async () => {
        for (let index = next++; index < count; index = next++) {
          const start = index * PART_BYTES;
          const end = Math.min(size, start + PART_BYTES) - 1;
          const { ETag } = await this.client.send(
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: key,
              UploadId,
              PartNumber: index + 1,
              Body: createReadStream(file, { start, end }),
              ContentLength: end - start + 1,
            }),
            { abortSignal: signal },
          );
          parts[index] = { ETag, PartNumber: index + 1 };
        }
      };
      await Promise.all(Array.from({ length: Math.min(PARTS_IN_FLIGHT, count) }, sendParts));
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: parts },
        }),
        { abortSignal: signal },
      );
    } catch (error) {
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId }))
        .catch(() => undefined);
      throw unavailable(what, error);
    }
  }

  async putBytes(snapshotId: string, entry: string, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.client
      .send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.key(snapshotId, entry),
          Body: bytes,
          ContentLength: bytes.length,
        }),
        { abortSignal: signal },
      )
      .catch((error: unknown) => {
        throw unavailable(`upload of ${entry} of snapshot ${snapshotId}`, error);
      });
  }

  /**
   * Fetches object `entry` into `file` with ranged GETs, several in flight, hashing the pieces in order as they arrive,
   * and checks the whole against its manifest entry. Resumable: the pieces already written are listed beside the file
   * (`<file>.pieces`, not flushed: a piece the list claims but the disk lost fails the sha256, and the file is fetched
   * whole on the next try), and a pull that starts again fetches only the others. Not flushed either: the file is a
   * transfer form that the install decodes and removes; what is installed is flushed then. Returns the bytes fetched.
   */
  async download(snapshotId: string, entry: ManifestEntry, file: string, signal?: AbortSignal): Promise<number> {
    const piecesFile = `${file}.pieces`;
    const count = Math.ceil(entry.size / PIECE_BYTES);
    const done = new Set<number>(existsSync(file) ? await readPieces(piecesFile, count) : []);
    if (done.size === 0) await writeFile(file, "");
    await truncate(file, entry.size);
    const handle = await open(file, "r+");
    const hash = createHash("sha256");
    let fetched = 0;
    try {
      // Pieces that came before the one to hash next wait here (at most 2 × PIECES_IN_FLIGHT of them).
      const arrived = new Map<number, Uint8Array>();
      let toHash = 0;
      const hashStep = async () => {
        for (; toHash < count; toHash++) {
          let bytes = arrived.get(toHash);
          if (!bytes && done.has(toHash)) bytes = await readPiece(handle, toHash, entry.size); // from an earlier try
          if (!bytes) return;
          arrived.delete(toHash);
          hash.update(bytes);
        }
      };
      // One hashing pass at a time, in piece order, whichever fetch finished.
      let hashing = Promise.resolve();
      const hashInOrder = () => {
        hashing = hashing.then(hashStep);
        return hashing;
      };
      const todo = Array.from({ length: count }, (_, index) => index).filter((index) => !done.has(index));
      const next = () => todo.shift();
      const fetchPieces = async () => {
        for (let index = next(); index !== undefined; index = next()) {
          const start = index * PIECE_BYTES;
          const end = Math.min(entry.size, start + PIECE_BYTES) - 1;
          const bytes = await this.getRange(snapshotId, entry.name, start, end, signal);
          await handle.write(bytes, 0, bytes.length, start);
          fetched += bytes.length;
          done.add(index);
          // Kept for the hash only within a window: a piece further ahead is read back from the file when its turn comes.
          if (index - toHash <= 2 * PIECES_IN_FLIGHT) arrived.set(index, bytes);
          await hashInOrder();
          await writeFile(piecesFile, JSON.stringify([...done]));
        }
      };
      await Promise.all(Array.from({ length: Math.min(PIECES_IN_FLIGHT, todo.length) }, fetchPieces));
      await hashInOrder();
    } finally {
      await handle.close();
    }
    if (hash.digest("hex") !== entry.sha256) {
      await rm(piecesFile, { force: true });
      await truncate(file, 0);
      throw new ApiError("unavailable", `${entry.name} of snapshot ${snapshotId} from the object store is corrupt`);
    }
    await rm(piecesFile, { force: true });
    return fetched;
  }

  /**
   * Object `entry` as a stream, for an export. The caller checks the bytes against the manifest entry (size, sha256)
   * as they pass: a short or altered object fails the archive it was going into.
   */
  async stream(snapshotId: string, entry: ManifestEntry): Promise<Readable> {
    const answer = await this.client
      .send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(snapshotId, entry.name) }))
      .catch((error: unknown) => {
        throw unavailable(`download of ${entry.name} of snapshot ${snapshotId}`, error);
      });
    if (answer.ContentLength !== entry.size) {
      (answer.Body as Readable | undefined)?.destroy();
      throw new ApiError(
        "unavailable",
        `${entry.name} of snapshot ${snapshotId} in the object store holds ${answer.ContentLength} bytes, not ${entry.size}`,
      );
    }
    return answer.Body as Readable;
  }

  /** The size of object `entry` of the snapshot, or undefined when the store does not hold it. */
  async sizeOf(snapshotId: string, entry: string): Promise<number | undefined> {
    try {
      const head = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(snapshotId, entry) }),
      );
      return head.ContentLength;
    } catch (error) {
      if (error instanceof S3ServiceException && (error.name === "NotFound" || error.name === "NoSuchKey"))
        return undefined;
      throw unavailable(`looking up ${entry} of snapshot ${snapshotId}`, error);
    }
  }

  /** Removes the snapshot's objects, the manifest first: a half-deleted snapshot reads as absent, never as complete. */
  async deleteSnapshot(snapshotId: string): Promise<number> {
    await this.deleteObject(snapshotId, ARCHIVE_MANIFEST_ENTRY);
    return 1 + (await this.deleteOthers(snapshotId, new Set([ARCHIVE_MANIFEST_ENTRY])));
  }

  /** Removes every object of the snapshot not named in `keep`; returns how many went. */
  async deleteOthers(snapshotId: string, keep: ReadonlySet<string>): Promise<number> {
    let removed = 0;
    for (const name of await this.list(snapshotId)) {
      if (keep.has(name)) continue;
      await this.deleteObject(snapshotId, name);
      removed += 1;
    }
    return removed;
  }

  /** The names of the snapshot's objects. */
  async list(snapshotId: string): Promise<string[]> {
    const prefix = this.key(snapshotId, "");
    const names: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client
        .send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }))
        .catch((error: unknown) => {
          throw unavailable(`listing of snapshot ${snapshotId}`, error);
        });
      for (const object of page.Contents ?? []) if (object.Key) names.push(object.Key.slice(prefix.length));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return names;
  }

  close(): void {
    this.client.destroy();
  }

  private async deleteObject(snapshotId: string, entry: string): Promise<void> {
    await this.client
      .send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(snapshotId, entry) }))
      .catch((error: unknown) => {
        throw unavailable(`delete of ${entry} of snapshot ${snapshotId}`, error);
      });
  }

  private async getRange(
    snapshotId: string,
    entry: string,
    start: number,
    end: number,
    signal?: AbortSignal,
  ): Promise<Uint8Array> {
    const answer = await this.client
      .send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(snapshotId, entry), Range: `bytes=${start}-${end}` }),
        { abortSignal: signal },
      )
      .catch((error: unknown) => {
        throw unavailable(`download of ${entry} of snapshot ${snapshotId}`, error);
      });
    const bytes = await answer.Body!.transformToByteArray();
    if (bytes.length !== end - start + 1) {
      throw new ApiError("unavailable", `${entry} of ${snapshotId}: asked bytes ${start}-${end}, got ${bytes.length}`);
    }
    return bytes;
  }

  /** A small object (manifest, record), or undefined when there is none. */
  private async getSmall(snapshotId: string, entry: string): Promise<Uint8Array | undefined> {
    try {
      const answer = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: this.key(snapshotId, entry) }),
      );
      if ((answer.ContentLength ?? 0) > MAX_JSON_BYTES) {
        await answer.Body?.transformToByteArray().catch(() => undefined);
        throw new ApiError("unavailable", `${entry} of snapshot ${snapshotId} in the object store is too large`);
      }
      return await answer.Body!.transformToByteArray();
    } catch (error) {
      if (error instanceof S3ServiceException && error.name === "NoSuchKey") return undefined;
      throw unavailable(`download of ${entry} of snapshot ${snapshotId}`, error);
    }
  }
}

/** The deployment's object store, or undefined when S3_BUCKET is unset (payloads on host disks only). */
export function objectStoreFor(
  config: Pick<
    Config,
    | "S3_BUCKET"
    | "S3_ENDPOINT"
    | "S3_REGION"
    | "S3_ACCESS_KEY_ID"
    | "S3_SECRET_ACCESS_KEY"
    | "S3_FORCE_PATH_STYLE"
    | "FLEET_SECRET"
    | "DATA_DIR"
  >,
): ObjectStore | undefined {
  if (!config.S3_BUCKET) return undefined;
  return new ObjectStore({
    signingKey: manifestSigningKey(loadFleetSecret(config.FLEET_SECRET, config.DATA_DIR).secret),
    bucket: config.S3_BUCKET,
    region: config.S3_REGION,
    endpoint: config.S3_ENDPOINT,
    accessKeyId: config.S3_ACCESS_KEY_ID,
    secretAccessKey: config.S3_SECRET_ACCESS_KEY,
    forcePathStyle: config.S3_FORCE_PATH_STYLE,
  });
}

/** A store that failed or did not answer is a retryable 503, never an internal error. */
function unavailable(what: string, error: unknown): unknown {
  if (error instanceof ApiError) return error;
  if ((error as Error).name === "AbortError") return error;
  const reason = (error as Error).message || (error as Error).name;
  return new ApiError("unavailable", `object store: ${what} failed: ${reason}`, { cause: error });
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString("utf8"));
  } catch {
    return undefined;
  }
}

export function sha256Of(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/** Piece `index` of a file being downloaded, read back (a piece an earlier try wrote). */
async function readPiece(handle: FileHandle, index: number, size: number): Promise<Uint8Array> {
  const start = index * PIECE_BYTES;
  const bytes = Buffer.alloc(Math.min(size, start + PIECE_BYTES) - start);
  await handle.read(bytes, 0, bytes.length, start);
  return bytes;
}

/** The piece indexes a previous download wrote, or none when the list is missing or not ours. */
async function readPieces(file: string, count: number): Promise<number[]> {
  const text = await readFile(file, "utf8").catch(() => undefined);
  if (text === undefined) return [];
  const parsed = z.array(z.number().int().nonnegative().lt(count)).safeParse(parseJson(Buffer.from(text)));
  return parsed.success ? parsed.data : [];
}
