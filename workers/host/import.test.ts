// The host's import on a real snapshot store, fed archives cut at the places a truncated upload ends: each is a 400
// that frees its slot and leaves no staging behind, however the body's end falls against the entries.
import { readdirSync } from "node:fs";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { EventStream } from "../../shared/events/stream.ts";
import { newId } from "../../shared/ids.ts";
import { createLogger } from "../../shared/logger.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import { SnapshotStore } from "../../shared/snapshots/store.ts";
import { archiveOf } from "../../test/helpers/archives.ts";
import { tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { ImportSlots, importSnapshotArchive } from "./import.ts";

const dir = tempDir("import");
const redis = connectRedis(testRedisUrl(), "producer", 2_000);
const prefix = uniquePrefix("import");
const slots = new ImportSlots(1);
const deps = {
  hostId: "host-import-test",
  slots,
  maxBytes: 1024 ** 3,
  store: new SnapshotStore(dir.dir, redis, prefix),
  events: new EventStream(redis, prefix),
  log: createLogger("import-test", "silent"),
  queueBackgroundWork: async () => {},
};

afterAll(async () => {
  await closeRedis(redis);
  dir.remove();
});

const TAR_BLOCK = 512;

describe("a truncated archive", () => {
  it("is refused, never awaited, when the body ends right after an entry's header", async () => {
    // Three entries as an export has them; the body stops right after the third header, at no byte of its data.
    const archive = await archiveOf([
      { name: "snapshot.json", data: Buffer.alloc(1407, 0x7b) },
      { name: "disk.raw.sfc", data: Buffer.alloc(814, 2) },
      { name: "memory.raw.sqfs", data: Buffer.alloc(200_000, 4) },
    ]);
    const padded = (size: number) => Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
    const thirdHeaderEnd = TAR_BLOCK + padded(1407) + TAR_BLOCK + padded(814) + TAR_BLOCK;
    // Cut at the third header's end and around it, each in one chunk (a socket that delivered it all at once).
    for (const cut of [thirdHeaderEnd - TAR_BLOCK, thirdHeaderEnd - 1, thirdHeaderEnd, thirdHeaderEnd + 1]) {
      const attempt = importSnapshotArchive(deps, newId(), Readable.from([archive.subarray(0, cut)]));
      await expect(attempt, `cut at ${cut}`).rejects.toMatchObject({ code: "invalid_request" });
      // The slot is free again (a second import is not a 503) and no staging directory is left.
      expect(() => slots.take()()).not.toThrow();
      expect(readdirSync(deps.store.root).filter((name) => name.startsWith(".import-"))).toEqual([]);
    }
  }, 30_000);
});
