// GET /events: the durable event stream live, as Server-Sent Events. Each event's `id` is its stream position,
// so a client reconnecting with Last-Event-ID (or ?after=) resumes with no gap and no duplicate; a client whose
// position was trimmed away meanwhile gets a `reset` event first, so it knows it missed some.
import { createRoute, z } from "@hono/zod-openapi";
import { streamSSE } from "hono/streaming";
import { invalidRequest } from "../../shared/errors.ts";
import { eventTypeMatches, type TypedEvent } from "../../shared/events/catalog.ts";
import { decodeEvent, eventStreamKey } from "../../shared/events/stream.ts";
import { comparePositions, trimmedThrough } from "../../shared/events/trim.ts";
import { redisCall } from "../../shared/redis.ts";
import type { App, AppDeps } from "../deps.ts";
import { BEARER_SECURITY, errorResponses } from "../openapi.ts";
import { EVENT_TYPE_PATTERN } from "../webhooks/schemas.ts";

const BATCH = 200;
const POSITION = z.string().regex(/^(0|\d+-\d+)$/, "a stream position like 1718000000000-0");

const EVENTS_QUERY = z.object({
  after: POSITION.optional().openapi({ description: "Start after this position (Last-Event-ID wins if both are set)" }),
  types: z
    .string()
    .optional()
    .openapi({ description: "Comma-separated event types or wildcards", example: "snapshot.*,instance.forked" }),
  snapshot_id: z.string().max(64).optional().openapi({ description: "Only events about this snapshot" }),
  instance_id: z.string().max(64).optional().openapi({ description: "Only events about this instance" }),
});

export const streamEventsRoute = createRoute({
  method: "get",
  path: "/events",
  summary: "Follow events live (Server-Sent Events)",
  description:
    "Each SSE message carries one event envelope as data and its stream position as id. Without a position the " +
    "stream starts at the current end; a `ready` event names it. Idle streams get a comment line as heartbeat. " +
    "When events after the client's position were trimmed from the stream, a `reset` event (data: `requested`, " +
    "`position`) comes first and the stream goes on from the oldest event still kept.",
  tags: ["Events"],
  security: BEARER_SECURITY,
  request: {
    query: EVENTS_QUERY,
    headers: z.object({ "last-event-id": POSITION.optional() }),
  },
  responses: {
    200: { description: "An endless event stream", content: { "text/event-stream": { schema: z.string() } } },
    ...errorResponses(400),
  },
});

export function registerEventRoutes(app: App, deps: AppDeps): void {
  const feed = deps.eventFeed;
  const key = eventStreamKey(deps.redisPrefix);
  const readStream = <T>(promise: Promise<T>) => redisCall(promise, deps.redisCommandTimeoutMs, "event stream read");

  app.openapi(streamEventsRoute, async (c) => {
    const query = c.req.valid("query");
    const matches = eventFilter(query);
    const start =
      c.req.valid("header")["last-event-id"] ??
      query.after ??
      (await readStream(deps.redis.xrevrange(key, "+", "-", "COUNT", 1)))[0]?.[0] ??
      "0-0";

    return streamSSE(c, async (stream) => {
      const stop = new AbortController();
      stream.onAbort(() => stop.abort());
      const onClose = () => stop.abort();
      feed.signal.addEventListener("abort", onClose, { once: true });
      if (feed.signal.aborted) stop.abort(); // arrived while the API was already shutting down
      let position = start;
      try {
        await stream.writeSSE({ event: "ready", id: position, data: JSON.stringify({ position }) });
        while (!stop.signal.aborted) {
          const version = feed.version;
          // Trims remove from the head: everything up to `trimmed` is gone.
          const trimmed = await readStream(trimmedThrough(deps.redis, key));
          if (comparePositions(trimmed, position) > 0) {
            await stream.writeSSE({
              event: "reset",
              id: trimmed,
              data: JSON.stringify({ requested: position, position: trimmed }),
            });
            position = trimmed;
          }
          const entries = await readStream(deps.redis.xrange(key, `(${position}`, "+", "COUNT", BATCH));
          for (const [streamId, fields] of entries) {
            position = streamId;
            const event = decodeOrSkip(fields);
            if (event && matches(event)) await stream.writeSSE({ id: streamId, data: JSON.stringify(event) });
          }
          if (entries.length === BATCH) continue;
          const changed = await feed.waitForChange(version, feed.options.heartbeatMs, stop.signal);
          if (!changed && !stop.signal.aborted) await stream.write(": heartbeat\n\n");
        }
      } catch (error) {
        // The client reconnects with its Last-Event-ID; nothing is lost by ending here.
        deps.log.warn({ err: (error as Error).message }, "event stream ended on an error");
      } finally {
        feed.signal.removeEventListener("abort", onClose);
      }
    });
  });
}

function eventFilter(query: z.infer<typeof EVENTS_QUERY>): (event: TypedEvent) => boolean {
  const patterns = query.types
    ?.split(",")
    .map((pattern) => pattern.trim())
    .filter(Boolean);
  for (const pattern of patterns ?? []) {
    if (!EVENT_TYPE_PATTERN.safeParse(pattern).success) throw invalidRequest(`types: unknown event type ${pattern}`);
  }
  return (event) => {
    if (patterns?.length && !patterns.some((pattern) => eventTypeMatches(pattern, event.type))) return false;
    const data = event.data as { snapshot?: { id: string; source_instance_id: string }; snapshot_id?: string };
    if (query.snapshot_id) {
      const about = event.subject === `snapshot:${query.snapshot_id}` || data.snapshot_id === query.snapshot_id;
      if (!about) return false;
    }
    if (query.instance_id) {
      const about =
        event.subject === `instance:${query.instance_id}` || data.snapshot?.source_instance_id === query.instance_id;
      if (!about) return false;
    }
    return true;
  };
}

function decodeOrSkip(fields: string[]): TypedEvent | undefined {
  try {
    return decodeEvent(fields);
  } catch {
    return undefined; // the dispatcher and the projector log unreadable entries; a live stream just skips them
  }
}
