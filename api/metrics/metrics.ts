// The API's Prometheus instruments. Names follow the reference server's (`hypeman_*` there, `snapfleet_*` here)
// where it has one; workers expose no port of their own: their figures come from the events they append, the
// webhook outcomes and worker figures they report and the queues they drain, all read here (see
// api/metrics/observe.ts, collect.ts).
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Seconds, from a few milliseconds (capture downtime) to minutes (compressing a large guest). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const BYTE_BUCKETS = [1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20, 1 << 30, 4 << 30, 16 << 30];
const RATIO_BUCKETS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1];

export class ApiMetrics {
  readonly registry = new Registry();

  readonly compressionJobs = new Counter({
    name: "snapfleet_snapshot_compression_jobs_total",
    help: "Snapshot compression jobs that finished, by algorithm, level and result (success or failed)",
    labelNames: ["algorithm", "level", "result"] as const,
    registers: [this.registry],
  });

  readonly compressionDuration = new Histogram({
    name: "snapfleet_snapshot_compression_duration_seconds",
    help: "Time from a compression's start event to its completed or failed event",
    labelNames: ["algorithm", "level", "result"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly compressionSavedBytes = new Histogram({
    name: "snapfleet_snapshot_compression_saved_bytes",
    help: "Bytes saved by compressing snapshot memory (uncompressed minus compressed)",
    labelNames: ["algorithm", "level"] as const,
    buckets: BYTE_BUCKETS,
    registers: [this.registry],
  });

  readonly compressionRatio = new Histogram({
    name: "snapfleet_snapshot_compression_ratio",
    help: "Compressed snapshot memory size divided by its uncompressed size",
    labelNames: ["algorithm", "level"] as const,
    buckets: RATIO_BUCKETS,
    registers: [this.registry],
  });

  readonly readModelDeadLetters = new Counter({
    name: "snapfleet_read_model_dead_letters_total",
    help: "Event stream entries the read model set aside (GET /events/dead-letters): failed to apply, or unreadable",
    registers: [this.registry],
  });

  readonly readModelVanished = new Counter({
    name: "snapfleet_read_model_vanished_total",
    help: "Instances and snapshots removed because two complete announcements of their host lacked them",
    labelNames: ["kind", "host"] as const,
    registers: [this.registry],
  });

  readonly compressionActive = new Gauge({
    name: "snapfleet_snapshot_compression_active_total",
    help: "Compression jobs running now, per host (its compression queue's active jobs)",
    labelNames: ["host"] as const,
    registers: [this.registry],
  });

  readonly compressionPending = new Gauge({
    name: "snapfleet_snapshot_compression_pending_total",
    help: "Compression jobs waiting to start, per host (waiting, delayed and prioritized jobs of its queue)",
    labelNames: ["host"] as const,
    registers: [this.registry],
  });

  readonly standbyDuration = new Histogram({
    name: "snapfleet_instances_standby_duration_seconds",
    help: "Time to put an instance in standby (POST /instances/{id}/standby), by the instance's compression policy",
    labelNames: ["status", "algorithm", "level"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly restoreDuration = new Histogram({
    name: "snapfleet_instances_restore_duration_seconds",
    help: "Time to restore an instance from standby (POST /instances/{id}/restore), by its compression policy",
    labelNames: ["status", "algorithm", "level"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly captureDowntime = new Histogram({
    name: "snapfleet_snapshot_capture_downtime_seconds",
    help: "How long a Running source was paused while a Standby snapshot was captured",
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly restoreMemoryPrepare = new Counter({
    name: "snapfleet_snapshot_restore_memory_prepare_total",
    help: "Restores that readied an instance's RAM, by hypervisor, restore_source (raw, or decompress when it was packed) and result",
    labelNames: ["hypervisor", "restore_source", "result"] as const,
    registers: [this.registry],
  });

  readonly restoreMemoryPrepareDuration = new Histogram({
    name: "snapfleet_snapshot_restore_memory_prepare_duration_seconds",
    help: "Time a restore took to ready an instance's RAM (unpacking it when a standby compression had packed it)",
    labelNames: ["hypervisor", "restore_source", "result"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly timeToRunning = new Histogram({
    name: "snapfleet_instances_time_to_running_seconds",
    help: "Time from a command's acceptance (its job queued) to the instance Running on its host, by operation and hypervisor",
    labelNames: ["operation", "hypervisor"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly codecFallbacks = new Counter({
    name: "snapfleet_snapshot_codec_fallbacks_total",
    help: "Worker processes that asked for the auto codec backend and fell back from the native addon to the packages one",
    labelNames: ["process", "reason"] as const,
    registers: [this.registry],
  });

  readonly forkDuration = new Histogram({
    name: "snapfleet_snapshot_fork_duration_seconds",
    help: "Time to fork a snapshot into a new instance (POST /snapshots/{id}/fork), by target state and status",
    labelNames: ["target_state", "compression_state", "status"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly queueJobs = new Gauge({
    name: "snapfleet_queue_jobs",
    help: "Jobs on a queue by BullMQ state (waiting, active, delayed, prioritized, failed, completed)",
    labelNames: ["queue", "state"] as const,
    registers: [this.registry],
  });

  readonly queueOldestWaiting = new Gauge({
    name: "snapfleet_queue_oldest_waiting_seconds",
    help: "Age of the oldest job waiting on a queue; 0 when none waits",
    labelNames: ["queue"] as const,
    registers: [this.registry],
  });

  readonly quarantined = new Gauge({
    name: "snapfleet_host_quarantined_records",
    help: "Instance and snapshot directories a host moved aside because their records cannot be read, per host and kind",
    labelNames: ["host", "kind"] as const,
    registers: [this.registry],
  });

  readonly streamLag = new Gauge({
    name: "snapfleet_event_consumer_lag",
    help: "Events on the stream not yet delivered to a consumer group (XINFO GROUPS lag): read-model is the projector",
    labelNames: ["stream", "group"] as const,
    registers: [this.registry],
  });

  readonly webhookDeliveries = new Counter({
    name: "snapfleet_webhook_delivery_attempts_total",
    help: "Webhook delivery attempts by outcome (succeeded, failed, gone, not_sent)",
    labelNames: ["outcome"] as const,
    registers: [this.registry],
  });

  readonly webhookLatency = new Histogram({
    name: "snapfleet_webhook_delivery_duration_seconds",
    help: "Time a receiver took to answer a webhook delivery attempt",
    labelNames: ["outcome"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  readonly httpRequests = new Counter({
    name: "snapfleet_http_requests_total",
    help: "HTTP requests by method, route pattern and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: "snapfleet_http_request_duration_seconds",
    help: "Time to answer an HTTP request (to its first byte for streams), by method, route pattern and status",
    labelNames: ["method", "route", "status"] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "snapfleet_api_" });
  }
}

/** Label values for a compression policy, as the reference server has them: "none" when off. */
export function compressionLabels(policy: { enabled: boolean; algorithm?: string; level?: number } | null) {
  if (!policy?.enabled) return { algorithm: "none", level: "none" };
  return {
    algorithm: policy.algorithm ?? "zstd",
    level: policy.level === undefined ? "default" : String(policy.level),
  };
}

/** Runs `work` and observes how long it took, with `status` "ok" or "error". */
export async function timed<Labels extends string, T>(
  histogram: Histogram<Labels | "status">,
  labels: Partial<Record<Labels, string>>,
  work: () => Promise<T>,
): Promise<T> {
  const stop = histogram.startTimer(labels as Partial<Record<Labels | "status", string>>);
  try {
    const result = await work();
    stop({ status: "ok" } as Partial<Record<Labels | "status", string>>);
    return result;
  } catch (error) {
    stop({ status: "error" } as Partial<Record<Labels | "status", string>>);
    throw error;
  }
}
