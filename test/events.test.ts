// GET /events over real HTTP: live SSE from the durable stream, resumable by Last-Event-ID with no gap and
// no duplicate, filtered, with heartbeats, ended cleanly when the API shuts down.
import { type ServerType, serve } from "@hono/node-server";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AppendedEvent, EventStream } from "../shared/events/stream.ts";
import { trimStream } from "../shared/events/trim.ts";
import { createLogger } from "../shared/logger.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../shared/redis.ts";
import { createTestApp, TEST_API_KEY, type TestApp } from "./helpers/app.ts";
import { freePort, jsonOf, waitFor } from "./helpers/fixtures.ts";
import { appendMarker, appendSnapshotFlow } from "./helpers/flow-events.ts";
import { describeWith } from "./helpers/needs.ts";

interface SseMessage {
  id?: string;
  event?: string;
  data: string;
}

/** A minimal SSE client on fetch: collects messages and comments until closed. */
function connect(baseUrl: string, path: string, headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const messages: SseMessage[] = [];
  const comments: string[] = [];
  let status = 0;
  let ended = false;
  const done = (async () => {
    const response = await fetch(`${baseUrl}${path}`, {
      headers: { authorization: `Bearer ${TEST_API_KEY}`, ...headers },
      signal: controller.signal,
    });
    status = response.status;
    if (!response.body) return;
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk as Uint8Array, { stream: true });
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const message: SseMessage = { data: "" };
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) comments.push(line.slice(1).trim());
            else if (line.startsWith("id: ")) message.id = line.slice(4);
            else if (line.startsWith("event: ")) message.event = line.slice(7);
            else if (line.startsWith("data: ")) message.data += line.slice(6);
          }
          if (message.data) messages.push(message);
          end = buffer.indexOf("\n\n");
        }
      }
    } catch (error) {
      if (!controller.signal.aborted) throw error;
    }
    ended = true;
  })();
  return {
    messages,
    comments,
    status: () => status,
    ended: () => ended,
    /** Messages that carry events (not the `ready` one). */
    events: () => messages.filter((message) => message.event === undefined),
    async close() {
      controller.abort();
      await done.catch(() => {});
    },
    done,
  };
}

let app: TestApp;
let server: ServerType;
let baseUrl: string;
let redis: Redis;
let events: EventStream;
beforeAll(async () => {
  app = await createTestApp({ eventsHeartbeatMs: 200 });
  const port = await freePort();
  server = serve({ fetch: app.app.fetch, port, hostname: "127.0.0.1" });
  baseUrl = `http://127.0.0.1:${port}`;
  redis = connectRedis(app.redisUrl, "producer", 1_000);
  await waitForRedisReady(redis, 5_000);
  events = new EventStream(redis, app.prefix);
});
afterAll(async () => {
  await app?.eventFeed.close();
  await new Promise<void>((resolve) => {
    server?.close(() => resolve());
    (server as unknown as { closeAllConnections?: () => void })?.closeAllConnections?.();
  });
  await closeRedis(redis);
  await app?.close();
});

const ready = (client: ReturnType<typeof connect>) =>
  waitFor(() => client.messages.find((message) => message.event === "ready"), { what: "the ready event" });

/** Waits until the client has the marker: it has had every event before it on the stream. */
const hasMarker = (client: ReturnType<typeof connect>, marker: AppendedEvent) =>
  waitFor(() => client.events().some((message) => message.id === marker.streamId) || undefined, {
    what: `the marker ${marker.streamId}`,
  });

describe("GET /events", () => {
  it("streams new events live, each with its stream position as id and its envelope as data", async () => {
    const client = connect(baseUrl, "/events");
    await ready(client);
    const flow = await appendSnapshotFlow(events);
    await waitFor(() => client.events().length >= flow.length || undefined, { what: "all events" });
    expect(client.events().map((message) => message.id)).toEqual(flow.map(({ streamId }) => streamId));
    expect(client.events().map((message) => JSON.parse(message.data))).toEqual(flow.map(({ event }) => event));
    await client.close();
  });

  it("resumes after a disconnect with Last-Event-ID: the rest of the flow, no gap, no duplicate", async () => {
    const first = connect(baseUrl, "/events");
    const { id: start } = await ready(first);
    const before = await appendSnapshotFlow(events);
    await waitFor(() => first.events().length >= 3 || undefined, { what: "three events" });
    await first.close(); // mid-flow
    const seen = first.events();
    const after = await appendSnapshotFlow(events); // appended while nobody listens

    const second = connect(baseUrl, "/events", { "last-event-id": seen.at(-1)!.id! });
    const marker = await appendMarker(events, after.at(-1)!.event); // a duplicate would arrive before it
    await hasMarker(second, marker);
    const expected = [...before, ...after, marker].map(({ streamId }) => streamId);
    expect([...seen, ...second.events()].map((message) => message.id)).toEqual(expected);
    expect(start).toBeDefined();
    await second.close();
  });

  it("resumes from ?after= as well", async () => {
    const flow = await appendSnapshotFlow(events);
    const client = connect(baseUrl, `/events?after=${flow[3]!.streamId}`);
    await waitFor(() => client.events().length >= 3 || undefined, { what: "the last three events" });
    expect(client.events().map((message) => message.id)).toEqual(flow.slice(4).map(({ streamId }) => streamId));
    await client.close();
  });

  it("tells a reader whose position was trimmed away with a reset event, then goes on from what is kept", async () => {
    const flow = await appendSnapshotFlow(events);
    // The service's own groups (projector, dispatcher) first take everything, so only "behind" holds the trim back.
    await waitFor(
      async () => {
        const groups = (await redis.xinfo("GROUPS", events.key)) as Array<Array<string | number>>;
        const settled = groups.every((fields) => {
          const info = new Map<string, string | number>();
          for (let index = 0; index + 1 < fields.length; index += 2)
            info.set(String(fields[index]), fields[index + 1]!);
          return Number(info.get("pending")) === 0 && info.get("last-delivered-id") === flow.at(-1)!.streamId;
        });
        return settled || undefined;
      },
      { what: "the service's consumer groups to catch up" },
    );
    // A consumer group that has read up to flow[3]: trimming keeps what it still needs, flow[4] on.
    await redis.xgroup("CREATE", events.key, "behind", flow[3]!.streamId);
    await trimStream(redis, events.key, 1_000_000, createLogger("test", "silent"));
    await redis.xgroup("DESTROY", events.key, "behind");
    const client = connect(baseUrl, `/events?after=${flow[1]!.streamId}`);
    await waitFor(() => client.events().length >= 3 || undefined, { what: "the kept events" });
    const reset = client.messages.find((message) => message.event === "reset");
    expect(JSON.parse(reset!.data)).toEqual({ requested: flow[1]!.streamId, position: flow[3]!.streamId });
    expect(reset!.id).toBe(flow[3]!.streamId);
    expect(client.events().map((message) => message.id)).toEqual(flow.slice(4).map(({ streamId }) => streamId));
    await client.close();
  });

  it("filters by type, snapshot id and instance id", async () => {
    const last = (await redis.xrevrange(events.key, "+", "-", "COUNT", 1))[0]?.[0] ?? "0";
    const flow = await appendSnapshotFlow(events);
    const snapshotId = (flow[1]!.event.data as { snapshot: { id: string } }).snapshot.id;
    const instanceId = (flow[0]!.event.data as { instance: { id: string } }).instance.id;
    const from = `after=${last}`;
    const byType = connect(baseUrl, `/events?${from}&types=snapshot.compression.*,instance.forked`);
    const bySnapshot = connect(baseUrl, `/events?${from}&snapshot_id=${snapshotId}`);
    const byInstance = connect(baseUrl, `/events?${from}&instance_id=${instanceId}`);
    // A copy of the snapshot's compression.started passes all three filters: after it, nothing more is on its way.
    const marker = await appendMarker(events, flow[2]!.event);
    await Promise.all([byType, bySnapshot, byInstance].map((client) => hasMarker(client, marker)));
    const types = (client: ReturnType<typeof connect>) => client.events().map((m) => JSON.parse(m.data).type);
    expect(types(byType)).toEqual([
      "snapshot.compression.started",
      "snapshot.compression.progress",
      "snapshot.compression.completed",
      "instance.forked",
      marker.event.type,
    ]);
    // The snapshot's own events and the fork made from it.
    expect(types(bySnapshot)).toEqual([...flow.slice(1), marker].map(({ event }) => event.type));
    // The instance's own event and every event of snapshots taken from it.
    const ofInstance = flow.filter((_, index) => index !== 5);
    expect(types(byInstance)).toEqual([...ofInstance, marker].map(({ event }) => event.type));
    await Promise.all([byType.close(), bySnapshot.close(), byInstance.close()]);
  });

  it("sends heartbeats while idle", async () => {
    const client = connect(baseUrl, "/events");
    await waitFor(() => client.comments.includes("heartbeat") || undefined, { what: "a heartbeat" });
    await client.close();
  });

  it("refuses a bad position or type, and anonymous callers", async () => {
    const badId = await fetch(`${baseUrl}/events`, {
      headers: { authorization: `Bearer ${TEST_API_KEY}`, "last-event-id": "yesterday" },
    });
    expect(badId.status).toBe(400);
    expect((await jsonOf(badId)).code).toBe("invalid_request");
    const badType = await fetch(`${baseUrl}/events?types=snapshots.*`, {
      headers: { authorization: `Bearer ${TEST_API_KEY}` },
    });
    expect(badType.status).toBe(400);
    expect((await fetch(`${baseUrl}/events`)).status).toBe(401);
  });

  it("ends every stream cleanly when the API shuts down", async () => {
    const clients = [connect(baseUrl, "/events"), connect(baseUrl, "/events?types=snapshot.*")];
    await Promise.all(clients.map(ready));
    await app.eventFeed.close();
    await Promise.all(clients.map((client) => client.done));
    expect(clients.every((client) => client.ended() && client.status() === 200)).toBe(true);
  });
});

/** Serves an app over real HTTP on a free port. */
async function serveOnPort(served: TestApp) {
  const port = await freePort();
  const httpServer = serve({ fetch: served.app.fetch, port, hostname: "127.0.0.1" });
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    async close() {
      await served.eventFeed.close();
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        (httpServer as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
    },
  };
}

describeWith("postgres", "GET /events on two replicas (postgres)", () => {
  it("resumes on the other replica with Last-Event-ID and misses nothing", async () => {
    const replicaA = await createTestApp({ dialect: "postgres", replicaId: "replica-a" });
    const replicaB = await createTestApp({ replicaOf: replicaA, replicaId: "replica-b" });
    const [httpA, httpB] = await Promise.all([serveOnPort(replicaA), serveOnPort(replicaB)]);
    try {
      const stream = new EventStream(redis, replicaA.prefix);
      const onA = connect(httpA.baseUrl, "/events");
      await ready(onA);
      const before = await appendSnapshotFlow(stream);
      await waitFor(() => onA.events().length >= 3 || undefined, { what: "three events on replica A" });
      await onA.close(); // replica A's client drops mid-flow
      const seen = onA.events();
      const after = await appendSnapshotFlow(stream);

      const onB = connect(httpB.baseUrl, "/events", { "last-event-id": seen.at(-1)!.id! });
      const marker = await appendMarker(stream, after.at(-1)!.event); // a duplicate would arrive before it
      await hasMarker(onB, marker);
      const expected = [...before, ...after, marker].map(({ streamId }) => streamId);
      expect([...seen, ...onB.events()].map((message) => message.id)).toEqual(expected);
      await onB.close();
    } finally {
      await Promise.all([httpA.close(), httpB.close()]);
      await replicaB.close();
      await replicaA.close();
    }
  });
});
