// Generates stand-in guest memory files: runs of zero pages (holes or written zeros), text-like pages, binary
// (structure-like) pages and random pages, in the shares of a mix: the sparse one a freshly booted guest leaves, or a
// dense one (a busy guest's heap, page cache and code: few zero pages, no large holes).
import { createCipheriv } from "node:crypto";
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";

const PAGE_SIZE = 4096;
// Run lengths are log-uniform (many short runs, a few long ones): data runs of 1 to 1024 pages, zero runs of 1 to
// 16384 pages (64 MiB), because a guest leaves untouched memory in large regions: the 256 MiB busybox capture in
// docs had 37 of its 64 chunks of 4 MiB entirely zero.
const MAX_DATA_RUN_PAGES_LOG2 = 10;
const MAX_ZERO_RUN_PAGES_LOG2 = 14;
const TEXT_POOL_BYTES = 32 << 20;
const BINARY_POOL_BYTES = 16 << 20;
/** A binary record: pointer, counters, flags, an id, then a payload half zeros and half noise (64 bytes). */
const RECORD_BYTES = 64;
const WRITE_BATCH_BYTES = 4 << 20;
const WORDS = (
  "the of and to in is that for it as was with be by on not he this are or his from at which but have an they you " +
  "were her she there been one all we their has would when if so no will can more other its time into only some " +
  "could new them these may than first any like then now do over such our man me even most made after also did " +
  "many before must through back years where much your way well down should because each just those people how " +
  "kernel page memory process thread scheduler interrupt device driver buffer cache inode socket packet network " +
  "virtio queue descriptor mapping allocator slab module symbol init console serial busybox shell mount proc sysfs"
).split(" ");

/** Byte shares of a generated mix; zero runs are holes except `writtenZeroShare` of them, written as zeros. */
export interface MemoryMix {
  zero: number;
  text: number;
  binary: number;
  random: number;
  writtenZeroShare: number;
  /** Longest zero run, as log2 of pages. */
  maxZeroRunPagesLog2: number;
}

/** What a freshly booted guest leaves: mostly untouched memory, in large regions (the 1 GiB and 4 GiB files). */
export const MEMORY_MIX: MemoryMix = {
  zero: 0.6,
  text: 0.25,
  binary: 0,
  random: 0.15,
  writtenZeroShare: 0.25,
  maxZeroRunPagesLog2: MAX_ZERO_RUN_PAGES_LOG2,
};

/**
 * A busy guest: 10% zero pages in runs of at most 64 pages (so almost no 2 MiB chunk is all zero and the codec
 * compresses nearly every byte), half of them holes; the rest text, binary structures and random (already compressed
 * or encrypted) data.
 */
export const DENSE_MIX: MemoryMix = {
  zero: 0.1,
  text: 0.35,
  binary: 0.35,
  random: 0.2,
  writtenZeroShare: 0.5,
  maxZeroRunPagesLog2: 6,
};

export interface MemoryMixSummary {
  zeroBytes: number;
  textBytes: number;
  binaryBytes: number;
  randomBytes: number;
  holeBytes: number;
}

/** A small seeded generator (mulberry32): the same seed gives the same file. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = Math.imul(state ^ (state >>> 15), 1 | state);
    value = (value + Math.imul(value ^ (value >>> 7), 61 | value)) ^ value;
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

function buildTextPool(random: () => number): Buffer {
  const parts: string[] = [];
  let length = 0;
  while (length < TEXT_POOL_BYTES) {
    const sentenceWords = 4 + Math.floor(random() * 14);
    const words: string[] = [];
    for (let index = 0; index < sentenceWords; index++) words.push(WORDS[Math.floor(random() * WORDS.length)]!);
    const sentence = `${words.join(" ")}${random() < 0.2 ? ".\n" : ". "}`;
    parts.push(sentence);
    length += sentence.length;
  }
  return Buffer.from(parts.join(""), "latin1").subarray(0, TEXT_POOL_BYTES);
}

/** Structure-like memory: records of a kernel-ish pointer, small counters, a few flag values and increasing ids. */
function buildBinaryPool(random: () => number): Buffer {
  const pool = Buffer.alloc(BINARY_POOL_BYTES);
  const flags = [0, 1, 0x11, 0x8000_0001];
  for (let offset = 0, id = 1; offset < pool.length; offset += RECORD_BYTES, id++) {
    pool.writeBigUInt64LE(0xffff_8880_0000_0000n + BigInt(Math.floor(random() * 2 ** 24) * 64), offset);
    pool.writeUInt32LE(Math.floor(random() * 1000), offset + 8);
    pool.writeUInt32LE(flags[Math.floor(random() * flags.length)]!, offset + 12);
    pool.writeBigUInt64LE(BigInt(id), offset + 16);
    for (let byte = offset + 24; byte < offset + 44; byte++) pool[byte] = Math.floor(random() * 256);
  }
  return pool;
}

/** Writes `size` bytes of the mix to `path` (a sparse file; `size` is rounded down to whole pages plus a tail). */
export function generateMemoryMix(path: string, size: number, seed = 1, mix = MEMORY_MIX): MemoryMixSummary {
  const random = seededRandom(seed);
  const textPool = buildTextPool(random);
  const binaryPool = mix.binary > 0 ? buildBinaryPool(random) : Buffer.alloc(0);
  const keystream = createCipheriv("aes-128-ctr", Buffer.alloc(16, seed & 0xff), Buffer.alloc(16));
  const zeros = Buffer.alloc(WRITE_BATCH_BYTES);
  const summary: MemoryMixSummary = { zeroBytes: 0, textBytes: 0, binaryBytes: 0, randomBytes: 0, holeBytes: 0 };
  const fromPool = (pool: Buffer) => (length: number) => {
    const start = Math.floor((random() * (pool.length - length)) / PAGE_SIZE) * PAGE_SIZE;
    return pool.subarray(start, start + length);
  };
  const fd = openSync(path, "w");
  try {
    ftruncateSync(fd, size);
    let offset = 0;
    for (const run of planRuns(size, random, mix)) {
      if (run.kind === "zero") {
        summary.zeroBytes += run.bytes;
        if (random() < mix.writtenZeroShare) writeRun(fd, offset, run.bytes, (length) => zeros.subarray(0, length));
        else summary.holeBytes += run.bytes;
      } else if (run.kind === "text") {
        summary.textBytes += run.bytes;
        writeRun(fd, offset, run.bytes, fromPool(textPool));
      } else if (run.kind === "binary") {
        summary.binaryBytes += run.bytes;
        writeRun(fd, offset, run.bytes, fromPool(binaryPool));
      } else {
        summary.randomBytes += run.bytes;
        writeRun(fd, offset, run.bytes, (length) => keystream.update(zeros.subarray(0, length)));
      }
      offset += run.bytes;
    }
  } finally {
    closeSync(fd);
  }
  return summary;
}

interface Run {
  kind: "zero" | "text" | "binary" | "random";
  bytes: number;
}

/** Runs of each kind filling exactly its share of `size`, in a shuffled order. */
function planRuns(size: number, random: () => number, mix: MemoryMix): Run[] {
  const runs: Run[] = [];
  const pages = Math.ceil(size / PAGE_SIZE);
  const textPages = Math.round(pages * mix.text);
  const binaryPages = Math.round(pages * mix.binary);
  const randomPages = Math.round(pages * mix.random);
  const budgets = [
    { kind: "text", pages: textPages, maxLog2: MAX_DATA_RUN_PAGES_LOG2 },
    { kind: "binary", pages: binaryPages, maxLog2: MAX_DATA_RUN_PAGES_LOG2 },
    { kind: "random", pages: randomPages, maxLog2: MAX_DATA_RUN_PAGES_LOG2 },
    { kind: "zero", pages: pages - textPages - binaryPages - randomPages, maxLog2: mix.maxZeroRunPagesLog2 },
  ] as const;
  for (const budget of budgets) {
    for (let left = budget.pages; left > 0; ) {
      const runPages = Math.min(left, Math.floor(2 ** (random() * budget.maxLog2)));
      runs.push({ kind: budget.kind, bytes: runPages * PAGE_SIZE });
      left -= runPages;
    }
  }
  for (let index = runs.length - 1; index > 0; index--) {
    const other = Math.floor(random() * (index + 1));
    [runs[index], runs[other]] = [runs[other]!, runs[index]!];
  }
  const last = runs.at(-1);
  if (last) last.bytes -= pages * PAGE_SIZE - size; // a size that is not a whole number of pages
  return runs;
}

function writeRun(fd: number, offset: number, length: number, content: (length: number) => Buffer): void {
  for (let done = 0; done < length; done += WRITE_BATCH_BYTES) {
    const batch = Math.min(WRITE_BATCH_BYTES, length - done);
    writeSync(fd, content(batch), 0, batch, offset + done);
  }
}
