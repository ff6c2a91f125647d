/** Guest image manifests: what a built image directory contains and how to boot it. */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { ImageError } from "./errors.ts";

export const DEFAULT_IMAGES_DIR = "./data/images";
export const DEFAULT_IMAGE_NAME = "busybox";
export const MANIFEST_FILE = "manifest.json";

/** Bumped whenever the builder changes what it puts in an image. */
export const IMAGE_FORMAT_VERSION = 2;

export const imageManifestSchema = z.object({
  name: z.string().min(1),
  version: z.number().int().positive(),
  /** File names relative to the image directory. */
  kernel: z.string().min(1),
  initrd: z.string().min(1),
  cmdline: z.string(),
  defaultMemoryBytes: z.number().int().positive(),
  /** Size given to a fresh instance disk (created sparse). */
  defaultDiskBytes: z.number().int().positive(),
  /** Debian packages the image was built from, "name=version". */
  sources: z.array(z.string()),
  builtAt: z.string(),
});
export type ImageManifest = z.infer<typeof imageManifestSchema>;

/** A manifest plus the absolute paths of its files, ready to hand to a driver. */
export interface GuestImage {
  dir: string;
  manifest: ImageManifest;
  kernelPath: string;
  initrdPath: string;
}

export function imageDir(imagesDir: string, name: string): string {
  return path.resolve(imagesDir, name);
}

/** Reads and validates `<imagesDir>/<name>/manifest.json`; throws ImageError if missing or malformed. */
export async function loadImage(name = DEFAULT_IMAGE_NAME, imagesDir = DEFAULT_IMAGES_DIR): Promise<GuestImage> {
  const dir = imageDir(imagesDir, name);
  let raw: string;
  try {
    raw = await readFile(path.join(dir, MANIFEST_FILE), "utf8");
  } catch (cause) {
    throw new ImageError(`image "${name}" not found in ${path.resolve(imagesDir)} (run npm run image:build)`, {
      cause,
    });
  }
  const parsed = imageManifestSchema.safeParse(JSON.parse(raw));
  if (!parsed.success) throw new ImageError(`image "${name}" has an invalid manifest: ${parsed.error.message}`);
  const manifest = parsed.data;
  return { dir, manifest, kernelPath: path.join(dir, manifest.kernel), initrdPath: path.join(dir, manifest.initrd) };
}
