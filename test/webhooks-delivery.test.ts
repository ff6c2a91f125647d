// Webhook delivery end to end on real parts: the API app and its dispatcher on a real SQLite file, the test
// Redis, the delivery worker, and loopback HTTP receivers verifying signatures with standardwebhooks.
import type { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import type { DialectName } from "../api/db/dialect.ts";
import { startWebhookPipeline } from "../api/webhooks/pipeline.ts";
import { requeuePendingDeliveries } from "../api/webhooks/requeue.ts";
import type { WebhookDelivery, WebhookEndpoint } from "../api/webhooks/schemas.ts";
import { parseDurationList } from "../shared/duration.ts";
import { subjectOf } from "../shared/events/catalog.ts";
import { type AppendedEvent, EventStream } from "../shared/events/stream.ts";
import { queueName } from "../shared/jobs/catalog.ts";
import { createLogger } from "../shared/logger.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../shared/redis.ts";
import { outcomeStreamKey } from "../shared/webhooks/mirror.ts";
import { SecretBox } from "../shared/webhooks/secrets.ts";
import { createUrlGuard } from "../shared/webhooks/url-guard.ts";
import { startWebhookWorker } from "../workers/webhooks/worker.ts";
import { createTestApp, type TestApp } from "./helpers/app.ts";
import { jsonOf, testRedisUrl, waitFor } from "./helpers/fixtures.ts";
import { appendMarker, appendSnapshotFlow } from "./helpers/flow-events.ts";
import { describeEachDialect } from "./helpers/postgres.ts";
import { forgetPrefix } from "./helpers/redis-loss.ts";
import { sampleInstance } from "./helpers/resources.ts";
import {
  type Answer,
  type ReceivedRequest,
  startWebhookReceiver,
  verifyReceived,
  type WebhookReceiver,
} from "./helpers/webhook-receiver.ts";
import { waitForMarkerDelivered } from "./helpers/webhook-settled.ts";

const log = createLogger("webhooks-test", "silent");
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Harness {
  app: TestApp;
  events: EventStream;
  redis: Redis;
  receiver: WebhookReceiver;
  subscribe(body?: Record<string, unknown>): Promise<{ id: string; secret: string }>;
  deliveries(endpointId: string): Promise<WebhookDelivery[]>;
  endpoint(endpointId: string): Promise<WebhookEndpoint>;
  startDispatcher(): Promise<void>;
  stopDispatcher(): Promise<void>;
}

/** The API (app + dispatcher + outcome recorder), a delivery worker and one receiver, all private to the test. */
async function harness(options: {
  retrySchedule?: string;
  disableAfterMs?: number;
  answer?: (request: ReceivedRequest) => Answer;
  /** The worker's WEBHOOK_ALLOWED_HOSTS, when it should differ from the API's. */
  workerAllowedHosts?: string[];
  /** Required: a case in the PostgreSQL suite that left it out would run on SQLite under a "postgres" name. */
  dialect: DialectName;
}): Promise<Harness> {
  const app = await createTestApp({ webhookAllowedHosts: ["127.0.0.1"], dialect: options.dialect });
  cleanups.push(() => app.close());
  const redis = connectRedis(testRedisUrl(), "worker", 1_000);
  await waitForRedisReady(redis, 5_000);
  const queueConnection = connectRedis(testRedisUrl(), "worker", 1_000);
  cleanups.push(async () => {
    await closeRedis(queueConnection);
    await closeRedis(redis);
  });
  const receiver = await startWebhookReceiver(options.answer);
  cleanups.push(() => receiver.close());

  let pipeline: ReturnType<typeof startWebhookPipeline> | undefined;
  const startDispatcher = async () => {
    pipeline = startWebhookPipeline({
      redisUrl: app.redisUrl,
      prefix: app.prefix,
      db: app.db,
      endpoints: app.webhookEndpoints,
      jobs: app.jobs,
      disableAfterMs: options.disableAfterMs ?? 60_000,
      commandTimeoutMs: 1_000,
      log,
      blockMs: 100,
      consumer: "replica-a",
      claimIdleMs: 30_000,
    });
    await pipeline.ready;
  };
  const stopDispatcher = async () => {
    await pipeline?.stop();
    pipeline = undefined;
  };
  await startDispatcher();
  cleanups.push(stopDispatcher);

  const worker = startWebhookWorker({
    queueConnection,
    redis,
    prefix: app.prefix,
    secretBox: new SecretBox(app.secretKey),
    guard: createUrlGuard(options.workerAllowedHosts ?? ["127.0.0.1"]),
    retrySchedule: parseDurationList(options.retrySchedule ?? "100ms,200ms")!,
    timeoutMs: 2_000,
    concurrency: 8,
    log,
  });
  cleanups.push(() => worker.close(1_000));

  return {
    app,
    events: new EventStream(redis, app.prefix),
    redis,
    receiver,
    startDispatcher,
    stopDispatcher,
    async subscribe(body = {}) {
      const response = await app.request("/webhooks", { method: "POST", json: { url: receiver.url, ...body } });
      expect(response.status).toBe(201);
      return jsonOf(response);
    },
    deliveries: async (endpointId) => jsonOf(await app.request(`/webhooks/${endpointId}/deliveries`)),
    endpoint: async (endpointId) => jsonOf(await app.request(`/webhooks/${endpointId}`)),
  };
}

/** Waits until every delivery of the endpoint is final and returns them. */
async function settled(h: Harness, endpointId: string, count: number) {
  return waitFor(
    async () => {
      const deliveries = await h.deliveries(endpointId);
      return deliveries.length === count && deliveries.every((delivery) => delivery.status !== "pending")
        ? deliveries
        : undefined;
    },
    { what: `${count} settled deliveries`, timeoutMs: 20_000 },
  );
}

/**
 * Makes the events of one flow happen and returns them as appended. Synthetic here (full resources appended to
 * the stream); to run the same assertions on the real snapshot → compress → fork → delete pipeline through QEMU,
 * swap in a function that drives it over HTTP and returns what it appended (EventStream.readAfter from the start).
 */
/** The flow's events a wildcard subscriber gets: all but progress, which only an explicit subscription receives. */
const runFlow = async (h: Harness): Promise<AppendedEvent[]> =>
  (await appendSnapshotFlow(h.events)).filter(({ event }) => event.type !== "snapshot.compression.progress");

const idsOf = (requests: ReceivedRequest[]) => requests.map((request) => String(request.headers["webhook-id"]));

describeEachDialect("webhook delivery on %s", (dialect) => {
  it("delivers every event of a flow once, signed, with the full resource as data", async () => {
    const h = await harness({ dialect });
    const { id, secret } = await h.subscribe({ event_types: ["snapshot.*", "instance.*"] });
    const flow = await runFlow(h);

    await waitFor(() => h.receiver.requests.length >= flow.length || undefined, { what: "all deliveries" });
    const deliveries = await settled(h, id, flow.length);
    expect(idsOf(h.receiver.requests).sort()).toEqual(flow.map(({ event }) => event.id).sort());
    for (const request of h.receiver.requests) {
      const body = verifyReceived(request, secret);
      const { event } = flow.find((appended) => appended.event.id === request.headers["webhook-id"])!;
      expect(body).toEqual({ type: event.type, timestamp: event.occurred_at, data: event.data });
      expect(request.headers["content-type"]).toBe("application/json");
    }
    for (const delivery of deliveries) {
      expect(delivery).toMatchObject({ status: "succeeded", attempts: 1, last_status_code: 204, last_error: null });
      expect(delivery.last_duration_ms).toBeTypeOf("number");
    }
    expect((await h.endpoint(id)).last_success_at).not.toBeNull();
  });

  it("sends only the event types an endpoint subscribed to", async () => {
    const h = await harness({ dialect });
    const { id } = await h.subscribe({ event_types: ["snapshot.compression.*", "instance.forked"] });
    await appendSnapshotFlow(h.events);
    const deliveries = await settled(h, id, 3);
    expect(deliveries.map((delivery) => delivery.event_type).sort()).toEqual([
      "instance.forked",
      "snapshot.compression.completed",
      "snapshot.compression.started",
    ]);
  });

  it("sends progress events only to an endpoint that names their type", async () => {
    const h = await harness({ dialect });
    const { id: wildcard } = await h.subscribe({ event_types: ["*"] });
    const { id: explicit } = await h.subscribe({ event_types: ["snapshot.compression.progress"] });
    await appendSnapshotFlow(h.events);
    expect((await settled(h, explicit, 1)).map((delivery) => delivery.event_type)).toEqual([
      "snapshot.compression.progress",
    ]);
    const all = await settled(h, wildcard, 6);
    expect(all.map((delivery) => delivery.event_type)).not.toContain("snapshot.compression.progress");
  });

  it("keeps secrets out of job data and the outcome stream", async () => {
    const h = await harness({ dialect });
    const { id, secret } = await h.subscribe();
    await appendSnapshotFlow(h.events);
    await settled(h, id, 6);
    const queue = h.app.jobs.queue(queueName("webhooks"));
    const jobs = await queue.getJobs(["completed", "failed", "delayed", "waiting", "active"]);
    expect(jobs.length).toBe(6);
    const secretBody = secret.slice("whsec_".length);
    for (const job of jobs) expect(JSON.stringify(job.data)).not.toContain(secretBody);
    const outcomes = await h.redis.xrange(outcomeStreamKey(h.app.prefix), "-", "+");
    expect(JSON.stringify(outcomes)).not.toContain(secretBody);
  });

  it("retries a receiver that is down, then failing, with the same webhook-id until it succeeds", async () => {
    let failuresLeft = new Map<string, number>();
    const h = await harness({
      dialect,
      retrySchedule: "100ms,150ms,200ms,250ms,300ms,350ms,400ms,450ms,500ms,550ms",
      // Once up, each event's first attempt gets a 500, the next a 200.
      answer: (request) => {
        const id = String(request.headers["webhook-id"]);
        const left = failuresLeft.get(id) ?? 1;
        failuresLeft.set(id, left - 1);
        return left > 0 ? { status: 500 } : { status: 200 };
      },
    });
    await h.receiver.stop();
    const { id, secret } = await h.subscribe();
    const flow = await runFlow(h);

    await waitFor(
      async () => {
        const deliveries = await h.deliveries(id);
        return deliveries.length === flow.length && deliveries.every((delivery) => delivery.attempts >= 1)
          ? true
          : undefined;
      },
      { what: "a failed attempt per event while the receiver is down" },
    );
    const whileDown = await h.deliveries(id);
    for (const delivery of whileDown.filter((d) => d.status === "pending")) {
      expect(delivery.last_error).toMatch(/ECONNREFUSED/);
      expect(delivery.next_attempt_at).not.toBeNull();
    }
    failuresLeft = new Map();
    await h.receiver.listen();

    const deliveries = await settled(h, id, flow.length);
    expect(deliveries.every((delivery) => delivery.status === "succeeded")).toBe(true);
    expect(deliveries.every((delivery) => delivery.attempts >= 3)).toBe(true);
    // Each event arrived twice (a 500, then a 200), under the same webhook-id, validly signed both times.
    const received = idsOf(h.receiver.requests);
    for (const { event } of flow) expect(received.filter((webhookId) => webhookId === event.id)).toHaveLength(2);
    for (const request of h.receiver.requests) expect(() => verifyReceived(request, secret)).not.toThrow();
  });

  it("sends a pending delivery whose retry Redis lost, once its job is rebuilt from the database", async () => {
    const h = await harness({ dialect, retrySchedule: "2s" });
    await h.receiver.stop();
    const { id } = await h.subscribe();
    const instance = sampleInstance();
    await h.events.append("instance.created", subjectOf.instance(instance.id), { instance }, { version: 1 });
    const [failed] = await waitFor(
      async () => {
        const deliveries = await h.deliveries(id);
        return deliveries[0]?.attempts === 1 ? deliveries : undefined;
      },
      { what: "a failed first attempt" },
    );
    expect(failed).toMatchObject({ status: "pending" });

    await forgetPrefix(h.redis, h.app.prefix); // the retry's job and the endpoint's mirror are gone
    await h.receiver.listen();
    // Past the settle window: no outcome of this delivery can still be on its way.
    await h.app.db
      .updateTable("webhook_deliveries")
      .set({ updated_at: new Date(Date.now() - 120_000).toISOString() })
      .where("id", "=", failed!.id)
      .execute();
    await h.app.deps.webhookEndpoints.syncMirror();
    expect(await requeuePendingDeliveries(h.app.deps, log)).toBe(1);
    expect(await requeuePendingDeliveries(h.app.deps, log)).toBe(0); // its job is there now

    const [delivered] = await settled(h, id, 1);
    expect(delivered).toMatchObject({ id: failed!.id, status: "succeeded", attempts: 2 });
    expect(idsOf(h.receiver.requests)).toHaveLength(1);
  });

  it("disables the endpoint on 410 Gone and sends it nothing more", async () => {
    const h = await harness({ dialect, answer: () => ({ status: 410 }) });
    const { id } = await h.subscribe({ event_types: ["instance.created"] });
    // A second endpoint, on a receiver that answers, gets the marker that shows the dispatcher is past the flow.
    const witness = await startWebhookReceiver();
    cleanups.push(() => witness.close());
    const witnessEndpoint = await jsonOf(
      await h.app.request("/webhooks", {
        method: "POST",
        json: { url: witness.url, event_types: ["instance.created"] },
      }),
    );
    await appendSnapshotFlow(h.events);
    const [delivery] = await settled(h, id, 1);
    expect(delivery).toMatchObject({ status: "failed", attempts: 1, last_status_code: 410 });
    const endpoint = await waitFor(async () => {
      const current = await h.endpoint(id);
      return current.enabled ? undefined : current;
    });
    expect(endpoint.disabled_reason).toContain("410");
    const again = await appendSnapshotFlow(h.events);
    const marker = await appendMarker(h.events, again[0]!.event);
    await waitForMarkerDelivered((path) => h.app.request(path), witnessEndpoint.id, witness, marker.event.id);
    expect(await h.deliveries(id)).toHaveLength(1);
    expect(h.receiver.requests).toHaveLength(1);
  });

  it("counts a redirect as a failure and does not follow it; a manual retry sends it again", async () => {
    const elsewhere = await startWebhookReceiver();
    cleanups.push(() => elsewhere.close());
    let redirect = true;
    const h = await harness({
      dialect,
      retrySchedule: "100ms",
      answer: () => (redirect ? { status: 302, headers: { location: elsewhere.url } } : { status: 200 }),
    });
    const { id } = await h.subscribe({ event_types: ["snapshot.created"] });
    await appendSnapshotFlow(h.events);
    const [delivery] = await settled(h, id, 1);
    expect(delivery).toMatchObject({ status: "failed", attempts: 2, last_status_code: 302 });
    expect(delivery!.last_error).toContain("redirect not followed");
    expect(elsewhere.requests).toHaveLength(0);

    redirect = false;
    const retried = await h.app.request(`/webhooks/${id}/deliveries/${delivery!.id}/retry`, { method: "POST" });
    expect(retried.status).toBe(202);
    expect((await jsonOf(retried)).status).toBe("pending");
    const [after] = await settled(h, id, 1);
    expect(after).toMatchObject({ status: "succeeded", attempts: 3, last_status_code: 200 });
    expect(new Set(idsOf(h.receiver.requests))).toEqual(new Set([delivery!.event_id]));
  });

  it("refuses to retry a delivery still in progress or of a disabled endpoint", async () => {
    const h = await harness({ dialect, retrySchedule: "10s", answer: () => ({ status: 503 }) });
    const { id } = await h.subscribe({ event_types: ["snapshot.created"] });
    await appendSnapshotFlow(h.events);
    const [pending] = await waitFor(async () => {
      const deliveries = await h.deliveries(id);
      return deliveries[0]?.attempts === 1 ? deliveries : undefined;
    });
    const busy = await h.app.request(`/webhooks/${id}/deliveries/${pending!.id}/retry`, { method: "POST" });
    expect(busy.status).toBe(409);
    expect((await jsonOf(busy)).code).toBe("conflict");
    await h.app.request(`/webhooks/${id}`, { method: "PATCH", json: { enabled: false } });
    const disabled = await h.app.request(`/webhooks/${id}/deliveries/${pending!.id}/retry`, { method: "POST" });
    expect((await jsonOf(disabled)).code).toBe("invalid_state");
  });

  it("disables an endpoint that keeps failing with no success for WEBHOOK_DISABLE_AFTER_MS", async () => {
    const h = await harness({
      dialect,
      retrySchedule: "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms",
      disableAfterMs: 300,
      answer: () => ({ status: 500 }),
    });
    const { id } = await h.subscribe({ event_types: ["snapshot.created"] });
    await appendSnapshotFlow(h.events);
    const endpoint = await waitFor(async () => {
      const current = await h.endpoint(id);
      return current.enabled ? undefined : current;
    });
    expect(endpoint.disabled_reason).toContain("no successful delivery since");
    expect(endpoint.failing_since).not.toBeNull();
    const [delivery] = await settled(h, id, 1);
    expect(delivery!.status).toBe("failed");
  });

  it("checks the address again when it connects, whatever the API accepted", async () => {
    const h = await harness({ dialect, retrySchedule: "100ms", workerAllowedHosts: [] });
    const { id } = await h.subscribe({ event_types: ["snapshot.created"] });
    await runFlow(h);
    const [delivery] = await settled(h, id, 1);
    expect(delivery).toMatchObject({ status: "failed", attempts: 2, last_status_code: null });
    expect(delivery!.last_error).toContain("refused");
    expect(h.receiver.requests).toHaveLength(0);
  });

  it("keeps deliveries verifiable across a secret rotation, with the old and the new secret", async () => {
    const h = await harness({ dialect });
    const { id, secret: previous } = await h.subscribe({ event_types: ["snapshot.created"] });
    const { secret: current } = await jsonOf(await h.app.request(`/webhooks/${id}/rotate-secret`, { method: "POST" }));
    await appendSnapshotFlow(h.events);
    await settled(h, id, 1);
    const [request] = h.receiver.requests;
    expect(verifyReceived(request!, previous).type).toBe("snapshot.created");
    expect(verifyReceived(request!, current).type).toBe("snapshot.created");
  });

  it("after a restart, finishes what it read but never acknowledged, and never sends an event twice", async () => {
    const h = await harness({ dialect });
    const { id } = await h.subscribe({ event_types: ["snapshot.created"] });
    await h.stopDispatcher();
    const first = await appendSnapshotFlow(h.events);
    // Entries read by the dispatcher's consumer and not acknowledged, as a crash would leave them.
    const key = `${h.app.prefix}:events`;
    await h.redis.xreadgroup("GROUP", "webhooks", "replica-a", "COUNT", 3, "STREAMS", key, ">");
    await h.startDispatcher();
    await settled(h, id, 1);

    // Rewind the group to the start, as if every acknowledgement had been lost: nothing is sent twice.
    await h.stopDispatcher();
    await h.redis.xgroup("SETID", key, "webhooks", "0");
    const second = await appendSnapshotFlow(h.events);
    await h.startDispatcher();
    await settled(h, id, 2);
    const marker = await appendMarker(h.events, second[1]!.event); // a resend of the first flow would come before it
    await waitForMarkerDelivered((path) => h.app.request(path), id, h.receiver, marker.event.id);
    const delivered = (await h.deliveries(id)).map((delivery) => delivery.event_id);
    expect(delivered).toContain(first[1]!.event.id);
    expect(idsOf(h.receiver.requests).sort()).toEqual(delivered.sort());
  });
});
