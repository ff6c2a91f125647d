// A Standby instance's RAM, compressed in place in the background (POST /instances/{id}/standby with compression):
// the compression worker packs it after the delay; a restore, capture or fork waits for a compression in flight and
// unpacks a packed one first. One Redis lock per instance keeps the two from ever racing.
import { existsSync } from "node:fs";
import { readFile, rm, stat } from "node:fs/promises";
import type { Redis } from "ioredis";
import { compressFile, decompressFile } from "../codec/index.ts";
import type { CompressionAlgorithm } from "../codec/options.ts";
import { type Lease, withRedisLock } from "../locks.ts";
import type { Logger } from "../logger.ts";
import { INSTANCE_SCHEMA } from "../schemas/instance.ts";
import { instanceFiles, readMemoryMode } from "./files.ts";

const LOCK_MS = 900_000;

/** An instance's standby memory keeps the codec's seekable form (shared/codec), not a snapshot's squashfs image. */
export const STANDBY_COMPRESSED_SUFFIX = ".sfc";
export const compressedPayload = (file: string) => `${file}${STANDBY_COMPRESSED_SUFFIX}`;
export const standbyCompressionJobId = (instanceId: string) => `standby-compress-${instanceId}`;

export interface StandbyMemoryOptions {
  dataDir: string;
  redis: Redis;
  prefix: string;
  log: Logger;
}

export class StandbyMemory {
  constructor(private readonly options: StandbyMemoryOptions) {}

  /** Runs `operation` with the instance's RAM raw on disk, after any compression in flight. */
  whileRaw<T>(instanceId: string, operation: () => Promise<T>): Promise<T> {
    return this.withLock(instanceId, async () => {
      await this.unpack(instanceId);
      return operation();
    });
  }

  /** Packs a Standby instance's RAM; skipped when it is no longer in Standby or is packed already. */
  compress(
    instanceId: string,
    policy: { algorithm: CompressionAlgorithm; level: number; onProgress?: (done: number, total: number) => void },
    signal: AbortSignal,
  ): Promise<"compressed" | "skipped"> {
    return this.withLock(instanceId, async (lease) => {
      if ((await this.state(instanceId)) !== "Standby") return "skipped";
      const raw = await this.payload(instanceId);
      if (!existsSync(raw) || existsSync(compressedPayload(raw))) return "skipped";
      const before = await this.identity(instanceId, raw);
      const started = performance.now();
      const packed = compressedPayload(raw);
      const result = await compressFile(raw, packed, { ...policy, signal: AbortSignal.any([signal, lease.signal]) });
      // The raw file goes only if it is still the one packed: same inode, size, mtime and record version, and the
      // lease still ours (a stop/start or restore in between wrote new RAM that must not be lost).
      await lease.assertHeld();
      if (!sameIdentity(before, await this.identity(instanceId, raw))) {
        await rm(packed, { force: true });
        this.options.log.warn({ instanceId }, "standby memory changed while it was packed: kept raw, packed dropped");
        return "skipped";
      }
      await rm(raw, { force: true });
      this.options.log.info(
        { instanceId, ...policy, ms: Math.round(performance.now() - started), compressedBytes: result.compressedBytes },
        "standby memory compressed",
      );
      return "compressed";
    });
  }

  /** What must not change while the RAM is packed: the raw file's inode, size and mtime, and the record version. */
  private async identity(instanceId: string, raw: string): Promise<string | undefined> {
    const stats = await stat(raw).catch(() => undefined);
    if (!stats) return undefined;
    const text = await readFile(instanceFiles(this.options.dataDir, instanceId).record, "utf8").catch(() => "null");
    const version = (JSON.parse(text) as { version?: unknown } | null)?.version ?? null;
    return JSON.stringify([stats.ino, stats.size, stats.mtimeMs, version]);
  }

  /** The instance's state in its host record ({instance, version, last_event}, or a bare instance from before). */
  private async state(instanceId: string): Promise<string | undefined> {
    const text = await readFile(instanceFiles(this.options.dataDir, instanceId).record, "utf8").catch(() => "null");
    const value = JSON.parse(text) as { instance?: unknown } | null;
    const instance = INSTANCE_SCHEMA.safeParse(value && "instance" in value ? value.instance : value);
    return instance.success ? instance.data.state : undefined;
  }

  /** The file holding a Standby instance's RAM: memory.raw, or the device-state stream of a private-memory VM. */
  private async payload(instanceId: string): Promise<string> {
    const files = instanceFiles(this.options.dataDir, instanceId);
    return (await readMemoryMode(files)) === "private" ? files.standbyState : files.memory;
  }

  private async unpack(instanceId: string): Promise<void> {
    const raw = await this.payload(instanceId);
    const packed = compressedPayload(raw);
    if (!existsSync(packed)) return;
    // Both present: a crash came between packing and removing the raw file, which is still whole.
    if (!existsSync(raw)) await decompressFile(packed, raw);
    await rm(packed, { force: true });
    this.options.log.info({ instanceId }, "standby memory decompressed");
  }

  private withLock<T>(instanceId: string, operation: (lease: Lease) => Promise<T>): Promise<T> {
    const key = `${this.options.prefix}:lock:standby-memory:${instanceId}`;
    return withRedisLock(this.options.redis, key, { ttlMs: LOCK_MS, waitMs: LOCK_MS }, operation);
  }
}

const sameIdentity = (before: string | undefined, after: string | undefined) =>
  before !== undefined && before === after;
