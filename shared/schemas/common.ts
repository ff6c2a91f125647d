// Field rules shared by resources: names, tags, sizes, timestamps.

import { HOST_ID_PATTERN } from "../host-id.ts";
import { isImageName } from "../hypervisor/image.ts";
import { HYPERVISOR_NAMES } from "../hypervisor/types.ts";
import { ID_PATTERN } from "../ids.ts";
import { z } from "../zod.ts";

export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
export const TAG_CHARS = /^[A-Za-z0-9 _.:/=+@-]*$/;
export const MAX_TAGS = 50;

export const RESOURCE_NAME = z
  .string()
  .max(63, "at most 63 characters")
  .regex(NAME_PATTERN, "lowercase letters, digits and dashes only; cannot start or end with a dash");

export const HOST_ID = z.string().regex(HOST_ID_PATTERN, "lowercase letters, digits and dashes, at most 63");

/** Derived at read time from the host directory; never stored. */
export const HOST_ONLINE = z
  .boolean()
  .optional()
  .openapi({
    description:
      "Extension: false while the owning host is offline (its instances then read Unknown, its snapshots cannot be " +
      "forked until it is back)",
  });

export const TAGS = z
  .record(
    z
      .string()
      .min(1, "tag keys are 1-128 characters")
      .max(128, "tag keys are 1-128 characters")
      .regex(TAG_CHARS, "tag keys may use letters, digits, spaces and _ . : / = + @ -"),
    z
      .string()
      .max(256, "tag values are at most 256 characters")
      .regex(TAG_CHARS, "tag values may use letters, digits, spaces and _ . : / = + @ -"),
  )
  .refine((tags) => Object.keys(tags).length <= MAX_TAGS, `at most ${MAX_TAGS} tags`)
  .openapi({ description: "User-defined key-value tags.", example: { team: "backend", env: "staging" } });

/** A guest image's name: one plain directory name under the images dir (shared/hypervisor/image.ts). */
export const IMAGE_NAME = z
  .string()
  .refine(isImageName, "lowercase letters, digits, . _ - only, at most 64, starting with a letter or digit, no ..");

/** The id of an instance or snapshot: job payloads carry only these, so none can name a path outside its dir. */
export const RESOURCE_ID = z.string().regex(ID_PATTERN, "not a resource id");
export const TIMESTAMP = z.iso.datetime().openapi({ format: "date-time" });

/** Every hypervisor name the API knows (the driver seam's list); which ones a host runs is the registry's answer. */
export const HYPERVISOR = z.enum(HYPERVISOR_NAMES);
export type Hypervisor = z.infer<typeof HYPERVISOR>;

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** "256MB", "1GB", "512MiB" → bytes. Units are binary (MB = MiB), as QEMU counts guest memory. */
export function parseSize(text: string): number | undefined {
  const match = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!match) return undefined;
  const unit = SIZE_UNITS[(match[2] || "b").toLowerCase()];
  if (unit === undefined) return undefined;
  return Number(match[1]) * unit;
}

export function formatSize(bytes: number): string {
  if (bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3}GB`;
  if (bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2}MB`;
  return `${bytes}B`;
}

/** A size string within [min, max] bytes, e.g. "256MB". */
export function sizeString(min: number, max: number, what: string) {
  return z
    .string()
    .refine((text) => parseSize(text) !== undefined, `${what} must look like 256MB or 1GB`)
    .refine(
      (text) => {
        const bytes = parseSize(text);
        return bytes === undefined || (bytes >= min && bytes <= max);
      },
      `${what} must be between ${formatSize(min)} and ${formatSize(max)}`,
    );
}
