import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { sampleInstance } from "../../test/helpers/resources.ts";
import { createLogger } from "../logger.ts";
import { closeRedis, connectRedis } from "../redis.ts";
import { instanceFiles } from "./files.ts";
import { compressedPayload, type MemoryPrepared, StandbyMemory } from "./standby-memory.ts";

const redis = connectRedis(testRedisUrl(), "worker", 1_000);
const data = tempDir("standby");
afterAll(async () => {
  await closeRedis(redis);
  data.remove();
});

const MIB = 1024 * 1024;
/** RAM that compresses, but not to nothing: 16 MiB of a repeating counter pattern. */
const ram = (seed: number) =>
  Buffer.from(Uint32Array.from({ length: (16 * MIB) / 4 }, (_, i) => (i % 4096) + seed).buffer);

function standbyInstance(version: number) {
  const instance = sampleInstance({ state: "Standby" });
  const files = instanceFiles(data.dir, instance.id);
  mkdirSync(files.dir, { recursive: true });
  writeFileSync(files.record, JSON.stringify({ instance, version }));
  writeFileSync(files.memory, ram(1));
  return { instance, files };
}

describe("standby memory compression", () => {
  const memory = new StandbyMemory({
    dataDir: data.dir,
    redis,
    prefix: uniquePrefix("standby"),
    log: createLogger("t", "silent"),
  });

  it("packs the RAM of a Standby instance and removes the raw file", async () => {
    const { instance, files } = standbyInstance(3);
    const outcome = await memory.compress(instance.id, { algorithm: "zstd", level: 1 }, new AbortController().signal);
    expect(outcome).toBe("compressed");
    expect(() => readFileSync(files.memory)).toThrow(/ENOENT/);
    expect(readFileSync(compressedPayload(files.memory)).length).toBeGreaterThan(0);
  });

  it("keeps new RAM written while it was packing (a stop/start and a new standby in between)", async () => {
    const { instance, files } = standbyInstance(3);
    const newRam = ram(7);
    let rewritten = false;
    const onProgress = () => {
      if (rewritten) return;
      rewritten = true;
      // What a start then a standby do: new RAM in a new file, a newer record version.
      writeFileSync(`${files.memory}.new`, newRam);
      renameSync(`${files.memory}.new`, files.memory);
      writeFileSync(files.record, JSON.stringify({ instance, version: 5 }));
    };
    const outcome = await memory.compress(
      instance.id,
      { algorithm: "zstd", level: 1, onProgress },
      new AbortController().signal,
    );
    expect(rewritten).toBe(true);
    expect(outcome).toBe("skipped");
    expect(readFileSync(files.memory).equals(newRam)).toBe(true);
    expect(() => readFileSync(compressedPayload(files.memory))).toThrow(/ENOENT/);
  });

  it("a restore of packed RAM unpacks it first and reports the decompress step, then a raw one", async () => {
    const { instance, files } = standbyInstance(3);
    await memory.compress(instance.id, { algorithm: "zstd", level: 1 }, new AbortController().signal);
    const prepared: MemoryPrepared[] = [];
    const onPrepared = (step: MemoryPrepared) => prepared.push(step);
    const restore = () => Promise.resolve(readFileSync(files.memory).equals(ram(1)));
    expect(await memory.whileRaw(instance.id, restore, onPrepared)).toBe(true);
    expect(await memory.whileRaw(instance.id, restore, onPrepared)).toBe(true);
    const step = { hypervisor: instance.hypervisor, result: "success", seconds: expect.any(Number) };
    expect(prepared).toEqual([
      { ...step, restore_source: "decompress" },
      { ...step, restore_source: "raw" },
    ]);
    expect(prepared[0]!.seconds).toBeGreaterThan(0);
  });

  it("a packed file that does not unpack is reported as a failed decompress step", async () => {
    const { instance, files } = standbyInstance(3);
    await memory.compress(instance.id, { algorithm: "zstd", level: 1 }, new AbortController().signal);
    writeFileSync(compressedPayload(files.memory), "not a codec file");
    const prepared: MemoryPrepared[] = [];
    const restore = memory.whileRaw(
      instance.id,
      async () => "restored",
      (step) => prepared.push(step),
    );
    await expect(restore).rejects.toThrow();
    expect(prepared).toMatchObject([{ restore_source: "decompress", result: "failed" }]);
  });
});
