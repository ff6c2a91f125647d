// Snapshots in an S3-compatible object store (S3_BUCKET and the other S3_* settings), beyond the host that made them.
// One prefix per snapshot holds the export archive's entries one for one (shared/snapshots/archive.ts): snapshot.json,
// every payload in its seekable (.sfc) or image (.sqfs + .sums) form, and manifest.json, written last: the commit
// point, naming every other object with its size and sha256. An object is never rewritten in place under a name the
// manifest lists: a payload that changed (a compression that finished) is uploaded beside the old one, the manifest
// replaced, then the old object removed. What is read back is hostile until checked: the manifest is parsed, every
// object is checked against its size and sha256, and the payloads' chunk checksums are checked again when installed.
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { open, readFile, rm, truncate } from "node:fs/promises";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { Config } from "./config.ts";
import { ApiError } from "./errors.ts";
import { writeFileDurable } from "./files.ts";
import { ARCHIVE_MANIFEST, ARCHIVE_MANIFEST_ENTRY, ARCHIVE_RECORD_ENTRY } from "./snapshots/archive.ts";
import { z } from "./zod.ts";

/** The archive's manifest plus the version of the host record it was written from (newer never loses to older). */
export const STORE_MANIFEST = ARCHIVE_MANIFEST.extend({
  record_version: z.number().int().nonnegative(),
  compression_state: z.string(),
});
export type StoreManifest = z.infer<typeof STORE_MANIFEST>;
export type ManifestEntry = StoreManifest["entries"][number];

/** Multipart parts, and ranged GETs: a multiple of the codec's chunk, few enough requests, bounded memory. */
const PART_BYTES = 16 * 1024 ** 2;
const PARTS_IN_FLIGHT = 4;
const PIECE_BYTES = 8 * 1024 ** 2;
const PIECES_IN_FLIGHT = 4;
/** A manifest or record larger than this is not one of ours. */
const MAX_JSON_BYTES = 4 * 1024 ** 2;

export interface ObjectStoreSettings {
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

  constructor(settings: ObjectStoreSettings) {
    this.bucket = settings.bucket;
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
    });
  }

  key(snapshotId: string, entry: string): string {
    return `snapshots/${snapshotId}/${entry}`;
  }

  /** The snapshot's manifest, or undefined when the store holds no complete copy. */
  async readManifest(snapshotId: string): Promise<StoreManifest | undefined> {
    const bytes = await this.getSmall(snapshotId, ARCHIVE_MANIFEST_ENTRY);
    if (!bytes) return undefined;
    const parsed = STORE_MANIFEST.safeParse(parseJson(bytes));
    if (!parsed.success) {
      throw new ApiError("unavailable", `the object store's manifest of snapshot ${snapshotId} is not one of ours`);
    }
    return parsed.data;
  }

  /** The snapshot's record as the manifest names it, checked against its size and sha256. */
  async readRecord(snapshotId: string, manifest: StoreManifest): Promise<unknown> {
    const entry = manifest.entries.find((candidate) => candidate.name === ARCHIVE_RECORD_ENTRY);
    if (!entry) throw new ApiError("unavailable", `the object store's manifest of ${snapshotId} names no record`);
    const bytes = await this.getSmall(snapshotId, ARCHIVE_RECORD_ENTRY);
    if (!bytes || bytes.length !== entry.size || sha256Of(bytes) !== entry.sha256) {
      throw new ApiError(
        "unavailable",
        `the object store's record of snapshot ${snapshotId} does not match its manifest`,
      );
    }
    return parseJson(bytes);
  }

  /** Uploads a file as one object (multipart, parts in parallel). */
  async putFile(snapshotId: string, entry: string, file: string, signal?: AbortSignal): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: this.key(snapshotId, entry), Body: createReadStream(file) },
      partSize: PART_BYTES,
      queueSize: PARTS_IN_FLIGHT,
      leavePartsOnError: false,
    });
    const abort = () => void upload.abort().catch(() => {});
    signal?.addEventListener("abort", abort, { once: true });
    try {
      await upload.done().catch((error: unknown) => {
        throw unavailable(`upload of ${entry} of snapshot ${snapshotId}`, error);
      });
    } finally {
      signal?.removeEventListener("abort", abort);
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
   * Fetches object `entry` into `file` with ranged GETs, several in flight, and checks it against its manifest entry.
   * Resumable: the pieces already written are listed beside the file (`<file>.pieces`), and a pull that starts again
   * fetches only the others (a piece the list claims but the disk lost is caught by the sha256 and the file refetched
   * whole on the next try). Returns the bytes fetched.
   */
  async download(snapshotId: string, entry: ManifestEntry, file: string, signal?: AbortSignal): Promise<number> {
    const piecesFile = `${file}.pieces`;
    const count = Math.ceil(entry.size / PIECE_BYTES);
    const done = new Set<number>(await readPieces(piecesFile, count));
    if (done.size === 0 || !existsSync(file)) {
      done.clear();
      await writeFileDurable(file, "");
    }
    await truncate(file, entry.size);
    const handle = await open(file, "r+");
    let fetched = 0;
    try {
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
          await writeFileDurable(piecesFile, JSON.stringify([...done]));
        }
      };
      await Promise.all(Array.from({ length: Math.min(PIECES_IN_FLIGHT, todo.length) }, fetchPieces));
      await handle.sync();
    } finally {
      await handle.close();
    }
    if ((await sha256File(file)) !== entry.sha256) {
      await rm(piecesFile, { force: true });
      await truncate(file, 0);
      throw new ApiError("unavailable", `${entry.name} of snapshot ${snapshotId} from the object store is corrupt`);
    }
    await rm(piecesFile, { force: true });
    return fetched;
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
    "S3_BUCKET" | "S3_ENDPOINT" | "S3_REGION" | "S3_ACCESS_KEY_ID" | "S3_SECRET_ACCESS_KEY" | "S3_FORCE_PATH_STYLE"
  >,
): ObjectStore | undefined {
  if (!config.S3_BUCKET) return undefined;
  return new ObjectStore({
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

/** The piece indexes a previous download wrote, or none when the list is missing or not ours. */
async function readPieces(file: string, count: number): Promise<number[]> {
  const text = await readFile(file, "utf8").catch(() => undefined);
  if (text === undefined) return [];
  const parsed = z.array(z.number().int().nonnegative().lt(count)).safeParse(parseJson(Buffer.from(text)));
  return parsed.success ? parsed.data : [];
}
