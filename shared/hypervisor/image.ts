/** Guest image manifests: what a built image directory contains and how to boot it. */
import { readFile, realpath } from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { ImageError } from "./errors.ts";

export const DEFAULT_IMAGES_DIR = "./data/images";
export const DEFAULT_IMAGE_NAME = "busybox";
export const MANIFEST_FILE = "manifest.json";

/** Bumped whenever the builder changes what it puts in an image. */
export const IMAGE_FORMAT_VERSION = 2;

/** An image's name is a directory under the images dir: one path segment, no `..`, nothing hidden. */
export const IMAGE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;
/** A file of an image is one plain name inside its directory. */
const IMAGE_FILE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isImageName(name: string): boolean {
  return IMAGE_NAME_PATTERN.test(name) && !name.includes("..");
}

const imageFileName = z
  .string()
  .regex(IMAGE_FILE_PATTERN, "one file name inside the image directory")
  .refine((name) => !name.includes(".."), "one file name inside the image directory");

export const imageManifestSchema = z.object({
  name: z.string().min(1),
  version: z.number().int().positive(),
  /** File names in the image directory (no directories, no `..`). */
  kernel: imageFileName,
  initrd: imageFileName,
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

/** The directory of image `name`; throws ImageError for a name that is not one plain segment. */
export function imageDir(imagesDir: string, name: string): string {
  if (!isImageName(name)) throw new ImageError(`image name ${JSON.stringify(name)} is not a valid image name`);
  return path.resolve(imagesDir, name);
}

/**
 * Reads and validates `<imagesDir>/<name>/manifest.json`; throws ImageError if missing or malformed, or if the
 * image directory or its kernel and initrd resolve (through links) outside the images dir.
 */
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
  const kernelPath = path.join(dir, manifest.kernel);
  const initrdPath = path.join(dir, manifest.initrd);
  for (const file of [dir, kernelPath, initrdPath]) await assertInsideImages(imagesDir, file, name);
  return { dir, manifest, kernelPath, initrdPath };
}

/** `file` must resolve, links followed, inside the images dir (which may itself be a link). */
async function assertInsideImages(imagesDir: string, file: string, name: string): Promise<void> {
  const [root, resolved] = await Promise.all([realpath(imagesDir), realpath(file).catch(() => undefined)]);
  if (resolved === undefined) throw new ImageError(`image "${name}" lacks ${path.basename(file)}`);
  if (!isInside(root, resolved)) throw new ImageError(`image "${name}": ${file} resolves outside ${imagesDir}`);
}

/** Whether `file` is `root` or below it (both absolute, resolved). */
export function isInside(root: string, file: string): boolean {
  const relative = path.relative(root, file);
  return relative === "" || (!relative.startsWith("..") && !path.isAbsolute(relative));
}
