// Our own integrity check of a squashfs image, since the kernel checks none: a sidecar `<image>.sums` lists
// XXH64 of every stored piece (superblock and options, each data block as stored, the tables), and
// verifyImage reads the whole image against it before anything maps the image.
import { open, readFile } from "node:fs/promises";
import { z } from "zod";
import { blockCodec, readExactly } from "../codec/index.ts";
import { writeFileAtomic } from "../files.ts";

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
  await writeFileAtomic(file, JSON.stringify(checksums));
}

/** Reads the whole image and checks every piece against its sidecar; throws ImageIntegrityError on any mismatch. */
export async function verifyImage(imagePath: string): Promise<void> {
  const checksums = await readChecksums(checksumsFile(imagePath));
  const codec = await blockCodec();
  const image = await open(imagePath, "r");
  try {
    const { size } = await image.stat();
    let expectedOffset = 0;
    let buffer = Buffer.alloc(0);
    for (const [offset, length, checksum] of checksums.pieces) {
      if (offset !== expectedOffset)
        throw new ImageIntegrityError(`${imagePath}: its checksum list has a gap at byte ${expectedOffset}`);
      if (offset + length > size)
        throw new ImageIntegrityError(`${imagePath} is truncated: ${size} bytes, pieces need ${offset + length}`);
      if (buffer.length < length) buffer = Buffer.allocUnsafe(length);
      const piece = buffer.subarray(0, length);
      await readExactly(image, piece, 0, length, offset);
      if (codec.checksum(piece) !== checksum) {
        throw new ImageIntegrityError(
          `${imagePath} is damaged: the ${length} bytes at offset ${offset} fail their checksum`,
        );
      }
      expectedOffset = offset + length;
    }
    if (expectedOffset !== size)
      throw new ImageIntegrityError(`${imagePath} has ${size - expectedOffset} bytes its checksum list does not cover`);
  } finally {
    await image.close();
  }
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
