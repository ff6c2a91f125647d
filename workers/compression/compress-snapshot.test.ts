// compressSnapshot on real parts (a Redis, a snapshot directory, the codec): the raw payload goes only once the image
// has been read back and decodes to it. A codec that writes a wrong block leaves the raw file and an error state.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BlockCodec, blockCodec } from "../../shared/codec/index.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { nextStamp } from "../../shared/host-records.ts";
import { createLogger } from "../../shared/logger.ts";
import { MEMORY_FILE, type SnapshotRecord, SnapshotStore } from "../../shared/snapshots/store.ts";
import { checksumsFile } from "../../shared/squashfs/checksums.ts";
import { tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import { compressSnapshot } from "./compress-snapshot.ts";

const MIB = 1 << 20;
const data = tempDir("compress-snapshot");
let redis: Redis;
let store: SnapshotStore;
let events: EventStream;
const log = createLogger("compress-snapshot-test", "silent");

beforeAll(() => {
  redis = new Redis(testRedisUrl());
  const prefix = uniquePrefix("compress");
  store = new SnapshotStore(data.dir, redis, prefix);
  events = new EventStream(redis, prefix);
});
afterAll(async () => {
  redis?.disconnect();
  data.remove();
});

/** A Standby snapshot whose memory.raw holds 3 MiB of guest-like data and wants zstd compression. */
async function standbySnapshot(): Promise<SnapshotRecord> {
  const source = sampleInstance({ state: "Standby" });
  const snapshot = sampleSnapshot(source, { compression: { enabled: true, algorithm: "zstd", level: 3 } });
  mkdirSync(store.dir(snapshot.id), { recursive: true });
  writeFileSync(store.file(snapshot.id, MEMORY_FILE), Buffer.from("guest page ".repeat(300_000)).subarray(0, 3 * MIB));
  const record: SnapshotRecord = {
    snapshot,
    source,
    memory_layout: "file",
    memory_payload: MEMORY_FILE,
    ...nextStamp(undefined, "snapshot.created", null),
  };
  await store.write(record);
  return record;
}

/** The real codec, except that the second block it compresses is not the block it was given. */
async function miscodingCodec(): Promise<BlockCodec> {
  const real = await blockCodec();
  let calls = 0;
  return {
    ...real,
    compress(algorithm, level, block, output) {
      if (++calls !== 2) return real.compress(algorithm, level, block, output);
      const altered = Buffer.from(block);
      altered[4096] = altered[4096]! ^ 0x20;
      return real.compress(algorithm, level, altered, output);
    },
  };
}

const context = { signal: new AbortController().signal, isLastAttempt: true };

describe("compressSnapshot", () => {
  it("keeps the raw payload and records an error when the image does not decode to it", async () => {
    const { snapshot } = await standbySnapshot();
    const outcome = await compressSnapshot({ store, events, log, codec: await miscodingCodec() }, snapshot.id, context);
    expect(outcome).toBe("error");
    const record = await store.read(snapshot.id);
    expect(record!.snapshot.compression_state).toBe("error");
    // Blocks are compressed concurrently: the miscoded one is whichever block was the second handed to the codec.
    expect(record!.snapshot.compression_error).toMatch(/block \d+ does not decode to the raw bytes/);
    const raw = store.file(snapshot.id, MEMORY_FILE);
    expect(existsSync(raw)).toBe(true);
    expect(existsSync(`${raw}.sqfs`)).toBe(false);
    expect(existsSync(checksumsFile(`${raw}.sqfs`))).toBe(false);
  });

  it("removes the raw payload once the image reads back as it", async () => {
    const { snapshot } = await standbySnapshot();
    expect(await compressSnapshot({ store, events, log }, snapshot.id, context)).toBe("compressed");
    expect((await store.read(snapshot.id))!.snapshot.compression_state).toBe("compressed");
    expect(existsSync(store.file(snapshot.id, MEMORY_FILE))).toBe(false);
    expect(existsSync(path.join(store.dir(snapshot.id), `${MEMORY_FILE}.sqfs`))).toBe(true);
  });
});
