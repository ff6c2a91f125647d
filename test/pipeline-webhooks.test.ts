// Webhooks on the real pipeline: a receiver verifying signatures gets every event of a snapshot → compress →
// fork → delete flow on QEMU guests, once each, with the whole resource as data.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeEvent, EventStream } from "../shared/events/stream.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { appendMarker } from "./helpers/flow-events.ts";
import { type RunningService, startService } from "./helpers/service.ts";
import { startWebhookReceiver, verifyReceived, type WebhookReceiver } from "./helpers/webhook-receiver.ts";
import { waitForMarkerDelivered } from "./helpers/webhook-settled.ts";

let service: RunningService;
let receiver: WebhookReceiver;

beforeAll(async () => {
  receiver = await startWebhookReceiver();
  service = await startService({ WEBHOOK_ALLOWED_HOSTS: "127.0.0.1" });
}, 60_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
  await receiver?.close();
});

/** The service's own Redis (embedded, on a port only its log names). */
function serviceRedisUrl(): string {
  const line = service
    .output()
    .split("\n")
    .find((candidate) => candidate.includes('"embedded redis started"'));
  return JSON.parse(line!).url as string;
}

describe("webhooks on the real pipeline", () => {
  it("delivers every event of snapshot → compress → fork → delete once, verifiably signed", async () => {
    const subscription = await jsonOf(
      await service.api("/webhooks", { json: { url: receiver.url, event_types: ["snapshot.*", "instance.*"] } }),
    );
    expect(subscription.secret).toMatch(/^whsec_/);
    const redis = new Redis(serviceRedisUrl());
    try {
      const [lastBefore] = (await redis.xrevrange("snapfleet:events", "+", "-", "COUNT", 1)).map(([id]) => id);

      const source = await jsonOf(await service.api("/instances", { json: { name: "hook-src", size: "128MB" } }));
      const snapshot = await jsonOf(
        await service.api(`/instances/${source.id}/snapshots`, {
          json: { kind: "Standby", name: "hooked", compression: { enabled: true, algorithm: "zstd", level: 1 } },
        }),
      );
      await waitFor(
        async () =>
          (await jsonOf(await service.api(`/snapshots/${snapshot.id}`))).compression_state === "compressed" ||
          undefined,
        { timeoutMs: 60_000, what: "compression" },
      );
      const fork = await service.api(`/snapshots/${snapshot.id}/fork`, { json: { name: "hook-fork" } });
      expect(fork.status).toBe(201);
      expect((await service.api(`/snapshots/${snapshot.id}`, { method: "DELETE" })).status).toBe(204);

      // Everything the flow appended, then a marker after it: once the marker is delivered, nothing more is coming.
      const deleted = await waitFor(async () =>
        (await redis.xrange("snapfleet:events", lastBefore ? `(${lastBefore}` : "-", "+"))
          .map(([, fields]) => decodeEvent(fields))
          .find((event) => event?.type === "snapshot.deleted"),
      );
      const marker = await appendMarker(new EventStream(redis, "snapfleet"), deleted);
      await waitForMarkerDelivered(service.api, subscription.id, receiver, marker.event.id);
      const appended = (
        await redis.xrange("snapfleet:events", lastBefore ? `(${lastBefore}` : "-", `(${marker.streamId}`)
      )
        .flatMap(([, fields]) => decodeEvent(fields) ?? [])
        .filter((event) => event.type !== "snapshot.compression.progress"); // wildcards do not get progress
      // One event per step, each with its own id (a re-appended event keeps its id and counts once).
      const typeById = new Map(appended.map((event) => [event.id, event.type]));
      expect([...typeById.values()].sort()).toEqual(
        [
          "instance.created",
          "snapshot.created",
          "snapshot.compression.started",
          "snapshot.compression.completed",
          "instance.forked",
          "snapshot.deleted",
        ].sort(),
      );

      const requests = receiver.requests.filter((request) => request.headers["webhook-id"] !== marker.event.id);
      const received = requests.map((request) => String(request.headers["webhook-id"]));
      // A re-appended event (same id) is one event: it is delivered once.
      expect(received.sort()).toEqual([...new Set(appended.map((event) => event.id))].sort());
      for (const request of requests) {
        const body = verifyReceived(request, subscription.secret);
        const event = appended.find((candidate) => candidate.id === request.headers["webhook-id"])!;
        expect(body).toEqual({ type: event.type, timestamp: event.occurred_at, data: event.data });
      }
      const completed = appended.find((event) => event.type === "snapshot.compression.completed")!;
      expect(
        (completed.data as { snapshot: { compressed_size_bytes: number } }).snapshot.compressed_size_bytes,
      ).toBeGreaterThan(0);
    } finally {
      redis.disconnect();
    }
  });
});
