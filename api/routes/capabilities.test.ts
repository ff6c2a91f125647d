// GET /capabilities through the official SDK against the in-process app, with hosts announced in the test Redis.
import type Hypeman from "@onkernel/hypeman";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LZ4_LEVELS, ZSTD_LEVELS } from "../../shared/codec/options.ts";
import { connectRedis, waitForRedisReady } from "../../shared/redis.ts";
import { createTestApp, sdkClient, type TestApp } from "../../test/helpers/app.ts";
import { announceFakeHost } from "../../test/helpers/hosts.ts";

let t: TestApp;
let client: Hypeman;

beforeAll(async () => {
  t = await createTestApp();
  client = sdkClient(t);
});
afterAll(() => t.close());

describe("GET /capabilities", () => {
  it("reports qemu unavailable while no host is online", async () => {
    const capabilities = await client.capabilities.get();
    expect(capabilities.default_runtime).toEqual({ name: "qemu", available: false });
    expect(capabilities.runtimes).toEqual([
      { name: "qemu", available: false, features: ["snapshots", "standby", "fork", "pause"] },
    ]);
  });

  it("reports what online hosts run, and the codec's level table", async () => {
    const redis = connectRedis(t.redisUrl, "producer", 1_000);
    await waitForRedisReady(redis, 5_000);
    await announceFakeHost(redis, t.prefix, "h1", { online: true });
    const old = new Date(Date.now() - 3_600_000).toISOString();
    await announceFakeHost(redis, t.prefix, "h0", { hypervisors: [], lastSeenAt: old, pid: 2 });

    const capabilities = await client.capabilities.get();
    expect(capabilities.default_runtime).toEqual({ name: "qemu", available: true });
    expect(capabilities.runtimes[0]).toMatchObject({ name: "qemu", available: true });
    expect(capabilities.server.api_version).toBe("0.3.0");
    expect(capabilities.host.os).toBe("linux");
    expect(capabilities.network.model).toBe("bridge");
    const extension = capabilities as unknown as {
      snapshots: { kinds: string[]; compression: unknown[] };
      hosts: Array<{ id: string; online: boolean }>;
    };
    expect(extension.snapshots.kinds).toEqual(["Standby", "Stopped"]);
    expect(extension.snapshots.compression).toEqual([
      { name: "zstd", min_level: ZSTD_LEVELS.min, max_level: ZSTD_LEVELS.max, default_level: ZSTD_LEVELS.default },
      { name: "lz4", min_level: LZ4_LEVELS.min, max_level: LZ4_LEVELS.max, default_level: LZ4_LEVELS.default },
    ]);
    expect(extension.hosts.map((host) => [host.id, host.online])).toEqual([
      ["h0", false],
      ["h1", true],
    ]);
    redis.disconnect();
  });
});
