// Resource ids: 24 lowercase alphanumerics starting with a letter (cuid2 style), from a CSPRNG.
import { createHash, randomBytes } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
export const ID_LENGTH = 24;
export const ID_PATTERN = /^[a-z][a-z0-9]{23}$/;

export function newId(): string {
  return fromBytes(randomBytes(ID_LENGTH));
}

/** The id `seed` stands for: the same seed gives the same id (from its SHA-512, in the same alphabet and shape). */
export function idFrom(seed: string): string {
  return fromBytes(createHash("sha512").update(seed).digest());
}

function fromBytes(bytes: Buffer): string {
  let id = ALPHABET[bytes[0]! % 26]!;
  for (let index = 1; index < ID_LENGTH; index++) id += ALPHABET[bytes[index]! % ALPHABET.length];
  return id;
}
