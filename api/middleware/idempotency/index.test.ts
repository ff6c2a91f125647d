import { createHash } from "node:crypto";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { idFrom } from "../../../shared/ids.ts";
import { queueName, queuePrefix } from "../../../shared/jobs/catalog.ts";
import { startJobWorker } from "../../../shared/jobs/worker.ts";
import { createLogger } from "../../../shared/logger.ts";
import { closeRedis, connectRedis } from "../../../shared/redis.ts";
import { createTestApp, TEST_API_KEY, type TestApp } from "../../../test/helpers/app.ts";
import { jsonOf } from "../../../test/helpers/fixtures.ts";
import { announceFakeHost } from "../../../test/helpers/hosts.ts";
import { canonicalBody } from "./index.ts";
import { pruneExpiredKeys } from "./store.ts";

const OTHER_API_KEY = "other-tenant-key-0123456789";
const RECEIVER = "http://127.0.0.1:9/hooks";

describe("Idempotency-Key", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({
      webhookAllowedHosts: ["127.0.0.1"],
      apiKeys: [TEST_API_KEY, OTHER_API_KEY],
      jobResultTimeoutMs: 1_500,
    });
  });
  afterAll(() => t.close());

  const createWebhook = (key: string, json: unknown, auth?: string) =>
    t.request("/webhooks", { method: "POST", json, auth, headers: { "idempotency-key": key } });
  const storedRows = (key: string) =>
    t.db.selectFrom("idempotency_keys").selectAll().where("idempotency_key", "=", key).execute();
  /** What a keyed POST /instances left when its API process was killed: its claim, in flight, with its seed. */
  const leaveDeadClaim = (key: string, body: unknown, seed: string, hostId: string | null = null) =>
    t.db
      .insertInto("idempotency_keys")
      .values({
        api_key_hash: createHash("sha256").update(TEST_API_KEY).digest("hex"),
        idempotency_key: key,
        fingerprint: createHash("sha256")
          .update(`POST\n/instances\n${canonicalBody(JSON.stringify(body))}`)
          .digest("hex"),
        response_status: null,
        response_content_type: null,
        response_body: null,
        created_at: new Date().toISOString(),
        expires_at: new Date(Date.now() + 3_600_000).toISOString(),
        owner: "replica-killed",
        seed,
        host_id: hostId,
      })
      .execute();
  /** Instance ids of the create jobs waiting on a host's queue. */
  const queuedInstanceIds = async (hostId: string) => {
    const queue = new Queue(queueName("host", hostId), {
      connection: { url: t.redisUrl },
      prefix: queuePrefix(t.prefix, queueName("host", hostId)),
    });
    const jobs = await queue.getJobs(["waiting", "prioritized", "delayed"]);
    await queue.close();
    return jobs.map((job) => job.data.payload.instance.id);
  };

  describe("happy", () => {
    it("replays the first answer, status and body, for the same key and request", async () => {
      const first = await createWebhook("create-1", { url: RECEIVER, description: "a" });
      expect(first.status).toBe(201);
      expect(first.headers.get("idempotent-replayed")).toBeNull();
      const created = await jsonOf(first);

      const again = await createWebhook("create-1", { description: "a", url: RECEIVER }); // keys in another order
      expect(again.status).toBe(201);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(again.headers.get("content-type")).toContain("application/json");
      expect(await jsonOf(again)).toEqual(created);
      const endpoints = await jsonOf(await t.request("/webhooks"));
      expect(endpoints.filter((endpoint: { id: string }) => endpoint.id === created.id)).toHaveLength(1);
      expect(endpoints.filter((endpoint: { description: string }) => endpoint.description === "a")).toHaveLength(1);
    });

    it("replays a 4xx answer too: the request ran and that was its outcome", async () => {
      const first = await t.request("/instances/no-such-vm/stop", {
        method: "POST",
        headers: { "idempotency-key": "stop-1" },
      });
      expect(first.status).toBe(404);
      const again = await t.request("/instances/no-such-vm/stop", {
        method: "POST",
        headers: { "idempotency-key": "stop-1" },
      });
      expect(again.status).toBe(404);
      expect(again.headers.get("idempotent-replayed")).toBe("true");
      expect(await jsonOf(again)).toEqual(await jsonOf(first));
    });

    it("leaves requests without a key, and GETs with one, alone", async () => {
      const one = await jsonOf(await t.request("/webhooks", { method: "POST", json: { url: RECEIVER } }));
      const two = await jsonOf(await t.request("/webhooks", { method: "POST", json: { url: RECEIVER } }));
      expect(one.id).not.toBe(two.id);
      const get = await t.request("/webhooks", { headers: { "idempotency-key": "create-1" } });
      expect(get.status).toBe(200);
      expect(get.headers.get("idempotent-replayed")).toBeNull();
    });

    it("runs the request afresh once the key has expired, and the prune deletes expired keys", async () => {
      await createWebhook("expiring", { url: RECEIVER, description: "old" });
      await t.db
        .updateTable("idempotency_keys")
        .set({ expires_at: new Date(Date.now() - 1_000).toISOString() })
        .where("idempotency_key", "=", "expiring")
        .execute();
      const again = await createWebhook("expiring", { url: RECEIVER, description: "new" });
      expect(again.status).toBe(201);
      expect(again.headers.get("idempotent-replayed")).toBeNull();

      await t.db
        .updateTable("idempotency_keys")
        .set({ expires_at: new Date(Date.now() - 1_000).toISOString() })
        .where("idempotency_key", "=", "expiring")
        .execute();
      expect(await pruneExpiredKeys(t.db)).toBeGreaterThanOrEqual(1);
      expect(await storedRows("expiring")).toEqual([]);
    });

    it("canonicalises JSON bodies and keeps anything else byte for byte", () => {
      expect(canonicalBody('{ "b": [ {"y":1,"x":2} ], "a": null }')).toBe('{"a":null,"b":[{"x":2,"y":1}]}');
      expect(canonicalBody("name=web-1&size=256MB")).toBe("name=web-1&size=256MB");
    });
  });

  describe("errors", () => {
    it("answers the same key with another body, or another path, with 409 conflict", async () => {
      expect((await createWebhook("reused", { url: RECEIVER, description: "x" })).status).toBe(201);
      const otherBody = await createWebhook("reused", { url: RECEIVER, description: "y" });
      expect(otherBody.status).toBe(409);
      expect(await jsonOf(otherBody)).toEqual({
        code: "conflict",
        message: expect.stringContaining("different request"),
      });
      const otherPath = await t.request("/instances/some-vm/start", {
        method: "POST",
        headers: { "idempotency-key": "reused" },
      });
      expect(otherPath.status).toBe(409);
      expect((await jsonOf(otherPath)).code).toBe("conflict");
    });

    it("stores no 503 (no host is online yet): a retry with the same key runs again", async () => {
      const body = { name: "idem-vm", size: "256MB" };
      const send = () =>
        t.request("/instances", { method: "POST", json: body, headers: { "idempotency-key": "no-host" } });
      const first = await send();
      expect(first.status).toBe(503);
      expect(await storedRows("no-host")).toEqual([]);
      const again = await send();
      expect(again.status).toBe(503);
      expect(again.headers.get("idempotent-replayed")).toBeNull();
    });

    it("keeps the key of a 504: a retry gets 409 while the job runs, then the job's own answer", async () => {
      const hostId = "idem-slow-host";
      const redis = connectRedis(t.redisUrl, "worker", 1_000);
      // Online, but takes its jobs only once the test starts a worker: the first request answers 504.
      await announceFakeHost(redis, t.prefix, hostId, { online: true });
      const ping = () => t.request(`/hosts/${hostId}/ping`, { method: "POST", headers: { "idempotency-key": "slow" } });

      const first = await ping();
      expect(first.status).toBe(504);
      expect(await jsonOf(first)).toEqual({ code: "unavailable", message: expect.stringContaining("still running") });
      expect(await storedRows("slow")).toHaveLength(1);
      const whileRunning = await ping();
      expect(whileRunning.status).toBe(409);
      expect(whileRunning.headers.get("x-should-retry")).toBe("false");
      expect(await jsonOf(whileRunning)).toEqual({ code: "conflict", message: expect.stringContaining("in progress") });

      const pings: string[] = [];
      const workerConnection = connectRedis(t.redisUrl, "worker", 1_000);
      const worker = startJobWorker({
        queue: queueName("host", hostId),
        prefix: t.prefix,
        connection: workerConnection,
        log: createLogger("idem-test", "silent"),
        handlers: {
          "host.ping": async (payload) => {
            pings.push(payload.sentAt);
            return { hostId, receivedAt: new Date().toISOString() };
          },
        },
      });
      await expect.poll(async () => (await storedRows("slow"))[0]?.response_status, { timeout: 10_000 }).toBe(200);
      const retried = await ping();
      expect(retried.status).toBe(200);
      expect(retried.headers.get("idempotent-replayed")).toBe("true");
      expect((await jsonOf(retried)).host_id).toBe(hostId);
      expect(pings).toHaveLength(1); // one job for the three requests
      await worker.close(1_000);
      await closeRedis(workerConnection);
      await closeRedis(redis);
    });

    it("takes over a claim left unanswered by a process that died", async () => {
      const long_ago = new Date(Date.now() - 3_600_000).toISOString();
      const response = await createWebhook("orphan", { url: RECEIVER });
      expect(response.status).toBe(201);
      await t.db
        .updateTable("idempotency_keys")
        .set({ response_status: null, response_body: null, created_at: long_ago })
        .where("idempotency_key", "=", "orphan")
        .execute();
      const again = await createWebhook("orphan", { url: RECEIVER });
      expect(again.status).toBe(201);
      expect(again.headers.get("idempotent-replayed")).toBeNull();
    });

    it("takes over at once a fresh claim whose process is gone, and never one whose process still beats", async () => {
      // Claims as another API process left them just now, unanswered: one process beats, the other never did.
      const claim = async (key: string, owner: string) => {
        expect((await createWebhook(key, { url: RECEIVER, description: key })).status).toBe(201);
        await t.db
          .updateTable("idempotency_keys")
          .set({ response_status: null, response_body: null, created_at: new Date().toISOString(), owner })
          .where("idempotency_key", "=", key)
          .execute();
      };
      const redis = connectRedis(t.redisUrl, "worker", 1_000);
      await redis.set(`${t.prefix}:api:alive:replica-alive`, "1", "PX", 60_000);
      await claim("owner-alive", "replica-alive");
      await claim("owner-gone", "replica-killed");

      const held = await createWebhook("owner-alive", { url: RECEIVER, description: "owner-alive" });
      expect(held.status).toBe(409);
      expect((await jsonOf(held)).message).toContain("in progress");
      const taken = await createWebhook("owner-gone", { url: RECEIVER, description: "owner-gone" });
      expect(taken.status).toBe(201);
      expect(taken.headers.get("idempotent-replayed")).toBeNull();
      expect((await storedRows("owner-gone"))[0]).toMatchObject({ response_status: 201, owner: expect.any(String) });
      await closeRedis(redis);
    });

    it("a retry that takes over a dead request's key makes its resource: same id, its name reservation adopted", async () => {
      const hostId = "idem-adopt-host";
      const redis = connectRedis(t.redisUrl, "worker", 1_000);
      await announceFakeHost(redis, t.prefix, hostId, { online: true }); // online, with no worker: the job waits
      const body = { name: "adopted-vm", size: "256MB", host_id: hostId };
      // What the request left when its API process was killed after queueing its job: the claim, in flight, with
      // its seed, and the name reserved for the instance id the seed gives.
      const seed = "0123456789abcdef0123456789abcdef";
      await leaveDeadClaim("adopt-1", body, seed);
      const id = idFrom(`${seed}:0`);
      await t.db
        .insertInto("name_reservations")
        .values({ scope: "instance", name: "adopted-vm", resource_id: id, pending_until: null })
        .execute();

      const retry = await t.request("/instances", {
        method: "POST",
        json: body,
        headers: { "idempotency-key": "adopt-1" },
      });
      // Not the 409 name_conflict of a stranger's name: the job for the same instance is queued again, and (no
      // worker here) the answer is the 504 of a job still running.
      expect(retry.status, JSON.stringify(await jsonOf(retry.clone()))).toBe(504);
      expect(await queuedInstanceIds(hostId)).toEqual([id]);
      await closeRedis(redis);
    });

    it("a retry that takes over a dead request's key places its instance on the host that request chose", async () => {
      // Found by the two-host soak: the API died after queueing a create on one host; the retry (same id) chose the
      // other, less loaded host, and the instance was made twice, once on each host, under one id.
      const redis = connectRedis(t.redisUrl, "worker", 1_000);
      const [chosen, idler] = ["idem-place-z", "idem-place-a"]; // with equal load the lowest id wins: not `chosen`
      for (const hostId of [chosen, idler]) await announceFakeHost(redis, t.prefix, hostId, { online: true });
      const body = { name: "placed-vm", size: "256MB" };
      const seed = "fedcba9876543210fedcba9876543210";
      await leaveDeadClaim("place-1", body, seed, chosen);
      const retry = await t.request("/instances", {
        method: "POST",
        json: body,
        headers: { "idempotency-key": "place-1" },
      });
      expect(retry.status, JSON.stringify(await jsonOf(retry.clone()))).toBe(504); // queued; no worker answers here
      expect(await queuedInstanceIds(chosen)).toEqual([idFrom(`${seed}:0`)]);
      expect(await queuedInstanceIds(idler)).toEqual([]);
      await closeRedis(redis);
    });

    it("records the host a keyed create chose, for a retry that takes it over", async () => {
      const redis = connectRedis(t.redisUrl, "worker", 1_000);
      await announceFakeHost(redis, t.prefix, "idem-record-host", { online: true });
      const created = await t.request("/instances", {
        method: "POST",
        json: { name: "recorded-vm", size: "256MB", host_id: "idem-record-host" },
        headers: { "idempotency-key": "place-2" },
      });
      expect(created.status).toBe(504);
      expect((await storedRows("place-2"))[0]).toMatchObject({ host_id: "idem-record-host" });
      await closeRedis(redis);
    });

    it.each([["x".repeat(256)], ["has space"], ["naïve"]])("refuses the key %j with 400", async (key) => {
      const response = await t.request("/webhooks", {
        method: "POST",
        json: { url: RECEIVER },
        headers: { "idempotency-key": key },
      });
      expect(response.status).toBe(400);
      expect((await jsonOf(response)).code).toBe("invalid_request");
    });
  });

  describe("security", () => {
    it("scopes keys per API key: another tenant's same key and body run as its own request", async () => {
      const mine = await jsonOf(await createWebhook("shared-key", { url: RECEIVER, description: "tenant" }));
      const theirs = await createWebhook("shared-key", { url: RECEIVER, description: "tenant" }, OTHER_API_KEY);
      expect(theirs.status).toBe(201);
      expect(theirs.headers.get("idempotent-replayed")).toBeNull();
      const body = await jsonOf(theirs);
      expect(body.id).not.toBe(mine.id);
      expect(body.secret).not.toBe(mine.secret);
      const otherBody = await createWebhook("shared-key", { url: RECEIVER, description: "else" }, OTHER_API_KEY);
      expect(otherBody.status).toBe(409); // its own key now, not the first tenant's
    });

    it("stores a hash of the bearer token, never the token", async () => {
      const rows = await storedRows("shared-key");
      expect(rows).toHaveLength(2);
      for (const row of rows) {
        expect(row.api_key_hash).toMatch(/^[0-9a-f]{64}$/);
        expect(JSON.stringify(row)).not.toContain(TEST_API_KEY);
        expect(JSON.stringify(row)).not.toContain(OTHER_API_KEY);
      }
    });

    it("records nothing for an unauthenticated request", async () => {
      const response = await t.request("/webhooks", {
        method: "POST",
        json: { url: RECEIVER },
        auth: false,
        headers: { "idempotency-key": "anonymous" },
      });
      expect(response.status).toBe(401);
      expect(await storedRows("anonymous")).toEqual([]);
    });
  });
});
