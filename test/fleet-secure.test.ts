// A three-host fleet as a security review would run it (docs/security.md): every process on a least-privilege Redis
// user confined to its prefix, the fleet secret from a file (never in Redis), payload servers on HTTPS verified
// against a throwaway CA, tokens bound to each request. A snapshot on one host forks on another through a pull.
import { readFileSync } from "node:fs";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { snapfleetAclRule } from "../shared/redis-acl.ts";
import { entryCommand } from "../supervisor/processes.ts";
import { consoleTicks, waitForTick } from "./helpers/console.ts";
import { jsonOf, tempDir } from "./helpers/fixtures.ts";
import { type Fleet, startFleet } from "./helpers/fleet.ts";
import { startProcess } from "./helpers/processes.ts";
import { startTestRedis, type TestRedis } from "./helpers/redis-server.ts";
import { makeTestCertificates } from "./helpers/tls.ts";

const USER = "snapfleet";
const PASSWORD = "a-long-password-for-the-test-user";

let redisServer: TestRedis;
let admin: Redis;
let fleet: Fleet;
const certificates = tempDir("fleet-tls");

beforeAll(async () => {
  redisServer = await startTestRedis();
  admin = new Redis(redisServer.url);
  const prefix = "fleet-secure";
  await admin.call("ACL", "SETUSER", ...snapfleetAclRule(USER, PASSWORD, prefix));
  await admin.call("ACL", "LOG", "RESET");
  fleet = await startFleet(3, {
    redisUrl: `redis://${USER}:${PASSWORD}@127.0.0.1:${redisServer.port}`,
    prefix,
    secretInFile: true,
    tls: makeTestCertificates(certificates.dir),
  });
}, 300_000);

afterAll(async () => {
  await fleet?.stop();
  admin?.disconnect();
  await redisServer?.stop();
  certificates.remove();
});

const post = async (pathAndQuery: string, json: unknown) => {
  const response = await fleet.api(pathAndQuery, { json });
  return { status: response.status, body: await jsonOf(response) };
};

/** Every string stored under any key, whatever its type. */
async function everythingInRedis(): Promise<string> {
  const texts: string[] = [];
  for (const key of (await admin.keys("*")) as string[]) {
    texts.push(key);
    const type = await admin.type(key);
    if (type === "string") texts.push((await admin.get(key)) ?? "");
    if (type === "hash") texts.push(JSON.stringify(await admin.hgetall(key)));
    if (type === "list") texts.push(JSON.stringify(await admin.lrange(key, 0, -1)));
    if (type === "set") texts.push(JSON.stringify(await admin.smembers(key)));
    if (type === "zset") texts.push(JSON.stringify(await admin.zrange(key, 0, -1)));
    if (type === "stream") texts.push(JSON.stringify(await admin.xrange(key, "-", "+")));
  }
  return texts.join("\n");
}

describe("a fleet of three hosts behind its trust boundaries", () => {
  it("lists every host online through presence leases, each payload server on HTTPS", async () => {
    const hosts: Array<{ id: string; online: boolean; payload_url: string }> = await jsonOf(await fleet.api("/hosts"));
    expect(hosts.map((host) => [host.id, host.online])).toEqual([
      ["fleet-a", true],
      ["fleet-b", true],
      ["fleet-c", true],
    ]);
    for (const host of hosts) expect(host.payload_url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it("forks a snapshot of one host on another: the pull goes over HTTPS with request-bound tokens", async () => {
    const source = await post("/instances", { name: "secure-src", size: "256MB", host_id: "fleet-a" });
    expect(source.status, JSON.stringify(source.body)).toBe(201);
    await waitForTick(fleet.api, "secure-src", 2);
    const snapshot = await post("/instances/secure-src/snapshots", { kind: "Standby" });
    expect(snapshot.status, JSON.stringify(snapshot.body)).toBe(201);
    const atSnapshot = Math.max(...(await consoleTicks(fleet.api, "secure-src")));

    const fork = await post(`/snapshots/${snapshot.body.id}/fork`, { name: "secure-fork", host_id: "fleet-b" });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
    expect(fork.body).toMatchObject({ host_id: "fleet-b", state: "Running" });
    expect(await waitForTick(fleet.api, "secure-fork", atSnapshot + 1)).toBeGreaterThan(atSnapshot);
    const pulled = fleet
      .host("fleet-b")
      .capture.output()
      .split("\n")
      .find((line) => line.includes("replica pulled"));
    expect(JSON.parse(pulled!).pulledBytes).toBeGreaterThan(0);

    // The API streams an export from the owner's HTTPS payload server too.
    const exported = await fleet.api(`/snapshots/${snapshot.body.id}/export`);
    expect(exported.status).toBe(200);
    expect((await exported.arrayBuffer()).byteLength).toBeGreaterThan(0);
  }, 300_000);

  it("keeps the fleet secret out of Redis: nothing there names it or holds it", async () => {
    const secret = readFileSync(fleet.secretFile, "utf8").trim();
    const stored = await everythingInRedis();
    expect(stored.length).toBeGreaterThan(0);
    expect(stored).not.toContain(secret);
    expect(stored).not.toContain("fleet-secret");
  });

  it("a host that brings no fleet secret is refused at boot while others are online", async () => {
    const data = tempDir("fleet-secretless");
    try {
      const stray = startProcess("capture-stray", entryCommand("workers/host/main.ts"), {
        REDIS_URL: `redis://${USER}:${PASSWORD}@127.0.0.1:${redisServer.port}`,
        REDIS_PREFIX: "fleet-secure",
        DATA_DIR: data.dir,
        HOST_ID: "fleet-stray",
        QEMU_ACCEL: "tcg",
        LOG_LEVEL: "info",
      });
      expect(await stray.exited).toBe(78);
      expect(stray.output()).toContain("set the same FLEET_SECRET or FLEET_SECRET_FILE");
    } finally {
      data.remove();
    }
  }, 60_000);

  it("ran on a user Redis denied nothing, and that user cannot administer Redis or leave its prefix", async () => {
    expect(await admin.call("ACL", "LOG")).toEqual([]);
    const user = new Redis(`redis://${USER}:${PASSWORD}@127.0.0.1:${redisServer.port}`);
    try {
      for (const command of [
        ["CLIENT", "LIST"],
        ["CONFIG", "GET", "*"],
        ["KEYS", "*"],
        ["FLUSHALL"],
        ["GET", "other-prefix:anything"],
        ["ACL", "LIST"],
      ]) {
        await expect(user.call(command[0]!, ...command.slice(1)), command.join(" ")).rejects.toThrow(/NOPERM/);
      }
    } finally {
      user.disconnect();
    }
  });
});
