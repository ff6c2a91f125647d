// POST /snapshots/import streams the client's body on to the host's payload server. When the host goes away in the
// middle of it (its process died, its connection dropped), the client must still get a JSON answer (503) on its own
// connection, not a socket the API destroyed under it: a real HTTP server in front of the app, and a host that
// reads the start of the upload and then drops the connection.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type ServerType, serve } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { announceHost, renewHostLease } from "../../shared/hosts.ts";
import { connectRedis, waitForRedisReady } from "../../shared/redis.ts";
import { createTestApp, TEST_API_KEY, type TestApp } from "../../test/helpers/app.ts";
import { postArchive } from "../../test/helpers/archives.ts";
import { freePort } from "../../test/helpers/fixtures.ts";

let t: TestApp;
let api: ServerType;
let apiUrl: string;
let host: Server;
let uploadsCut = 0;

beforeAll(async () => {
  t = await createTestApp();
  host = createServer((request) => {
    request.once("data", () => {
      uploadsCut++;
      request.socket.destroy(); // the host dies with the upload half read
    });
  });
  await new Promise<void>((resolve) => host.listen(0, "127.0.0.1", resolve));
  const redis = connectRedis(t.redisUrl, "producer", 1_000);
  await waitForRedisReady(redis, 5_000);
  const now = new Date().toISOString();
  await announceHost(redis, t.prefix, {
    id: "host-dies",
    hypervisors: ["qemu"],
    started_at: now,
    last_seen_at: now,
    pid: 1,
    payload_url: `http://127.0.0.1:${(host.address() as AddressInfo).port}`,
  });
  await renewHostLease(redis, t.prefix, "host-dies", 600_000);
  redis.disconnect();
  const port = await freePort();
  api = serve({ fetch: t.app.fetch, port, hostname: "127.0.0.1" });
  apiUrl = `http://127.0.0.1:${port}`;
});
afterAll(async () => {
  api?.close();
  host?.close();
  await t?.close();
});

describe("an import whose host goes away mid-upload", () => {
  it("answers a fetch client 503 too: its upload is read to the end, not reset under it (undici fails on EPIPE)", async () => {
    const response = await fetch(`${apiUrl}/snapshots/import?host_id=host-dies`, {
      method: "POST",
      headers: { authorization: `Bearer ${TEST_API_KEY}`, "content-type": "application/x-tar" },
      body: Buffer.alloc(32 << 20, 7),
    });
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ code: "unavailable" });
  });

  it("answers the client 503 unavailable on its connection, however large the body", async () => {
    for (const megabytes of [1, 32]) {
      const answer = await postArchive(
        `${apiUrl}/snapshots/import?host_id=host-dies`,
        TEST_API_KEY,
        Buffer.alloc(megabytes << 20, 7),
      );
      expect(answer.status, answer.text).toBe(503);
      expect(JSON.parse(answer.text)).toMatchObject({ code: "unavailable" });
    }
    expect(uploadsCut).toBe(3);
  });
});
