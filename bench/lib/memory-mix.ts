// Generates a stand-in guest memory file: runs of zero pages (mostly holes), text-like pages and random pages.
import { createCipheriv } from "node:crypto";
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";

const PAGE_SIZE = 4096;
// Run lengths are log-uniform (many short runs, a few long ones): data runs of 1 to 1024 pages, zero runs of 1 to
// 16384 pages (64 MiB), because a guest leaves untouched memory in large regions: the 256 MiB busybox capture in
// docs had 37 of its 64 chunks of 4 MiB entirely zero.
const MAX_DATA_RUN_PAGES_LOG2 = 10;
const MAX_ZERO_RUN_PAGES_LOG2 = 14;
const TEXT_POOL_BYTES = 32 << 20;
const WRITE_BATCH_BYTES = 4 << 20;
const WORDS = (
  "the of and to in is that for it as was with be by on not he this are or his from at which but have an they you " +
  "were her she there been one all we their has would when if so no will can more other its time into only some " +
  "could new them these may than first any like then now do over such our man me even most made after also did " +
  "many before must through back years where much your way well down should because each just those people how " +
  "kernel page memory process thread scheduler interrupt device driver buffer cache inode socket packet network " +
  "virtio queue descriptor mapping allocator slab module symbol init console serial busybox shell mount proc sysfs"
).split(" ");

/** Byte shares of the generated mix; zero runs are holes except `writtenZeroShare` of them, written as zeros. */
export const MEMORY_MIX = { zero: 0.6, text: 0.25, random: 0.15, writtenZeroShare: 0.25 } as const;

export interface MemoryMixSummary {
  zeroBytes: number;
  textBytes: number;
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

/** Writes `size` bytes of the mix to `path` (a sparse file; `size` is rounded down to whole pages plus a tail). */
export function generateMemoryMix(path: string, size: number, seed = 1): MemoryMixSummary {
  const random = seededRandom(seed);
  const textPool = buildTextPool(random);
  const keystream = createCipheriv("aes-128-ctr", Buffer.alloc(16, seed & 0xff), Buffer.alloc(16));
  const zeros = Buffer.alloc(WRITE_BATCH_BYTES);
  const summary: MemoryMixSummary = { zeroBytes: 0, textBytes: 0, randomBytes: 0, holeBytes: 0 };
  const fd = openSync(path, "w");
  try {
    ftruncateSync(fd, size);
    let offset = 0;
    for (const run of planRuns(size, random)) {
      if (run.kind === "zero") {
        summary.zeroBytes += run.bytes;
        if (random() < MEMORY_MIX.writtenZeroShare)
          writeRun(fd, offset, run.bytes, (length) => zeros.subarray(0, length));
        else summary.holeBytes += run.bytes;
      } else if (run.kind === "text") {
        summary.textBytes += run.bytes;
        writeRun(fd, offset, run.bytes, (length) => {
          const start = Math.floor((random() * (textPool.length - length)) / PAGE_SIZE) * PAGE_SIZE;
          return textPool.subarray(start, start + length);
        });
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
  kind: "zero" | "text" | "random";
  bytes: number;
}

/** Runs of each kind filling exactly its share of `size`, in a shuffled order. */
function planRuns(size: number, random: () => number): Run[] {
  const runs: Run[] = [];
  const pages = Math.ceil(size / PAGE_SIZE);
  const textPages = Math.round(pages * MEMORY_MIX.text);
  const randomPages = Math.round(pages * MEMORY_MIX.random);
  const budgets = [
    { kind: "text", pages: textPages, maxLog2: MAX_DATA_RUN_PAGES_LOG2 },
    { kind: "random", pages: randomPages, maxLog2: MAX_DATA_RUN_PAGES_LOG2 },
    { kind: "zero", pages: pages - textPages - randomPages, maxLog2: MAX_ZERO_RUN_PAGES_LOG2 },
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
