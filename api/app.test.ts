import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config.ts";
import { createTestApp, TEST_API_KEY, type TestApp } from "../test/helpers/app.ts";
import { DEAD_REDIS_URL, DEADLINE_SLACK_MS, jsonOf } from "../test/helpers/fixtures.ts";
import { describeWith } from "../test/helpers/needs.ts";
import { dropTestDatabase } from "../test/helpers/postgres.ts";
import { BOARD_SESSION_TTL_SECONDS, issueBoardSession } from "./middleware/board-session.ts";

describe("HTTP basics", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ bodyLimitBytes: 1024 });
  });
  afterAll(() => t.close());

  it("answers /health without auth when Redis and the database are up", async () => {
    const response = await t.request("/health", { auth: false });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok", checks: { redis: "ok", database: "ok" } });
  });

  it("rejects a request without a token with a 401 envelope", async () => {
    const response = await t.request("/hosts", { auth: false });
    expect(response.status).toBe(401);
    expect(await response.json()).toEqual({ code: "unauthorized", message: expect.stringContaining("bearer") });
  });

  it("rejects a wrong token and a malformed header", async () => {
    expect((await t.request("/hosts", { auth: "wrong-key-0123456789" })).status).toBe(401);
    const basic = await t.request("/hosts", { auth: false, headers: { authorization: "Basic abc" } });
    expect(basic.status).toBe(401);
    expect((await jsonOf(basic)).code).toBe("unauthorized");
  });

  it("accepts the configured key", async () => {
    const response = await t.request("/hosts");
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual([]);
  });

  it("answers an unknown route with a 404 envelope", async () => {
    const response = await t.request("/no/such/route");
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ code: "not_found", message: "no route for GET /no/such/route" });
  });

  it("answers a body over the limit with 413 and the invalid_request code", async () => {
    const response = await t.request("/hosts/some-host/ping", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ padding: "x".repeat(4096) }),
    });
    expect(response.status).toBe(413);
    expect(await response.json()).toEqual({ code: "invalid_request", message: expect.stringContaining("1024") });
  });

  it("answers a bad compression config with the reference's 400 invalid_snapshot_compression", async () => {
    const policy = { compression: { enabled: true, algorithm: "zstd", level: 42 } };
    const response = await t.request("/instances", { method: "POST", json: { name: "vm-1", snapshot_policy: policy } });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      code: "invalid_snapshot_compression",
      message: expect.stringContaining("snapshot_policy.compression.level"),
    });
    const other = await t.request("/instances", { method: "POST", json: { name: "Not A Name" } });
    expect((await jsonOf(other)).code).toBe("invalid_request");
  });

  it("answers an unknown host with 404", async () => {
    const response = await t.request("/hosts/no-such-host/ping", { method: "POST" });
    expect(response.status).toBe(404);
    expect((await jsonOf(response)).code).toBe("not_found");
  });

  it("serves the docs page and its Swagger UI files without auth", async () => {
    const response = await t.request("/docs", { auth: false });
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain('src="/docs/swagger-ui-bundle.js"');
    expect(html).not.toMatch(/src="https?:|href="https?:/);
    const init = await t.request("/docs/init.js", { auth: false });
    expect(await init.text()).toContain('url: "/openapi.json"');
    const bundle = await t.request("/docs/swagger-ui-bundle.js", { auth: false });
    expect([bundle.status, bundle.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
  });

  it("serves the dashboard page and its modules without auth, and no other /ui path", async () => {
    const page = await t.request("/ui", { auth: false });
    expect([page.status, page.headers.get("content-type")]).toEqual([200, "text/html; charset=utf-8"]);
    expect(await page.text()).toContain('src="/ui/app.js"');
    const script = await t.request("/ui/app.js", { auth: false });
    expect([script.status, script.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
    expect((await t.request("/ui/nothing.js", { auth: false })).status).toBe(404);
    expect((await t.request("/ui/queues", { auth: false })).status).toBe(401);
  });

  it("serves the page's SSE parser from the eventsource-parser package, which splits \\r\\n streams too", async () => {
    expect(await (await t.request("/ui/api.js", { auth: false })).text()).toContain(
      'from "./vendor/eventsource-parser/stream.js"',
    );
    for (const file of ["stream.js", "index.js"]) {
      const served = await t.request(`/ui/vendor/eventsource-parser/${file}`, { auth: false });
      expect([served.status, served.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
      const dist = path.dirname(createRequire(import.meta.url).resolve("eventsource-parser"));
      const installed = readFileSync(path.join(dist, file), "utf8");
      expect(await served.text()).toBe(installed);
    }
    const { EventSourceParserStream } = await import("eventsource-parser/stream");
    const body = new Blob(['id: 1\r\ndata: {"a":1}\r\n\r\n: comment\r\nid: 2\r\ndata: {"b":2}\r\n\r\n']).stream();
    const events: Array<{ id?: string; data: string }> = [];
    for await (const event of body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream())) {
      events.push({ id: event.id, data: event.data });
    }
    expect(events).toEqual([
      { id: "1", data: '{"a":1}' },
      { id: "2", data: '{"b":2}' },
    ]);
  });

  it("hands Bull Board a signed, expiring session cookie that works there and nowhere else", async () => {
    expect((await t.request("/ui/session", { method: "POST", auth: false })).status).toBe(401);
    const session = await t.request("/ui/session", { method: "POST" });
    expect(session.status).toBe(204);
    const cookie = session.headers.get("set-cookie")!;
    expect(cookie).toMatch(
      /^snapfleet_board=v1\.\d+\.[\w-]+; Max-Age=28800; Path=\/ui\/queues; HttpOnly; SameSite=Strict$/,
    );
    expect(cookie).not.toContain(TEST_API_KEY);
    const headers = { cookie: cookie.split(";")[0]! };
    const board = await t.request("/ui/queues", { auth: false, headers });
    expect([board.status, await board.text()]).toEqual([200, expect.stringContaining("Snapfleet queues")]);
    expect((await t.request("/hosts", { auth: false, headers })).status).toBe(401);

    const [version, expiry, mac] = cookie.split(";")[0]!.split("=")[1]!.split(".") as [string, string, string];
    const refused = [
      `${TEST_API_KEY}`, // the raw key is no session
      `${version}.${Number(expiry) + 3600}.${mac}`, // its expiry pushed back
      `${version}.${expiry}.${mac.startsWith("A") ? "B" : "A"}${mac.slice(1)}`, // its MAC altered
      issueBoardSession(TEST_API_KEY, Date.now() - (BOARD_SESSION_TTL_SECONDS + 60) * 1000), // expired
      issueBoardSession("a-key-this-service-does-not-have"), // revoked
    ];
    for (const value of refused) {
      const response = await t.request("/ui/queues", { auth: false, headers: { cookie: `snapfleet_board=${value}` } });
      expect(response.status, value).toBe(401);
      expect((await jsonOf(response)).message).toContain("sign in on /ui again");
    }
  });

  it("sends a Content-Security-Policy and forbids framing on /ui, Bull Board and /docs", async () => {
    const session = await t.request("/ui/session", { method: "POST" });
    const cookie = session.headers.get("set-cookie")!.split(";")[0]!;
    for (const [path, headers] of [
      ["/ui", {}],
      ["/ui/app.js", {}],
      ["/ui/queues", { cookie }],
      ["/ui/queues", {}], // refused, and still not frameable
      ["/docs", {}],
      ["/docs/swagger-ui-bundle.js", {}],
    ] as const) {
      const response = await t.request(path, { auth: false, headers });
      const policy = response.headers.get("content-security-policy") ?? "";
      expect(policy, path).toContain("frame-ancestors 'none'");
      expect(policy, path).toContain("script-src 'self'");
      expect(policy, path).not.toContain("unsafe-eval");
      expect(response.headers.get("x-frame-options"), path).toBe("DENY");
    }
  });

  it("lists the snapshot surface beyond the seed endpoints in the OpenAPI document", async () => {
    const document = await jsonOf(await t.request("/openapi.json", { auth: false }));
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining([
        "/capabilities",
        "/instances/{id}/wait",
        "/instances/{id}/fork",
        "/instances/{id}/standby",
        "/instances/{id}/snapshot-schedule",
        "/snapshots/{snapshotId}/compress",
      ]),
    );
    expect(Object.keys(document.paths["/instances/{id}/snapshot-schedule"]).sort()).toEqual(["delete", "get", "put"]);
  });
});

describe("with Redis down", () => {
  // Failing fast is the behaviour: within the command timeout (createTestApp keeps the default), not after a hang.
  const FAIL_FAST_BOUND_MS = parseConfig({}).REDIS_COMMAND_TIMEOUT_MS + DEADLINE_SLACK_MS;
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ redisUrl: DEAD_REDIS_URL });
  });
  afterAll(() => t.close());

  it("reports /health as 503 with redis down and the database up", async () => {
    const response = await t.request("/health", { auth: false });
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ status: "degraded", checks: { redis: "down", database: "ok" } });
  });

  it("fails fast with 503 unavailable instead of hanging", async () => {
    const started = Date.now();
    const response = await t.request("/hosts/any-host/ping", { method: "POST" });
    expect(response.status).toBe(503);
    expect((await jsonOf(response)).code).toBe("unavailable");
    expect(Date.now() - started).toBeLessThan(FAIL_FAST_BOUND_MS);
  });

  it("fails enqueueing within the command timeout", async () => {
    const started = Date.now();
    await expect(
      t.jobs.enqueue("host.ping", { sentAt: new Date().toISOString() }, { hostId: "h1" }),
    ).rejects.toMatchObject({
      code: "unavailable",
    });
    expect(Date.now() - started).toBeLessThan(FAIL_FAST_BOUND_MS);
  });
});

describeWith("postgres", "on postgres", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ dialect: "postgres" });
  });
  afterAll(() => t.close());

  it("reports /health ok, then the database down once PostgreSQL stops answering, with a 503", async () => {
    expect((await t.request("/health", { auth: false })).status).toBe(200);
    await dropTestDatabase(t.databaseUrl!);
    const response = await t.request("/health", { auth: false });
    expect(response.status).toBe(503);
    expect(await response.json()).toEqual({ status: "degraded", checks: { redis: "ok", database: "down" } });
  });
});
