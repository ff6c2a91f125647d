// Our own integrity check of a squashfs image, since the kernel checks none: a sidecar `<image>.sums` lists
// XXH64 of every stored piece (superblock and options, each data block as stored, the tables), and
// verifyImage reads the whole image against it before anything maps the image.
import { open, readFile } from "node:fs/promises";
import { z } from "zod";
import { blockCodec, readExactly } from "../codec/index.ts";
import { writeFileDurable } from "../files.ts";

const PIECE = z.tuple([
  z.number().int().nonnegative(),
  z.number().int().positive(),
  z.string().regex(/^[0-9a-f]{16}$/),
]);
const CHECKSUMS_SCHEMA = z.object({
  version: z.literal(1),
  /** [offset, length, XXH64 hex] in file order, covering the image end to end. */
  pieces: z.array(PIECE),
});
export type ImageChecksums = z.infer<typeof CHECKSUMS_SCHEMA>;

/** A damaged image or sidecar; the message says where. */
export class ImageIntegrityError extends Error {
  override name = "ImageIntegrityError";
}

export function checksumsFile(imagePath: string): string {
  return `${imagePath}.sums`;
}

export async function writeChecksums(file: string, checksums: ImageChecksums): Promise<void> {
  await writeFileDurable(file, JSON.stringify(checksums));
}

/** Pieces are read in runs of about this many bytes: few large reads, no per-piece read. */
const READ_BYTES = 2 * 1024 * 1024;

type Piece = ImageChecksums["pieces"][number];

/** Consecutive pieces read with one read: from `offset`, `length` bytes. */
interface ReadRun {
  offset: number;
  length: number;
  pieces: Piece[];
}

/**
 * Reads the whole image and checks every piece against its sidecar; throws ImageIntegrityError on any mismatch.
 * The next run is read (in libuv's pool) while this one is hashed (native XXH64 on each piece where it lies).
 */
export async function verifyImage(imagePath: string): Promise<void> {
  const { pieces } = await readChecksums(checksumsFile(imagePath));
  const codec = await blockCodec();
  const image = await open(imagePath, "r");
  let pending: Promise<unknown> = Promise.resolve();
  try {
    assertCoverage(imagePath, pieces, (await image.stat()).size);
    const runs = readRuns(pieces);
    const longest = runs.reduce((most, run) => Math.max(most, run.length), 0);
    const buffers = [Buffer.allocUnsafe(longest), Buffer.allocUnsafe(longest)];
    const read = (index: number) =>
      readExactly(image, buffers[index % 2]!, 0, runs[index]!.length, runs[index]!.offset);
    pending = runs.length > 0 ? read(0) : pending;
    for (const [index, run] of runs.entries()) {
      await pending;
      if (index + 1 < runs.length) pending = read(index + 1);
      for (const [offset, length, checksum] of run.pieces) {
        const start = offset - run.offset;
        if (codec.checksum(buffers[index % 2]!.subarray(start, start + length)) !== checksum) {
          throw new ImageIntegrityError(
            `${imagePath} is damaged: the ${length} bytes at offset ${offset} fail their checksum`,
          );
        }
      }
    }
  } finally {
    await pending.catch(() => {}); // no read left running on the handle being closed
    await image.close();
  }
}

/** Groups consecutive pieces into runs of at most READ_BYTES (a longer piece is a run of its own). */
function readRuns(pieces: Piece[]): ReadRun[] {
  const runs: ReadRun[] = [];
  for (const piece of pieces) {
    const last = runs.at(-1);
    if (last && last.length + piece[1] <= READ_BYTES) {
      last.length += piece[1];
      last.pieces.push(piece);
    } else {
      runs.push({ offset: piece[0], length: piece[1], pieces: [piece] });
    }
  }
  return runs;
}

/** The pieces must cover the image end to end, in order, before any byte is read. */
function assertCoverage(imagePath: string, pieces: ImageChecksums["pieces"], size: number): void {
  let expectedOffset = 0;
  for (const [offset, length] of pieces) {
    if (offset !== expectedOffset)
      throw new ImageIntegrityError(`${imagePath}: its checksum list has a gap at byte ${expectedOffset}`);
    if (offset + length > size)
      throw new ImageIntegrityError(`${imagePath} is truncated: ${size} bytes, pieces need ${offset + length}`);
    expectedOffset = offset + length;
  }
  if (expectedOffset !== size)
    throw new ImageIntegrityError(`${imagePath} has ${size - expectedOffset} bytes its checksum list does not cover`);
}

async function readChecksums(file: string): Promise<ImageChecksums> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ImageIntegrityError(`checksum list ${file} is missing`, { cause: error });
  }
  const parsed = CHECKSUMS_SCHEMA.safeParse(safeJson(text));
  if (!parsed.success) throw new ImageIntegrityError(`checksum list ${file} is damaged`);
  return parsed.data;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
