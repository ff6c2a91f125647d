// Read-only mounts of compressed snapshot images (`<DATA_DIR>/mounts/<snapshot id>/`), one per snapshot, shared
// by every VM that maps its memory file: the kernel decompresses a block when a guest first touches it and keeps
// it in the page cache for all of them. The kernel's own count of open and mapped files is the reference count:
// `umount` succeeds only when no VM maps the image, so a release is always safe to try. A mount no VM uses any
// more is kept for the next fork a while (IMAGE_MOUNT_IDLE_MS, at most IMAGE_MOUNTS_IDLE_MAX of them), so only
// a snapshot's first fork in a while pays for checking and mounting its image. Mounts outlive the worker and are
// found again in /proc/mounts.
import type { BigIntStats } from "node:fs";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rmdir, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ApiError } from "../../shared/errors.ts";
import { run } from "../../shared/hypervisor/exec.ts";
import type { Logger } from "../../shared/logger.ts";
import { processMaps } from "../../shared/process-maps.ts";
import { COMPRESSED_SUFFIX, type SnapshotStore } from "../../shared/snapshots/store.ts";
import { ImageIntegrityError, verifyImage } from "../../shared/squashfs/checksums.ts";
import { checkImageStructure, type ExpectedImage } from "../../shared/squashfs/inspect.ts";

const MOUNTS_DIR = "mounts";
const UNMOUNT_RETRIES = 20;
const UNMOUNT_RETRY_MS = 50;
/** Nothing on an image is run, opened as a device, setuid, or followed as a link. */
const MOUNT_OPTIONS = "loop,ro,nodev,nosuid,noexec";
const NO_SYMLINKS = "nosymfollow";

export interface ImageMountsOptions {
  /** IMAGE_MOUNT_IDLE_MS: how long a mount no VM uses is kept for the next fork; 0 unmounts it at once. */
  idleMs: number;
  /** IMAGE_MOUNTS_IDLE_MAX: unused mounts kept at most; beyond it the least recently released go first. */
  maxIdle: number;
}

/** What identifies the image file a mount's verification read: any write or replacement changes it. */
type ImageIdentity = Pick<BigIntStats, "dev" | "ino" | "size" | "mtimeNs" | "ctimeNs">;

export class ImageMounts {
  /** Per mounted snapshot, the identity of the image file as it was when this process verified it. */
  private readonly verified = new Map<string, ImageIdentity>();
  /** Unused mounts kept for the next fork, with their expiry timers, least recently released first. */
  private readonly idle = new Map<string, NodeJS.Timeout>();
  /** Whether this kernel takes `nosymfollow` (Linux 5.10+); learnt at the first mount. */
  private symlinksRefusable = true;

  constructor(
    private readonly store: SnapshotStore,
    private readonly log: Logger,
    private readonly options: ImageMountsOptions,
  ) {}

  private get root(): string {
    return path.resolve(this.store.dataDir, MOUNTS_DIR);
  }

  mountPoint(snapshotId: string): string {
    return path.join(this.root, snapshotId);
  }

  /** The snapshot whose mount holds `file`, or null for a file outside the mounts. */
  snapshotOf(file: string): string | null {
    const relative = path.relative(this.root, path.resolve(file));
    if (relative.startsWith("..") || path.isAbsolute(relative)) return null;
    return relative.split(path.sep)[0] || null;
  }

  /**
   * The path of `expected.name` inside the snapshot's mounted image. An image this process has not verified, or whose
   * file changed since (its inode, size, mtime or ctime), is read whole against its checksums and checked to be
   * exactly one regular file of the expected name and size first, and mounted if it is not: a damaged or foreign
   * image is refused before any guest sees a byte. Call under the snapshot's lock.
   */
  async open(snapshotId: string, expected: ExpectedImage): Promise<string> {
    const { name } = expected;
    this.forgetIdle(snapshotId);
    const mountPoint = this.mountPoint(snapshotId);
    const image = this.store.file(snapshotId, `${name}${COMPRESSED_SUFFIX}`);
    const mounted = await isMounted(mountPoint);
    const identity = await imageIdentity(image);
    if (mounted && sameImage(identity, this.verified.get(snapshotId))) return path.join(mountPoint, name);
    const started = performance.now();
    try {
      await verifyImage(image);
      await checkImageStructure(image, expected);
    } catch (error) {
      if (!(error instanceof ImageIntegrityError)) throw error;
      this.verified.delete(snapshotId);
      if (mounted) await this.releaseLocked(snapshotId); // unless VMs map it: theirs was verified when it was mounted
      throw new ApiError(
        "invalid_state",
        `snapshot ${snapshotId} cannot be used: its compressed memory image failed verification (${error.message}); no guest was started`,
        { cause: error },
      );
    }
    const verifiedMs = performance.now() - started;
    if (!mounted) {
      await mkdir(mountPoint, { recursive: true });
      await this.mount(image, mountPoint);
    }
    if (identity) this.verified.set(snapshotId, identity); // it is: the image was just read
    this.log.info(
      { snapshotId, verifyMs: Math.round(verifiedMs), mountMs: Math.round(performance.now() - started - verifiedMs) },
      mounted ? "snapshot image verified again" : "snapshot image verified and mounted",
    );
    return path.join(mountPoint, name);
  }

  /** Mounts with `nosymfollow` where the kernel has it (an image holds no links anyway: checkImageStructure). */
  private async mount(image: string, mountPoint: string): Promise<void> {
    const options = this.symlinksRefusable ? `${MOUNT_OPTIONS},${NO_SYMLINKS}` : MOUNT_OPTIONS;
    try {
      await run("mount", ["-t", "squashfs", "-o", options, image, mountPoint]);
    } catch (error) {
      if (!this.symlinksRefusable || !(await this.kernelLacksNoSymfollow(image, mountPoint))) throw error;
      this.log.warn("this kernel has no nosymfollow mount option: images are mounted without it");
    }
  }

  /** Tries the mount without `nosymfollow`: true if that worked, so the kernel is the one that lacks it. */
  private async kernelLacksNoSymfollow(image: string, mountPoint: string): Promise<boolean> {
    try {
      await run("mount", ["-t", "squashfs", "-o", MOUNT_OPTIONS, image, mountPoint]);
    } catch {
      return false;
    }
    this.symlinksRefusable = false;
    return true;
  }

  /**
   * A VM mapping the snapshot's image stopped (or loaded all it needed from it): the mount is kept for the next
   * fork until IMAGE_MOUNT_IDLE_MS passes, and unmounted now if the snapshot is deleted or nothing is to be kept.
   */
  async idleAfterUse(snapshotId: string): Promise<void> {
    const { idleMs, maxIdle } = this.options;
    if (idleMs === 0 || maxIdle === 0) return this.release(snapshotId);
    await this.store.withLock(snapshotId, async () => {
      if (!existsSync(this.store.dir(snapshotId))) return this.releaseLocked(snapshotId); // deleted: the last VM is gone
      if (!(await isMounted(this.mountPoint(snapshotId)))) return;
      this.forgetIdle(snapshotId);
      const timer = setTimeout(() => void this.expire(snapshotId), idleMs);
      timer.unref();
      this.idle.set(snapshotId, timer);
    });
    while (this.idle.size > maxIdle) await this.expire(this.idle.keys().next().value!);
  }

  /** Does a VM map a file in the snapshot's mounted image now? */
  async inUse(snapshotId: string): Promise<boolean> {
    const mountPoint = this.mountPoint(snapshotId);
    return (await isMounted(mountPoint)) && (await isMappedByAnyProcess(mountPoint));
  }

  /** Unmounts the snapshot's image unless a VM still maps it. */
  release(snapshotId: string): Promise<void> {
    return this.store.withLock(snapshotId, () => this.releaseLocked(snapshotId));
  }

  /** release() for a caller that holds the snapshot's lock already. */
  async releaseLocked(snapshotId: string): Promise<void> {
    this.forgetIdle(snapshotId);
    const mountPoint = this.mountPoint(snapshotId);
    if (await isMounted(mountPoint)) {
      if (!(await this.unmount(mountPoint))) return; // a VM still maps it: its stop releases it
      this.log.info({ snapshotId }, "snapshot image unmounted");
    }
    this.verified.delete(snapshotId);
    await rmdir(mountPoint).catch(() => {});
  }

  /**
   * Unmounts unless busy. A QEMU that has just exited may still hold the file for a moment (the kernel closes an
   * exiting process's last files asynchronously), so a busy mount no live process maps is tried again.
   */
  private async unmount(mountPoint: string): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      try {
        await run("umount", [mountPoint]);
        return true;
      } catch (error) {
        if (!/busy/i.test((error as Error).message)) throw error;
        if (attempt >= UNMOUNT_RETRIES || (await isMappedByAnyProcess(mountPoint))) return false;
        await sleep(UNMOUNT_RETRY_MS);
      }
    }
  }

  /** Releases every mount no VM uses any more (VMs that died while the worker was down leave theirs behind). */
  async sweep(): Promise<void> {
    for (const snapshotId of await readdir(this.root).catch(() => [] as string[])) await this.expire(snapshotId);
  }

  /** At shutdown: the kept mounts go (a mount a VM still maps stays, found again at the next start). */
  async close(): Promise<void> {
    for (const snapshotId of [...this.idle.keys()]) await this.expire(snapshotId);
  }

  private async expire(snapshotId: string): Promise<void> {
    this.forgetIdle(snapshotId);
    await this.release(snapshotId).catch((error: Error) =>
      this.log.warn({ snapshotId, err: error.message }, "snapshot image not released"),
    );
  }

  private forgetIdle(snapshotId: string): void {
    clearTimeout(this.idle.get(snapshotId));
    this.idle.delete(snapshotId);
  }
}

async function imageIdentity(image: string): Promise<ImageIdentity | undefined> {
  const stats = await stat(image, { bigint: true }).catch(() => undefined);
  return stats && { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeNs: stats.mtimeNs, ctimeNs: stats.ctimeNs };
}

function sameImage(current: ImageIdentity | undefined, verified: ImageIdentity | undefined): boolean {
  if (!current || !verified) return false;
  return (Object.keys(verified) as (keyof ImageIdentity)[]).every((key) => current[key] === verified[key]);
}

/** Whether a running process maps a file under `mountPoint` (as every QEMU using the image does). */
async function isMappedByAnyProcess(mountPoint: string): Promise<boolean> {
  const prefix = `${mountPoint}/`;
  for await (const { maps } of processMaps()) if (maps.includes(prefix)) return true;
  return false;
}

/** Whether /proc/mounts lists `mountPoint` (its fields escape space, tab, newline and backslash in octal). */
async function isMounted(mountPoint: string): Promise<boolean> {
  const mounts = await readFile("/proc/mounts", "utf8");
  return mounts.split("\n").some((line) => {
    const target = line.split(" ")[1];
    return target !== undefined && unescapeMountField(target) === mountPoint;
  });
}

function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}
