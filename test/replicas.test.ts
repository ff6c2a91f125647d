// Two API replicas on one PostgreSQL and one Redis, on real QEMU guests: the SDK flow with its commands on
// replica A and its reads on replica B, and a replica killed mid-flow losing nothing.
import Hypeman from "@onkernel/hypeman";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { READ_MODEL_GROUP } from "../api/read-model/projector.ts";
import { DISPATCH_GROUP } from "../api/webhooks/dispatcher.ts";
import { subjectOf } from "../shared/events/catalog.ts";
import { decodeEvent, EventStream, eventStreamKey } from "../shared/events/stream.ts";
import type { Snapshot } from "../shared/schemas/snapshot.ts";
import { waitForTick } from "./helpers/console.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { appendMarker } from "./helpers/flow-events.ts";
import { describeWith } from "./helpers/needs.ts";
import { REPLICA_API_KEY, type ReplicatedService, startReplicatedService } from "./helpers/replicas.ts";
import { sampleSnapshot } from "./helpers/resources.ts";
import { runSdkFlow } from "./helpers/sdk-flow.ts";
import { startWebhookReceiver, verifyReceived, type WebhookReceiver } from "./helpers/webhook-receiver.ts";
import { waitForMarkerDelivered } from "./helpers/webhook-settled.ts";

/** Events appended while replica B is frozen halfway through. */
const BURST = 200;

describeWith("postgres", "two API replicas on postgres", () => {
  let replicas: ReplicatedService;
  let receiver: WebhookReceiver;
  let redis: Redis;

  beforeAll(async () => {
    receiver = await startWebhookReceiver();
    // A dead replica's entries are taken over after a second, so the test does not wait the default 30 s.
    replicas = await startReplicatedService({ WEBHOOK_ALLOWED_HOSTS: "127.0.0.1", STREAM_CLAIM_IDLE_MS: "1000" });
    redis = new Redis(replicas.redisUrl);
  }, 90_000);

  afterAll(async () => {
    redis?.disconnect();
    await replicas?.stop();
    await receiver?.close();
  });

  it("runs the SDK flow with commands on replica A and every read on replica B", async () => {
    // GETs go to replica B, everything else to replica A: a read right after a command's answer sees its result.
    const routed: typeof fetch = (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      const method = init?.method ?? (input instanceof Request ? input.method : "GET");
      const target = method.toUpperCase() === "GET" ? replicas.b.baseUrl : replicas.a.baseUrl;
      return fetch(`${target}${url.pathname}${url.search}`, init);
    };
    const client = new Hypeman({ apiKey: REPLICA_API_KEY, baseURL: replicas.a.baseUrl, maxRetries: 0, fetch: routed });
    await runSdkFlow({ client, api: (path) => replicas.b.api(path), dataDir: replicas.a.service.dataDir });
  });

  it("loses nothing when replica B dies mid-flow: replica A projects and delivers what B had taken", async () => {
    const { a, b } = replicas;
    const subscription = await jsonOf(await b.api("/webhooks", { json: { url: receiver.url } }));
    expect(subscription.secret).toMatch(/^whsec_/);
    const key = eventStreamKey(replicas.prefix);
    const [lastBefore] = (await redis.xrevrange(key, "+", "-", "COUNT", 1)).map(([id]) => id);

    const source = await jsonOf(await a.api("/instances", { json: { name: "kill-src", size: "128MB" } }));
    await waitForTick((path) => a.api(path), "kill-src", 1, 60_000);
    // B is frozen in the middle of a burst of events, so it dies holding entries it read and never acknowledged.
    // Which replica reads what is Redis's choice: repeat until B holds some.
    const stream = new EventStream(redis, replicas.prefix);
    const burst: Snapshot[] = [];
    let pendingOnB = 0;
    for (let attempt = 0; attempt < 5 && pendingOnB === 0; attempt++) {
      if (attempt > 0) {
        b.process.kill("SIGCONT");
        await waitFor(async () => (await b.api("/health")).status === 200 || undefined, { what: "replica B again" });
      }
      for (let index = 0; index < BURST; index++) {
        if (index === BURST / 2) b.process.kill("SIGSTOP");
        const snapshot = sampleSnapshot(source, { name: `burst-${attempt}-${index}` });
        burst.push(snapshot);
        await stream.append("snapshot.created", subjectOf.snapshot(snapshot.id), { snapshot }, { version: 1 });
      }
      pendingOnB = await pendingOf(redis, key, "replica-b");
    }
    b.process.kill("SIGKILL");
    expect(pendingOnB, "replica B held unacknowledged entries when it was killed").toBeGreaterThan(0);

    // Replica A alone from here: it takes B's entries over, and goes on with the rest of the flow.
    const created = await a.api(`/instances/${source.id}/snapshots`, {
      json: { kind: "Standby", name: "mid-kill", compression: { enabled: true, algorithm: "zstd", level: 1 } },
    });
    expect(created.status).toBe(201);
    const snapshot = await jsonOf(created);

    await waitFor(
      async () =>
        (await jsonOf(await a.api(`/snapshots/${snapshot.id}`))).compression_state === "compressed" || undefined,
      { timeoutMs: 60_000, what: "compression, seen on replica A" },
    );
    expect((await a.api(`/snapshots/${snapshot.id}`, { method: "DELETE" })).status).toBe(204);
    expect((await a.api(`/instances/${source.id}`, { method: "DELETE" })).status).toBe(204);

    // Events only: the stream also carries the hosts' full-state announcements, which are not delivered.
    // Progress goes only to endpoints that name it; an event appended again (same id) is delivered once.
    const eventsBefore = async (end: string) => [
      ...new Map(
        (await redis.xrange(key, lastBefore ? `(${lastBefore}` : "-", end))
          .flatMap(([, fields]) => decodeEvent(fields) ?? [])
          .filter((event) => event.type !== "snapshot.compression.progress")
          .map((event) => [event.id, event]),
      ).values(),
    ];
    const flow = await eventsBefore("+");
    expect(flow.map((event) => event.type)).toEqual(
      expect.arrayContaining(["snapshot.created", "snapshot.compression.completed", "snapshot.deleted"]),
    );
    // A has taken over what B held (nothing pending in any group); a marker after the flow, once delivered with no
    // delivery left pending, shows every event before it has been sent and nothing more is coming.
    await waitFor(async () => ((await pendingOf(redis, key)) === 0 ? true : undefined), {
      timeoutMs: 30_000,
      what: "no entry pending in any group",
    });
    const marker = await appendMarker(stream, flow.at(-1)!);
    await waitForMarkerDelivered((path) => a.api(path), subscription.id, receiver, marker.event.id);
    const appended = await eventsBefore(`(${marker.streamId}`);
    const received = receiver.requests
      .map((request) => String(request.headers["webhook-id"]))
      .filter((id) => id !== marker.event.id);
    expect(received.sort()).toEqual(appended.map((event) => event.id).sort());
    for (const request of receiver.requests) expect(verifyReceived(request, subscription.secret).type).toBeDefined();
    // What B took before it died is applied and acknowledged by A (the projector and the dispatcher take B's entries
    // over each on its own, so the read model may finish a moment after the deliveries); nothing stays pending.
    await waitFor(
      async () => {
        for (const snapshot of burst) if ((await a.api(`/snapshots/${snapshot.id}`)).status !== 200) return undefined;
        return true;
      },
      { timeoutMs: 30_000, what: "every burst snapshot on replica A" },
    );
  });
});

/** Entries read and not acknowledged in the read-model and webhooks groups (of one consumer, or of all). */
async function pendingOf(redis: Redis, key: string, consumer?: string): Promise<number> {
  let total = 0;
  for (const group of [READ_MODEL_GROUP, DISPATCH_GROUP]) {
    const summary = (await redis.xpending(key, group)) as [number, string, string, Array<[string, string]> | null];
    total += consumer ? Number(summary[3]?.find(([name]) => name === consumer)?.[1] ?? 0) : Number(summary[0]);
  }
  return total;
}
