// A Standby instance's RAM, compressed in place in the background (POST /instances/{id}/standby with compression):
// the compression worker packs it after the delay; a restore, capture or fork waits for a compression in flight and
// unpacks a packed one first. One Redis lock per instance keeps the two from ever racing.
import { existsSync } from "node:fs";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Redis } from "ioredis";
import { compressFile, decompressFile, readCompressedHeader } from "../codec/index.ts";
import type { CompressionAlgorithm } from "../codec/options.ts";
import { writeFileDurable } from "../files.ts";
import { ID_PATTERN } from "../ids.ts";
import { STANDBY_COMPRESSION_POLICY } from "../jobs/compression-jobs.ts";
import { type Lease, withRedisLock } from "../locks.ts";
import type { Logger } from "../logger.ts";
import type { WorkerFigure } from "../metrics/worker-figures.ts";
import { INSTANCE_SCHEMA, type Instance, type StandbyCompressionStatus } from "../schemas/instance.ts";
import { z } from "../zod.ts";
import { instanceFiles, readMemoryMode } from "./files.ts";

const LOCK_MS = 900_000;

/** An instance's standby memory keeps the codec's seekable form (shared/codec), not a snapshot's squashfs image. */
export const STANDBY_COMPRESSED_SUFFIX = ".sfc";
export const compressedPayload = (file: string) => `${file}${STANDBY_COMPRESSED_SUFFIX}`;
export const standbyCompressionJobId = (instanceId: string) => `standby-compress-${instanceId}`;

/**
 * What a standby asked for, kept beside the instance (its host owns it, Redis only holds the job): when the job is
 * lost with Redis's data, the compression worker queues it again from this, due at the same time.
 */
export const STANDBY_COMPRESSION_INTENT = STANDBY_COMPRESSION_POLICY.extend({ not_before: z.iso.datetime() });
export type StandbyCompressionIntent = z.infer<typeof STANDBY_COMPRESSION_INTENT>;

/** How a restore readied the RAM: `decompress` when a standby compression had packed it; seconds of that step. */
export type MemoryPrepared = Omit<Extract<WorkerFigure, { kind: "restore_memory_prepare" }>, "kind">;

export interface StandbyMemoryOptions {
  dataDir: string;
  redis: Redis;
  prefix: string;
  log: Logger;
}

export class StandbyMemory {
  constructor(private readonly options: StandbyMemoryOptions) {}

  /**
   * Runs `operation` with the instance's RAM raw on disk, after any compression in flight. `onPrepared` hears how
   * readying the RAM went (a restore's figures), before `operation` runs or as that step fails.
   */
  whileRaw<T>(instanceId: string, operation: () => Promise<T>, onPrepared?: (prepared: MemoryPrepared) => void) {
    return this.withLock(instanceId, async () => {
      const started = performance.now();
      const raw = await this.payload(instanceId);
      const restoreSource = existsSync(compressedPayload(raw)) ? "decompress" : "raw";
      const hypervisor = onPrepared && (await this.record(instanceId))?.hypervisor;
      const report = (result: MemoryPrepared["result"]) => {
        if (!onPrepared || !hypervisor) return;
        const seconds = (performance.now() - started) / 1000;
        onPrepared({ hypervisor, restore_source: restoreSource, result, seconds });
      };
      try {
        await this.unpack(instanceId, raw);
      } catch (error) {
        report("failed");
        throw error;
      }
      report("success");
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

  /** Records (or, with no policy, clears) the compression a standby asked for. */
  async recordCompressionIntent(instanceId: string, intent: StandbyCompressionIntent | undefined): Promise<void> {
    const file = instanceFiles(this.options.dataDir, instanceId).standbyCompression;
    if (intent) await writeFileDurable(file, JSON.stringify(STANDBY_COMPRESSION_INTENT.parse(intent)));
    else await rm(file, { force: true });
  }

  /**
   * This host's Standby instances whose RAM a standby asked to compress and that is still raw, with what it asked:
   * the work a compression job should exist for. An intent file that does not parse is skipped and logged.
   */
  async pendingCompressions(): Promise<Array<{ instanceId: string; intent: StandbyCompressionIntent }>> {
    const entries = await readdir(path.join(this.options.dataDir, "instances")).catch(() => [] as string[]);
    const pending: Array<{ instanceId: string; intent: StandbyCompressionIntent }> = [];
    for (const instanceId of entries.filter((entry) => ID_PATTERN.test(entry))) {
      const text = await readFile(instanceFiles(this.options.dataDir, instanceId).standbyCompression, "utf8").catch(
        () => undefined,
      );
      if (text === undefined) continue;
      const intent = STANDBY_COMPRESSION_INTENT.safeParse(parseJson(text));
      if (!intent.success) {
        this.options.log.warn({ instanceId }, "standby compression intent unreadable: left as it is, not queued");
        continue;
      }
      if ((await this.state(instanceId)) !== "Standby") continue;
      const raw = await this.payload(instanceId).catch(() => undefined);
      if (!raw || !existsSync(raw) || existsSync(compressedPayload(raw))) continue;
      pending.push({ instanceId, intent: intent.data });
    }
    return pending;
  }

  /**
   * Where the instance's standby compression stands, read from its files: undefined when its standby asked for
   * none; `compressed` once only the packed RAM is left; else `error` when the last job failed with `error`, or
   * `pending`.
   */
  async status(instanceId: string, error?: string): Promise<StandbyCompressionStatus | undefined> {
    const intent = await this.intent(instanceId);
    if (!intent) return undefined;
    const raw = await this.payload(instanceId);
    const packed = compressedPayload(raw);
    const base = { ...intent, compressed_size_bytes: null, uncompressed_size_bytes: null, error: null };
    if (existsSync(packed) && !existsSync(raw)) {
      const [{ size }, header] = await Promise.all([stat(packed), readCompressedHeader(packed)]);
      return {
        ...base,
        state: "compressed",
        compressed_size_bytes: size,
        uncompressed_size_bytes: header.uncompressedSize,
      };
    }
    return error ? { ...base, state: "error", error: error.slice(0, 500) } : { ...base, state: "pending" };
  }

  /**
   * This host's Standby instances whose record says their RAM is not packed while only the packed RAM is left: the
   * compression worker's word of it was lost (with Redis's data, or a crash), and it tells the host again.
   */
  async unannouncedCompressions(): Promise<string[]> {
    const entries = await readdir(path.join(this.options.dataDir, "instances")).catch(() => [] as string[]);
    const stale: string[] = [];
    for (const instanceId of entries.filter((entry) => ID_PATTERN.test(entry))) {
      const record = await this.record(instanceId);
      if (record?.state !== "Standby" || record.standby_compression?.state === "compressed") continue;
      if ((await this.status(instanceId).catch(() => undefined))?.state === "compressed") stale.push(instanceId);
    }
    return stale;
  }

  private async intent(instanceId: string): Promise<StandbyCompressionIntent | undefined> {
    const file = instanceFiles(this.options.dataDir, instanceId).standbyCompression;
    const text = await readFile(file, "utf8").catch(() => undefined);
    if (text === undefined) return undefined;
    const intent = STANDBY_COMPRESSION_INTENT.safeParse(parseJson(text));
    return intent.success ? intent.data : undefined;
  }

  /** What must not change while the RAM is packed: the raw file's inode, size and mtime, and the record version. */
  private async identity(instanceId: string, raw: string): Promise<string | undefined> {
    const stats = await stat(raw).catch(() => undefined);
    if (!stats) return undefined;
    const text = await readFile(instanceFiles(this.options.dataDir, instanceId).record, "utf8").catch(() => "null");
    const version = (JSON.parse(text) as { version?: unknown } | null)?.version ?? null;
    return JSON.stringify([stats.ino, stats.size, stats.mtimeMs, version]);
  }

  /** The instance's state in its host record. */
  private async state(instanceId: string): Promise<string | undefined> {
    return (await this.record(instanceId))?.state;
  }

  /** The instance in its host record ({instance, version, last_event}, or a bare instance from before). */
  private async record(instanceId: string): Promise<Instance | undefined> {
    const text = await readFile(instanceFiles(this.options.dataDir, instanceId).record, "utf8").catch(() => "null");
    const value = JSON.parse(text) as { instance?: unknown } | null;
    const instance = INSTANCE_SCHEMA.safeParse(value && "instance" in value ? value.instance : value);
    return instance.success ? instance.data : undefined;
  }

  /** The file holding a Standby instance's RAM: memory.raw, or the device-state stream of a private-memory VM. */
  private async payload(instanceId: string): Promise<string> {
    const files = instanceFiles(this.options.dataDir, instanceId);
    return (await readMemoryMode(files)) === "private" ? files.standbyState : files.memory;
  }

  private async unpack(instanceId: string, raw: string): Promise<void> {
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

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
