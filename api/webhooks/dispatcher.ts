// Fan-out: reads the event stream with its own consumer group, records a delivery per matching enabled
// endpoint and enqueues its job, then acknowledges. Replays after a crash are harmless (unique per endpoint+event).
// Progress events go only to endpoints that name their type: wildcards would fill the delivery log with a full body
// per endpoint and progress step, for events that are stale seconds later.
import { setImmediate } from "node:timers/promises";
import type { Redis } from "ioredis";
import { type EventType, eventTypeMatches, type TypedEvent } from "../../shared/events/catalog.ts";
import { decodeEvent, eventStreamKey, peekEventType } from "../../shared/events/stream.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Db } from "../db/database.ts";
import { type StreamConsumer, type StreamEntries, startStreamConsumer } from "../stream-consumer.ts";
import { type DeliveryToSend, recordDeliveries } from "./deliveries.ts";
import type { WebhookEndpoints } from "./endpoints.ts";

export const DISPATCH_GROUP = "webhooks";

/** Event types delivered only to an endpoint whose event_types list the type itself, never through a wildcard. */
export const EXPLICIT_SUBSCRIPTION_TYPES: ReadonlySet<EventType> = new Set(["snapshot.compression.progress"]);

/** Events decoded between two yields to the event loop. */
const YIELD_EVERY = 20;

const matchesAny = (patterns: string[], type: string) =>
  patterns.some((pattern) => subscriptionMatches(pattern, type as EventType));

/** Does an endpoint subscribed with `pattern` get events of `type`. */
export function subscriptionMatches(pattern: string, type: EventType): boolean {
  return EXPLICIT_SUBSCRIPTION_TYPES.has(type) ? pattern === type : eventTypeMatches(pattern, type);
}

export interface WebhookDispatcherOptions {
  /** A worker-role connection the dispatcher owns for its blocking reads. */
  redis: Redis;
  prefix: string;
  db: Db;
  endpoints: WebhookEndpoints;
  jobs: JobProducer;
  log: Logger;
  blockMs?: number;
  /** This replica's consumer name (API_REPLICA_ID): replicas share the dispatching. */
  consumer: string;
  /** Events a dead replica left unacknowledged this long are dispatched here (STREAM_CLAIM_IDLE_MS). */
  claimIdleMs: number;
}

export function startWebhookDispatcher(options: WebhookDispatcherOptions): Promise<StreamConsumer> {
  const dispatch = async (entries: StreamEntries) => {
    const endpoints = await options.endpoints.listEnabled();
    if (endpoints.length === 0) return;
    const events: Array<{ streamId: string; event: TypedEvent; endpointIds: string[] }> = [];
    let decoded = 0;
    for (const [streamId, fields] of entries) {
      // Events no endpoint is subscribed to are skipped undecoded (progress events, in a burst, mostly).
      const type = peekEventType(fields);
      if (type !== undefined && !endpoints.some((endpoint) => matchesAny(endpoint.eventTypes, type))) continue;
      const event = decodeOrSkip(streamId, fields, options.log);
      // Decoding is the costly part: let requests in between, or a burst stalls the event loop.
      if (++decoded % YIELD_EVERY === 0) await setImmediate();
      if (!event) continue;
      const endpointIds = endpoints
        .filter((endpoint) => matchesAny(endpoint.eventTypes, event.type))
        .map((endpoint) => endpoint.id);
      if (endpointIds.length > 0) events.push({ streamId, event, endpointIds });
    }
    if (events.length === 0) return;
    const toSend: DeliveryToSend[] = await options.db.transaction().execute(async (trx) => {
      const all: DeliveryToSend[] = [];
      for (const { streamId, event, endpointIds } of events) {
        all.push(...(await recordDeliveries(trx, endpointIds, event, streamId)));
      }
      return all;
    });
    // The job id is the delivery id: enqueueing one twice is a no-op.
    await Promise.all(
      toSend.map((delivery) =>
        options.jobs.enqueue(
          "webhook.deliver",
          {
            delivery_id: delivery.deliveryId,
            endpoint_id: delivery.endpointId,
            event_id: delivery.eventId,
            body: delivery.body,
          },
          { jobId: delivery.deliveryId },
        ),
      ),
    );
  };

  return startStreamConsumer({
    redis: options.redis,
    key: eventStreamKey(options.prefix),
    group: DISPATCH_GROUP,
    consumer: options.consumer,
    claimIdleMs: options.claimIdleMs,
    // Webhooks deliver what happens from the first start of the dispatcher on, not the stream's history.
    startAt: "$",
    handle: dispatch,
    log: options.log,
    blockMs: options.blockMs,
  });
}

function decodeOrSkip(streamId: string, fields: string[], log: Logger): TypedEvent | undefined {
  try {
    return decodeEvent(fields);
  } catch (error) {
    log.error({ streamId, err: (error as Error).message }, "unreadable event not dispatched");
    return undefined;
  }
}
