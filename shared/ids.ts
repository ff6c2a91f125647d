// Resource ids: 24 lowercase alphanumerics starting with a letter (cuid2 style), from a CSPRNG.
import { randomBytes } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
export const ID_LENGTH = 24;
export const ID_PATTERN = /^[a-z][a-z0-9]{23}$/;

export function newId(): string {
  const bytes = randomBytes(ID_LENGTH);
  let id = ALPHABET[bytes[0]! % 26]!;
  for (let index = 1; index < ID_LENGTH; index++) id += ALPHABET[bytes[index]! % ALPHABET.length];
  return id;
}
