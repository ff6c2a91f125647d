// Image mounts on real loop mounts (as root): a mount no VM uses is kept for IMAGE_MOUNT_IDLE_MS with its image
// verified once, goes at expiry, beyond IMAGE_MOUNTS_IDLE_MAX, at once for a deleted snapshot and at close, and an
// image whose file changed while kept is read against its checksums again (refused and unmounted when damaged).
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, utimesSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import { pino } from "pino";
import { afterAll, expect, it } from "vitest";
import { ApiError } from "../../shared/errors.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import { SnapshotStore } from "../../shared/snapshots/store.ts";
import { checksumsFile } from "../../shared/squashfs/checksums.ts";
import { writeSquashfsImage } from "../../shared/squashfs/writer.ts";
import { tempDir, testRedisUrl, uniquePrefix, waitFor } from "../../test/helpers/fixtures.ts";
import { describeWith } from "../../test/helpers/needs.ts";
import { unmountUnder } from "../../test/helpers/service.ts";
import { ImageMounts, type ImageMountsOptions } from "./image-mounts.ts";

const MIB = 1 << 20;
/** A short IMAGE_MOUNT_IDLE_MS for the expiry case. */
const IDLE_MS = 500;
const data = tempDir("image-mounts");
const redis = connectRedis(testRedisUrl(), "worker", 1_000);
const store = new SnapshotStore(data.dir, redis, uniquePrefix("mounts"));
const logLines: string[] = [];
const log = pino({ level: "info" }, { write: (line: string) => logLines.push(line) });

afterAll(async () => {
  unmountUnder(data.dir);
  data.remove();
  await closeRedis(redis);
});

/** A snapshot directory holding a compressed memory.raw (2 MiB of data in a 4 MiB file) and its checksums. */
async function compressedSnapshot(): Promise<{ id: string; raw: string; image: string }> {
  const id = uniquePrefix("snap");
  mkdirSync(store.dir(id), { recursive: true });
  const raw = path.join(data.dir, `${id}.raw`);
  const handle = await open(raw, "w");
  await handle.truncate(4 * MIB);
  await handle.write(randomBytes(MIB), 0, MIB, 0);
  await handle.write(Buffer.alloc(MIB, "tick "), 0, MIB, 2 * MIB);
  await handle.close();
  const image = store.file(id, "memory.raw.sqfs");
  await writeSquashfsImage(raw, image, { algorithm: "zstd", name: "memory.raw" });
  return { id, raw, image };
}

const MEMORY_IMAGE = { name: "memory.raw", size: 4 * MIB };
const mounts = (options: ImageMountsOptions) => new ImageMounts(store, log, options);
const isMounted = (id: string) =>
  readFileSync("/proc/mounts", "utf8").includes(` ${path.join(data.dir, "mounts", id)} `);
const verifications = (id: string) => logLines.filter((line) => line.includes(id) && line.includes("verified")).length;
const unmounted = (id: string) =>
  waitFor(async () => (isMounted(id) ? undefined : true), {
    timeoutMs: 5_000,
    intervalMs: 20,
    what: `${id} unmounted`,
  });

describeWith("root", "image mounts", () => {
  it("keeps a mount no VM uses for the idle time, verified once, and unmounts it when the time is up", async () => {
    const { id, raw } = await compressedSnapshot();
    const kept = mounts({ idleMs: IDLE_MS, maxIdle: 4 });
    const file = await kept.open(id, MEMORY_IMAGE);
    expect(readFileSync(file).equals(readFileSync(raw))).toBe(true);
    expect(verifications(id)).toBe(1);

    await kept.idleAfterUse(id);
    expect(isMounted(id)).toBe(true);
    expect(await kept.open(id, MEMORY_IMAGE)).toBe(file); // warm: neither verified nor mounted again
    expect(verifications(id)).toBe(1);
    // In use again since that open, so its timer is gone. A marker snapshot idled now expires after the one the open
    // should have cleared (same delay, set later); that expiry, had it run, holds the snapshot's lock until done.
    const marker = await compressedSnapshot();
    await kept.open(marker.id, MEMORY_IMAGE);
    await kept.idleAfterUse(marker.id);
    await unmounted(marker.id);
    await store.withLock(id, async () => {});
    expect(isMounted(id)).toBe(true);

    await kept.idleAfterUse(id);
    const idleFrom = performance.now();
    await unmounted(id);
    // The idle time is the behaviour: never unmounted before it (timers do not fire early; 10% for clock rounding).
    expect(performance.now() - idleFrom).toBeGreaterThanOrEqual(IDLE_MS * 0.9);
    await kept.open(id, MEMORY_IMAGE); // cold again
    expect(verifications(id)).toBe(2);
    await kept.idleAfterUse(id);
    await kept.close();
    expect(isMounted(id)).toBe(false);
  });

  it("unmounts beyond the count kept, at once for a deleted snapshot, and at close", async () => {
    const [first, second, deleted] = [
      await compressedSnapshot(),
      await compressedSnapshot(),
      await compressedSnapshot(),
    ];
    const kept = mounts({ idleMs: 60_000, maxIdle: 1 });
    for (const { id } of [first, second, deleted]) await kept.open(id, MEMORY_IMAGE);
    await kept.idleAfterUse(first.id);
    await kept.idleAfterUse(second.id);
    expect([isMounted(first.id), isMounted(second.id)]).toEqual([false, true]); // the least recently released went

    rmSync(store.dir(deleted.id), { recursive: true });
    await kept.idleAfterUse(deleted.id);
    expect(isMounted(deleted.id)).toBe(false);

    await kept.close();
    expect(isMounted(second.id)).toBe(false);
  });

  it("reads a kept image whose file changed against its checksums again: refused and unmounted when damaged", async () => {
    const { id, image } = await compressedSnapshot();
    const kept = mounts({ idleMs: 60_000, maxIdle: 4 });
    await kept.open(id, MEMORY_IMAGE);
    await kept.idleAfterUse(id);

    const later = new Date(Date.now() + 5_000);
    utimesSync(image, later, later); // changed, not damaged: verified again, the mount is used as it is
    await kept.open(id, MEMORY_IMAGE);
    expect(verifications(id)).toBe(2);
    expect(logLines.at(-1)).toContain("snapshot image verified again");
    await kept.idleAfterUse(id);

    const [, [blockOffset, blockLength]] = JSON.parse(readFileSync(checksumsFile(image), "utf8")).pieces;
    const damaged = await open(image, "r+");
    const byte = Buffer.alloc(1);
    await damaged.read(byte, 0, 1, blockOffset + Math.floor(blockLength / 2));
    await damaged.write(Buffer.from([byte[0]! ^ 0x55]), 0, 1, blockOffset + Math.floor(blockLength / 2));
    await damaged.close();
    const refused = await kept.open(id, MEMORY_IMAGE).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused).toMatchObject({ code: "invalid_state" });
    expect((refused as Error).message).toMatch(/compressed memory image failed verification .* no guest was started/);
    expect(isMounted(id)).toBe(false);
    await kept.close();
  });
});
