// Test inputs and helpers for the codec tests: real files under a temporary directory each test file owns.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

export const run = promisify(execFile);

export async function makeTemporaryDirectory(
  prefix: string,
): Promise<{ directory: string; remove: () => Promise<void> }> {
  const directory = await mkdtemp(path.join(tmpdir(), `snapfleet-codec-${prefix}-`));
  return { directory, remove: () => rm(directory, { recursive: true, force: true }) };
}

/** Text that compresses about as well as logs or source code. */
export function textBytes(length: number): Buffer {
  const words = ["page", "kernel", "mapping", "virtio", "queue", "the", "of", "memory", "slab", "inode", "0x7f3a"];
  const parts: string[] = [];
  let size = 0;
  for (let index = 0; size < length; index++) {
    const word = words[(index * 7 + (index >> 3)) % words.length]!;
    parts.push(word);
    size += word.length + 1;
  }
  return Buffer.from(parts.join(" ")).subarray(0, length);
}

/** Writes `size` bytes as a sparse file: holes everywhere except `data` placed at its offsets. */
export async function writeSparseFile(filePath: string, size: number, data: { offset: number; bytes: Buffer }[]) {
  const handle = await open(filePath, "w");
  try {
    await handle.truncate(size);
    for (const part of data) await handle.write(part.bytes, 0, part.bytes.length, part.offset);
  } finally {
    await handle.close();
  }
  const expected = Buffer.alloc(size);
  for (const part of data) part.bytes.copy(expected, part.offset);
  return expected;
}

export interface NamedInput {
  name: string;
  /** Writes the input file and returns its expected content. */
  write(filePath: string): Promise<Buffer>;
  sparse?: boolean;
}

const CHUNK = 64 << 10;

/** Inputs for round trips, sized for 64 KiB test chunks. */
export const INPUTS: NamedInput[] = [
  { name: "empty", write: async (file) => writeBytes(file, Buffer.alloc(0)) },
  { name: "tiny (1 byte)", write: async (file) => writeBytes(file, Buffer.from([0x5a])) },
  { name: "random, odd-sized", write: async (file) => writeBytes(file, randomBytes(3 * CHUNK + 4097)) },
  { name: "text, odd-sized", write: async (file) => writeBytes(file, textBytes(2 * CHUNK + 333)) },
  { name: "all-zero, written", write: async (file) => writeBytes(file, Buffer.alloc(4 * CHUNK + 100)) },
  {
    name: "sparse with data in some chunks",
    sparse: true,
    write: (file) =>
      writeSparseFile(file, 16 * CHUNK + 4096 + 17, [
        { offset: 0, bytes: textBytes(5000) },
        { offset: 5 * CHUNK + 8192, bytes: randomBytes(12_288) }, // a chunk part hole, part data
        { offset: 9 * CHUNK, bytes: Buffer.alloc(CHUNK) }, // data that is all zero
        { offset: 16 * CHUNK + 4096, bytes: randomBytes(17) }, // the short last chunk
      ]),
  },
];

async function writeBytes(filePath: string, bytes: Buffer): Promise<Buffer> {
  await writeFile(filePath, bytes);
  return bytes;
}

export const TEST_CHUNK_SIZE = CHUNK;

/** Bytes the file occupies on disk (holes take none). */
export async function allocatedBytes(filePath: string): Promise<number> {
  return (await stat(filePath)).blocks * 512;
}

export async function listFiles(directory: string): Promise<string[]> {
  return (await readdir(directory)).sort();
}
