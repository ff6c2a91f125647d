import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestApp, type TestApp } from "../test/helpers/app.ts";
import { DEAD_REDIS_URL, jsonOf } from "../test/helpers/fixtures.ts";
import { dropTestDatabase, testDialects } from "../test/helpers/postgres.ts";

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

  it("answers an unknown host with 404", async () => {
    const response = await t.request("/hosts/no-such-host/ping", { method: "POST" });
    expect(response.status).toBe(404);
    expect((await jsonOf(response)).code).toBe("not_found");
  });

  it("serves a docs page without auth", async () => {
    const response = await t.request("/docs", { auth: false });
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain("/openapi.json");
    expect(html).toContain("/hosts/{hostId}/ping");
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
    expect(Date.now() - started).toBeLessThan(1_500);
  });

  it("fails enqueueing within the command timeout", async () => {
    const started = Date.now();
    await expect(
      t.jobs.enqueue("host.ping", { sentAt: new Date().toISOString() }, { hostId: "h1" }),
    ).rejects.toMatchObject({
      code: "unavailable",
    });
    expect(Date.now() - started).toBeLessThan(1_500);
  });
});

describe.each(testDialects().filter((dialect) => dialect === "postgres"))("on %s", (dialect) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ dialect });
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
