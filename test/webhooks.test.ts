// The subscriptions API on a real SQLite file or PostgreSQL database and the test Redis: create, read, update, rotate, delete, guardrails.
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeRedis, connectRedis, waitForRedisReady } from "../shared/redis.ts";
import { readEndpointMirror } from "../shared/webhooks/mirror.ts";
import { SecretBox } from "../shared/webhooks/secrets.ts";
import { createTestApp, type TestApp } from "./helpers/app.ts";
import { DEAD_REDIS_URL, jsonOf, testRedisUrl } from "./helpers/fixtures.ts";
import { describeEachDialect } from "./helpers/postgres.ts";

describeEachDialect("webhook subscriptions on %s", (dialect) => {
  // Apps are shared within the file (each test owns the endpoints it creates): closing one takes a second.
  let open: TestApp; // allows the loopback receiver address, as the delivery tests do
  let strict: TestApp; // production defaults: private addresses refused
  let redis: Redis;
  beforeAll(async () => {
    [open, strict] = await Promise.all([
      createTestApp({ webhookAllowedHosts: ["127.0.0.1"], dialect }),
      createTestApp({ webhookAllowedHosts: [], dialect }),
    ]);
    redis = connectRedis(testRedisUrl(), "producer", 1_000);
    await waitForRedisReady(redis, 5_000);
  });
  afterAll(async () => {
    await Promise.all([open?.close(), strict?.close(), redis && closeRedis(redis)]);
  });

  const testApp = async (options: { strict?: boolean } = {}) => (options.strict ? strict : open);
  const mirrorOf = (app: TestApp, id: string) => readEndpointMirror(redis, app.prefix, id);

  const RECEIVER = "http://127.0.0.1:9/hooks";

  describe("webhook subscriptions: happy paths", () => {
    it("creates an endpoint and shows its secret only then", async () => {
      const app = await testApp();
      const created = await app.request("/webhooks", {
        method: "POST",
        json: { url: RECEIVER, event_types: ["snapshot.*", "instance.forked"], description: "ops" },
      });
      expect(created.status).toBe(201);
      const endpoint = await jsonOf(created);
      expect(endpoint).toMatchObject({
        url: RECEIVER,
        event_types: ["snapshot.*", "instance.forked"],
        description: "ops",
        enabled: true,
        disabled_reason: null,
      });
      expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);

      const read = await jsonOf(await app.request(`/webhooks/${endpoint.id}`));
      expect(read).not.toHaveProperty("secret");
      expect(read).toEqual({ ...endpoint, secret: undefined });
      const list = await jsonOf(await app.request("/webhooks"));
      expect(list.map((item: { id: string }) => item.id)).toContain(endpoint.id);
      expect(JSON.stringify(list)).not.toContain(endpoint.secret);
    });

    it("subscribes to everything when no event types are given", async () => {
      const app = await testApp();
      const endpoint = await jsonOf(await app.request("/webhooks", { method: "POST", json: { url: RECEIVER } }));
      expect(endpoint.event_types).toEqual(["*"]);
    });

    it("mirrors the endpoint into Redis with its secret sealed, never in clear", async () => {
      const app = await testApp();
      const endpoint = await jsonOf(await app.request("/webhooks", { method: "POST", json: { url: RECEIVER } }));
      const mirror = await mirrorOf(app, endpoint.id);
      expect(mirror).toMatchObject({ url: RECEIVER, enabled: true });
      expect(mirror!.sealedSecrets).not.toContain(endpoint.secret.slice(6));
      expect(new SecretBox(app.secretKey).open(mirror!.sealedSecrets)).toEqual([
        { secret: endpoint.secret, expires_at: null },
      ]);
    });

    it("updates url, types, description and enabled, and mirrors the change", async () => {
      const app = await testApp();
      const { id } = await jsonOf(await app.request("/webhooks", { method: "POST", json: { url: RECEIVER } }));
      const patched = await app.request(`/webhooks/${id}`, {
        method: "PATCH",
        json: { url: "http://127.0.0.1:10/other", event_types: ["instance.*"], description: "moved", enabled: false },
      });
      expect(patched.status).toBe(200);
      expect(await jsonOf(patched)).toMatchObject({
        url: "http://127.0.0.1:10/other",
        event_types: ["instance.*"],
        description: "moved",
        enabled: false,
      });
      const mirror = await mirrorOf(app, id);
      expect(mirror).toMatchObject({ url: "http://127.0.0.1:10/other", enabled: false });
    });

    it("rotates the secret: a new one is returned, the previous keeps signing for a while", async () => {
      const app = await testApp();
      const endpoint = await jsonOf(await app.request("/webhooks", { method: "POST", json: { url: RECEIVER } }));
      const rotated = await app.request(`/webhooks/${endpoint.id}/rotate-secret`, { method: "POST" });
      expect(rotated.status).toBe(200);
      const { secret } = await jsonOf(rotated);
      expect(secret).toMatch(/^whsec_/);
      expect(secret).not.toBe(endpoint.secret);
      const mirror = await mirrorOf(app, endpoint.id);
      const sealed = new SecretBox(app.secretKey).open(mirror!.sealedSecrets);
      expect(sealed.map((entry) => entry.secret)).toEqual([secret, endpoint.secret]);
      expect(sealed[1]!.expires_at).not.toBeNull();
    });

    it("deletes the endpoint, its mirror and its deliveries", async () => {
      const app = await testApp();
      const { id } = await jsonOf(await app.request("/webhooks", { method: "POST", json: { url: RECEIVER } }));
      expect((await app.request(`/webhooks/${id}`, { method: "DELETE" })).status).toBe(204);
      expect((await app.request(`/webhooks/${id}`)).status).toBe(404);
      expect(await mirrorOf(app, id)).toBeUndefined();
    });

    it("lists an endpoint's deliveries (none yet)", async () => {
      const app = await testApp();
      const { id } = await jsonOf(await app.request("/webhooks", { method: "POST", json: { url: RECEIVER } }));
      const response = await app.request(`/webhooks/${id}/deliveries?status=failed&limit=10`);
      expect(response.status).toBe(200);
      expect(await jsonOf(response)).toEqual([]);
    });
  });

  describe("webhook subscriptions: errors", () => {
    it.each([
      [{ url: "ftp://example.com/" }, "url"],
      [{ url: "http://user:pw@127.0.0.1:9/" }, "credentials"],
      [{ url: RECEIVER, event_types: ["snapshots.*"] }, "event_types"],
      [{ url: RECEIVER, event_types: [] }, "event_types"],
      [{ url: RECEIVER, event_types: ["snapshot.created", "nope"] }, "event_types"],
      [{ event_types: ["*"] }, "url"],
    ])("refuses %j with invalid_request naming %s", async (body, field) => {
      const app = await testApp();
      const response = await app.request("/webhooks", { method: "POST", json: body });
      expect(response.status).toBe(400);
      const error = await jsonOf(response);
      expect(error.code).toBe("invalid_request");
      expect(error.message).toContain(field);
    });

    it("answers 404 in the envelope for unknown endpoints and deliveries", async () => {
      const app = await testApp();
      for (const [method, path] of [
        ["GET", "/webhooks/nope"],
        ["PATCH", "/webhooks/nope"],
        ["DELETE", "/webhooks/nope"],
        ["POST", "/webhooks/nope/rotate-secret"],
        ["GET", "/webhooks/nope/deliveries"],
        ["POST", "/webhooks/nope/deliveries/nada/retry"],
      ] as const) {
        const response = await app.request(path, { method, json: method === "PATCH" ? {} : undefined });
        expect(response.status, `${method} ${path}`).toBe(404);
        expect((await jsonOf(response)).code).toBe("not_found");
      }
    });

    it("answers 503 and changes nothing when Redis is down", async () => {
      const app = await createTestApp({ redisUrl: DEAD_REDIS_URL, webhookAllowedHosts: ["127.0.0.1"], dialect });
      try {
        const response = await app.request("/webhooks", { method: "POST", json: { url: RECEIVER } });
        expect(response.status).toBe(503);
        expect((await jsonOf(response)).code).toBe("unavailable");
        expect(await jsonOf(await app.request("/webhooks"))).toEqual([]);
      } finally {
        await app.close();
      }
    });
  });

  describe("webhook subscriptions: security", () => {
    it.each([
      "http://127.0.0.1:9/hooks",
      "http://localhost:9/hooks",
      "http://[::1]:9/",
      "http://10.0.0.8/",
      "http://192.168.1.1/",
      "http://169.254.169.254/latest/meta-data/",
    ])("refuses %s by default", async (url) => {
      const app = await testApp({ strict: true });
      const response = await app.request("/webhooks", { method: "POST", json: { url } });
      expect(response.status).toBe(400);
      expect((await jsonOf(response)).message).toContain("WEBHOOK_ALLOWED_HOSTS");
    });

    it("accepts an address the allow-list opens", async () => {
      expect((await open.request("/webhooks", { method: "POST", json: { url: RECEIVER } })).status).toBe(201);
      expect((await strict.request("/webhooks", { method: "POST", json: { url: RECEIVER } })).status).toBe(400);
    });

    it("applies the same rule to a PATCHed url", async () => {
      const app = await testApp();
      const { id } = await jsonOf(await app.request("/webhooks", { method: "POST", json: { url: RECEIVER } }));
      const response = await app.request(`/webhooks/${id}`, {
        method: "PATCH",
        json: { url: "http://169.254.169.254/latest/meta-data/" },
      });
      expect(response.status).toBe(400);
      expect((await jsonOf(await app.request(`/webhooks/${id}`))).url).toBe(RECEIVER);
    });

    it("needs the bearer token", async () => {
      const app = await testApp();
      expect((await app.request("/webhooks", { auth: false })).status).toBe(401);
      expect((await app.request("/webhooks", { method: "POST", json: { url: RECEIVER }, auth: false })).status).toBe(
        401,
      );
    });
  });
});
