import { afterAll, describe, expect, it } from "vitest";
import { testRedisUrl, uniquePrefix } from "../test/helpers/fixtures.ts";
import { announceHost, listHosts, renewHostLease } from "./hosts.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "./redis.ts";

const redis = connectRedis(testRedisUrl(), "worker", 2_000);
afterAll(() => closeRedis(redis));

describe("host presence leases", () => {
  it("a host is online while its lease lives and offline once it runs out (a killed worker renews nothing)", async () => {
    await waitForRedisReady(redis, 5_000);
    const prefix = uniquePrefix("lease");
    const now = new Date().toISOString();
    await announceHost(redis, prefix, { id: "h1", hypervisors: ["qemu"], started_at: now, last_seen_at: now, pid: 1 });
    expect((await listHosts(redis, prefix))[0]).toMatchObject({ online: false });
    await renewHostLease(redis, prefix, "h1", 300);
    expect((await listHosts(redis, prefix))[0]).toMatchObject({ id: "h1", online: true, offline_reason: null });
    await expect.poll(async () => (await listHosts(redis, prefix))[0]!.online, { timeout: 5_000 }).toBe(false);
    expect((await listHosts(redis, prefix))[0]!.offline_reason).toContain("not connected");
  });
});
