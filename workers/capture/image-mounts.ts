// Read-only mounts of compressed snapshot images (`<DATA_DIR>/mounts/<snapshot id>/`), one per snapshot, shared
// by every VM that maps its memory file: the kernel decompresses a block when a guest first touches it and keeps
// it in the page cache for all of them. The kernel's own count of open and mapped files is the reference count:
// `umount` succeeds only when no VM maps the image, so a release is always safe to try. Mounts outlive the worker
// and are found again in /proc/mounts.
import { mkdir, readdir, readFile, rmdir } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { ApiError } from "../../shared/errors.ts";
import { run } from "../../shared/hypervisor/exec.ts";
import type { Logger } from "../../shared/logger.ts";
import { COMPRESSED_SUFFIX, type SnapshotStore } from "../../shared/snapshots/store.ts";
import { ImageIntegrityError, verifyImage } from "../../shared/squashfs/checksums.ts";

const MOUNTS_DIR = "mounts";
const UNMOUNT_RETRIES = 20;
const UNMOUNT_RETRY_MS = 50;

export class ImageMounts {
  constructor(
    private readonly store: SnapshotStore,
    private readonly log: Logger,
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
   * The path of `name` inside the snapshot's mounted image. The first use verifies every checksum of the image and
   * mounts it; a damaged image is refused before any guest sees a byte. Call under the snapshot's lock.
   */
  async open(snapshotId: string, name: string): Promise<string> {
    const mountPoint = this.mountPoint(snapshotId);
    if (!(await isMounted(mountPoint))) {
      const image = this.store.file(snapshotId, `${name}${COMPRESSED_SUFFIX}`);
      const started = performance.now();
      try {
        await verifyImage(image);
      } catch (error) {
        if (!(error instanceof ImageIntegrityError)) throw error;
        throw new ApiError(
          "invalid_state",
          `snapshot ${snapshotId} cannot be used: its compressed memory image failed verification (${error.message}); no guest was started`,
          { cause: error },
        );
      }
      const verifiedMs = performance.now() - started;
      await mkdir(mountPoint, { recursive: true });
      await run("mount", ["-t", "squashfs", "-o", "loop,ro,nodev,nosuid", image, mountPoint]);
      this.log.info(
        { snapshotId, verifyMs: Math.round(verifiedMs), mountMs: Math.round(performance.now() - started - verifiedMs) },
        "snapshot image verified and mounted",
      );
    }
    return path.join(mountPoint, name);
  }

  /** Unmounts the snapshot's image unless a VM still maps it. */
  release(snapshotId: string): Promise<void> {
    return this.store.withLock(snapshotId, () => this.releaseLocked(snapshotId));
  }

  /** release() for a caller that holds the snapshot's lock already. */
  async releaseLocked(snapshotId: string): Promise<void> {
    const mountPoint = this.mountPoint(snapshotId);
    if (await isMounted(mountPoint)) {
      if (!(await this.unmount(mountPoint))) return; // a VM still maps it: its stop releases it
      this.log.info({ snapshotId }, "snapshot image unmounted");
    }
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
    for (const snapshotId of await readdir(this.root).catch(() => [] as string[])) {
      await this.release(snapshotId).catch((error: Error) =>
        this.log.warn({ snapshotId, err: error.message }, "snapshot image not released"),
      );
    }
  }
}

/** Whether a running process maps a file under `mountPoint` (as every QEMU using the image does). */
async function isMappedByAnyProcess(mountPoint: string): Promise<boolean> {
  const prefix = `${mountPoint}/`;
  for (const pid of (await readdir("/proc")).filter((name) => /^\d+$/.test(name))) {
    const maps = await readFile(`/proc/${pid}/maps`, "utf8").catch(() => "");
    if (maps.includes(prefix)) return true;
  }
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
