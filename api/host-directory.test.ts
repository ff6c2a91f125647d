import { afterAll, describe, expect, it } from "vitest";
import { releaseHostLease } from "../shared/hosts.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../shared/redis.ts";
import { testRedisUrl, uniquePrefix } from "../test/helpers/fixtures.ts";
import { announceFakeHost } from "../test/helpers/hosts.ts";
import { HostDirectoryView } from "./host-directory.ts";

const redis = connectRedis(testRedisUrl(), "producer", 2_000);
afterAll(() => closeRedis(redis));

describe("host directory view", () => {
  it("follows hosts going offline within a refresh, and never takes an older listing over a newer one", async () => {
    const prefix = uniquePrefix("hostdir");
    await waitForRedisReady(redis, 5_000);
    await announceFakeHost(redis, prefix, "h1", { online: true });
    const view = new HostDirectoryView({ redis, prefix, commandTimeoutMs: 2_000 });
    expect(view.lookup()).toBeUndefined(); // nothing asked yet: reads go without the field
    view.start();
    try {
      await expect.poll(() => view.lookup()?.("h1")?.online, { timeout: 5_000 }).toBe(true);
      await releaseHostLease(redis, prefix, "h1"); // the capture worker stops
      await expect.poll(() => view.lookup()?.("h1")?.online, { timeout: 5_000 }).toBe(false);

      const listing = view.lookup()!("h1")!;
      view.update([{ ...listing, online: true, offline_reason: null }], Date.now() - 60_000);
      expect(view.lookup()!("h1")!.online).toBe(false); // an answer to an older question is dropped
    } finally {
      view.stop();
    }
  });
});
