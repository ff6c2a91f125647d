// Endpoint changes against a Redis that accepts connections but never answers a command: the change fails with 503,
// SQLite is left as it was, and other requests read SQLite meanwhile (no transaction waits on Redis).
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Db } from "../../api/db/database.ts";
import { newId } from "../../shared/ids.ts";
import { createTestApp, type TestApp } from "../../test/helpers/app.ts";
import { jsonOf } from "../../test/helpers/fixtures.ts";

interface SilentRedis {
  server: Server;
  url: string;
  /** The commands received beyond the connection handshake, in order. */
  received: string[];
  /** Answers every command held so far, and every later one, with an error. */
  failHeld(): void;
}

/** Answers what ioredis sends on connect (INFO, CLIENT SETNAME/SETINFO) and holds the other commands unanswered. */
async function startSilentRedis(): Promise<SilentRedis> {
  const received: string[] = [];
  const held: Array<() => void> = [];
  let failing = false;
  const server = createServer((socket) => {
    const fail = () => socket.write("-ERR failed by the test\r\n");
    socket.on("data", (chunk) => {
      const words = chunk.toString("latin1").split("\r\n");
      for (let index = 0; index < words.length; index++) {
        if (!words[index]!.startsWith("*")) continue;
        const command = (words[index + 2] ?? "").toLowerCase();
        const subcommand = (words[index + 4] ?? "").toLowerCase();
        if (command === "info") {
          const info = "# Server\r\nredis_version:7.0.0\r\nloading:0\r\n";
          socket.write(`$${Buffer.byteLength(info)}\r\n${info}\r\n`);
        } else if (command === "client" && subcommand !== "list") socket.write("+OK\r\n");
        else {
          received.push(command);
          if (failing) fail();
          else held.push(fail);
        }
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return {
    server,
    url: `redis://127.0.0.1:${address.port}`,
    received,
    failHeld() {
      failing = true;
      for (const answer of held.splice(0)) answer();
    },
  };
}

async function insertEndpoint(db: Db, id: string): Promise<void> {
  const now = new Date().toISOString();
  await db
    .insertInto("webhook_endpoints")
    .values({
      id,
      url: "http://127.0.0.1:9/hooks",
      description: "before",
      event_types: JSON.stringify(["*"]),
      enabled: 1,
      disabled_reason: null,
      sealed_secrets: "unused",
      created_at: now,
      updated_at: now,
      last_success_at: null,
      failing_since: null,
    })
    .execute();
}

describe("webhook endpoint changes while Redis does not answer", () => {
  // A command timeout longer than any test: the held change settles only when the test fails its Redis call.
  let holdingApp: TestApp;
  let holding: SilentRedis;
  // The default command timeout: calls to a Redis that never answers fail by timing out.
  let t: TestApp;
  let silent: SilentRedis;
  const heldId = newId();
  const id = newId();

  beforeAll(async () => {
    [holding, silent] = await Promise.all([startSilentRedis(), startSilentRedis()]);
    [holdingApp, t] = await Promise.all([
      createTestApp({ redisUrl: holding.url, webhookAllowedHosts: ["127.0.0.1"], redisCommandTimeoutMs: 600_000 }),
      createTestApp({ redisUrl: silent.url, webhookAllowedHosts: ["127.0.0.1"] }),
    ]);
    expect(await holdingApp.redisReady()).toBe(true);
    expect(await t.redisReady()).toBe(true);
    await insertEndpoint(holdingApp.db, heldId);
    await insertEndpoint(t.db, id);
  });
  afterAll(async () => {
    holding.failHeld();
    await Promise.all([holdingApp.close(), t.close()]);
    holding.server.close();
    silent.server.close();
  });

  it("keeps serving reads during the Redis call, then answers 503 and leaves the row unchanged", async () => {
    let patchSettled = false;
    const patch = holdingApp
      .request(`/webhooks/${heldId}`, { method: "PATCH", json: { description: "after", enabled: false } })
      .finally(() => {
        patchSettled = true;
      });
    // The mirror write is waiting on Redis (the API's host directory read, HGETALL, waits there too).
    const directoryReads = new Set(["hgetall"]);
    await expect
      .poll(() => holding.received.filter((command) => !directoryReads.has(command)).length)
      .toBeGreaterThan(0);
    const read = await holdingApp.request(`/webhooks/${heldId}`);
    expect(read.status).toBe(200);
    expect(patchSettled).toBe(false); // its Redis call is held: the read did not wait for it

    holding.failHeld();
    const response = await patch;
    expect(response.status).toBe(503);
    expect((await jsonOf(response)).code).toBe("unavailable");
    const after = await jsonOf(await holdingApp.request(`/webhooks/${heldId}`));
    expect(after).toMatchObject({ description: "before", enabled: true });
  });

  it("answers 503 to a create and a delete and changes nothing", async () => {
    const created = await t.request("/webhooks", { method: "POST", json: { url: "http://127.0.0.1:9/other" } });
    expect(created.status).toBe(503);
    const deleted = await t.request(`/webhooks/${id}`, { method: "DELETE" });
    expect(deleted.status).toBe(503);
    const listed = await jsonOf(await t.request("/webhooks"));
    expect(listed.map((endpoint: { id: string }) => endpoint.id)).toEqual([id]);
  });
});
