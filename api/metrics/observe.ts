// Worker figures derived in the API: a `metrics` consumer group on the event stream (capture downtime,
// compression results, sizes and durations), one on the webhook outcome stream (attempts and latency) and one on the
// worker figure stream (time to Running, restore memory preparation, codec fallbacks).
// Both groups start at "$": a new group counts from now on, and counters restart with the process, as
// Prometheus expects.
import { setImmediate } from "node:timers/promises";
import type { Redis } from "ioredis";
import type { TypedEvent } from "../../shared/events/catalog.ts";
import { decodeEvent, eventStreamKey, peekEventType } from "../../shared/events/stream.ts";
import type { Logger } from "../../shared/logger.ts";
import { decodeWorkerFigure, type WorkerFigure, workerFigureStreamKey } from "../../shared/metrics/worker-figures.ts";
import { type DeliveryOutcome, decodeOutcome, outcomeStreamKey } from "../../shared/webhooks/mirror.ts";
import { type StreamConsumer, type StreamEntries, startStreamConsumer } from "../stream-consumer.ts";
import { type ApiMetrics, compressionLabels } from "./metrics.ts";

export const METRICS_GROUP = "metrics";
/** Compressions whose start was seen and whose end was not: bounded, so a lost end cannot grow it forever. */
const MAX_OPEN_COMPRESSIONS = 10_000;
/** Entries handled between two yields to the event loop. */
const YIELD_EVERY = 20;

/** Turns events into observations; keeps the start time of each compression in flight. */
export class EventObserver {
  /** The only event types observed: the reader skips the others without decoding them. */
  static readonly TYPES: ReadonlySet<string> = new Set([
    "snapshot.created",
    "snapshot.compression.started",
    "snapshot.compression.completed",
    "snapshot.compression.failed",
  ]);
  private readonly compressionStarts = new Map<string, number>();

  constructor(private readonly metrics: ApiMetrics) {}

  observe(event: TypedEvent): void {
    switch (event.type) {
      case "snapshot.created": {
        const downtime = (event as TypedEvent<"snapshot.created">).data.snapshot.capture_downtime_ms;
        if (downtime !== null) this.metrics.captureDowntime.observe(downtime / 1000);
        return;
      }
      case "snapshot.compression.started":
        if (this.compressionStarts.size >= MAX_OPEN_COMPRESSIONS) this.compressionStarts.clear();
        this.compressionStarts.set(
          (event as TypedEvent<"snapshot.compression.started">).data.snapshot.id,
          Date.parse(event.occurred_at),
        );
        return;
      case "snapshot.compression.completed":
      case "snapshot.compression.failed":
        this.compressionFinished(event as TypedEvent<"snapshot.compression.completed" | "snapshot.compression.failed">);
        return;
    }
  }

  private compressionFinished(event: TypedEvent<"snapshot.compression.completed" | "snapshot.compression.failed">) {
    const { snapshot } = event.data;
    const labels = compressionLabels(snapshot.compression);
    const result = event.type === "snapshot.compression.completed" ? "success" : "failed";
    this.metrics.compressionJobs.inc({ ...labels, result });
    const startedAt = this.compressionStarts.get(snapshot.id);
    this.compressionStarts.delete(snapshot.id);
    if (startedAt !== undefined) {
      this.metrics.compressionDuration.observe(
        { ...labels, result },
        (Date.parse(event.occurred_at) - startedAt) / 1000,
      );
    }
    const { compressed_size_bytes: compressed, uncompressed_size_bytes: uncompressed } = snapshot;
    if (result !== "success" || compressed === null || !uncompressed) return;
    this.metrics.compressionSavedBytes.observe(labels, Math.max(0, uncompressed - compressed));
    this.metrics.compressionRatio.observe(labels, compressed / uncompressed);
  }
}

export function observeOutcome(metrics: ApiMetrics, outcome: DeliveryOutcome): void {
  const label = !outcome.sent ? "not_sent" : outcome.succeeded ? "succeeded" : outcome.gone ? "gone" : "failed";
  metrics.webhookDeliveries.inc({ outcome: label });
  if (outcome.duration_ms !== null) metrics.webhookLatency.observe({ outcome: label }, outcome.duration_ms / 1000);
}

export function observeWorkerFigure(metrics: ApiMetrics, figure: WorkerFigure): void {
  switch (figure.kind) {
    case "time_to_running":
      metrics.timeToRunning.observe({ operation: figure.operation, hypervisor: figure.hypervisor }, figure.seconds);
      return;
    case "restore_memory_prepare": {
      const { hypervisor, restore_source, result } = figure;
      metrics.restoreMemoryPrepare.inc({ hypervisor, restore_source, result });
      metrics.restoreMemoryPrepareDuration.observe({ hypervisor, restore_source, result }, figure.seconds);
      return;
    }
    case "codec_fallback":
      metrics.codecFallbacks.inc({ process: figure.process, reason: figure.reason });
      return;
  }
}

export interface MetricsObserverOptions {
  /** Worker-role connections, one per blocking reader; the observer owns none. */
  eventsRedis: Redis;
  outcomesRedis: Redis;
  figuresRedis: Redis;
  prefix: string;
  metrics: ApiMetrics;
  log: Logger;
}

/** Starts the three readers, retrying until Redis answers; returns a stop function. */
export function startMetricsObserver(options: MetricsObserverOptions): { stop(): Promise<void> } {
  const events = new EventObserver(options.metrics);
  const readers = [
    {
      redis: options.eventsRedis,
      key: eventStreamKey(options.prefix),
      handle: (fields: string[]) => {
        const type = peekEventType(fields);
        if (type !== undefined && !EventObserver.TYPES.has(type)) return; // most events: nothing to observe
        const event = decodeEvent(fields); // host announcements carry no event
        if (event) events.observe(event);
      },
    },
    {
      redis: options.outcomesRedis,
      key: outcomeStreamKey(options.prefix),
      handle: (fields: string[]) => observeOutcome(options.metrics, decodeOutcome(fields)),
    },
    {
      redis: options.figuresRedis,
      key: workerFigureStreamKey(options.prefix),
      handle: (fields: string[]) => observeWorkerFigure(options.metrics, decodeWorkerFigure(fields)),
    },
  ];
  let stopped = false;
  const consumers: StreamConsumer[] = [];
  const starting = readers.map(async (reader) => {
    while (!stopped) {
      try {
        consumers.push(await startReader(reader, options.log));
        return;
      } catch (error) {
        options.log.debug({ err: (error as Error).message }, "metrics reader cannot start yet; retrying");
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
  });
  return {
    async stop() {
      stopped = true;
      await Promise.race([Promise.all(starting), new Promise((resolve) => setTimeout(resolve, 1_500).unref())]);
      await Promise.all(consumers.map((consumer) => consumer.stop()));
    },
  };
}

function startReader(
  reader: { redis: Redis; key: string; handle: (fields: string[]) => void },
  log: Logger,
): Promise<StreamConsumer> {
  const handle = async (entries: StreamEntries) => {
    for (const [index, [, fields]] of entries.entries()) {
      try {
        reader.handle(fields);
      } catch (error) {
        log.warn({ stream: reader.key, err: (error as Error).message }, "metrics skipped an unreadable entry");
      }
      // A batch is up to 200 entries: let requests in between, or a burst stalls the event loop.
      if (index % YIELD_EVERY === YIELD_EVERY - 1) await setImmediate();
    }
  };
  return startStreamConsumer({
    redis: reader.redis,
    key: reader.key,
    group: METRICS_GROUP,
    consumer: "api",
    startAt: "$",
    handle,
    log,
  });
}
