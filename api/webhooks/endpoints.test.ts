// Endpoint changes against a Redis that accepts connections but never answers a command: the change fails with 503,
// SQLite is left as it was, and other requests read SQLite meanwhile (no transaction waits on Redis).
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../../shared/ids.ts";
import { createTestApp, type TestApp } from "../../test/helpers/app.ts";
import { jsonOf } from "../../test/helpers/fixtures.ts";

/** Answers what ioredis sends on connect (INFO, CLIENT SETNAME/SETINFO) and nothing else; records the other commands. */
async function startSilentRedis(): Promise<{ server: Server; url: string; received: string[] }> {
  const received: string[] = [];
  const server = createServer((socket) => {
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
        else received.push(command);
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return { server, url: `redis://127.0.0.1:${address.port}`, received };
}

describe("webhook endpoint changes while Redis does not answer", () => {
  let t: TestApp;
  let silent: Awaited<ReturnType<typeof startSilentRedis>>;
  const id = newId();

  beforeAll(async () => {
    silent = await startSilentRedis();
    t = await createTestApp({ redisUrl: silent.url, webhookAllowedHosts: ["127.0.0.1"] });
    expect(await t.redisReady()).toBe(true);
    const now = new Date().toISOString();
    await t.db
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
  });
  afterAll(async () => {
    await t.close();
    silent.server.close();
  });

  it("keeps serving reads during the Redis call, then answers 503 and leaves the row unchanged", async () => {
    let patchSettled = false;
    const patch = t
      .request(`/webhooks/${id}`, { method: "PATCH", json: { description: "after", enabled: false } })
      .finally(() => {
        patchSettled = true;
      });
    // The mirror write is waiting on Redis (the API's host directory read, HGETALL, waits there too).
    const directoryReads = new Set(["hgetall"]);
    await expect
      .poll(() => silent.received.filter((command) => !directoryReads.has(command)).length)
      .toBeGreaterThan(0);
    const read = await t.request(`/webhooks/${id}`);
    expect(read.status).toBe(200);
    expect(patchSettled).toBe(false);

    const response = await patch;
    expect(response.status).toBe(503);
    expect((await jsonOf(response)).code).toBe("unavailable");
    expect(await jsonOf(await t.request(`/webhooks/${id}`))).toMatchObject({ description: "before", enabled: true });
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
