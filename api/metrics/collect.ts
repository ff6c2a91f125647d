// Scrape-time figures read from Redis: queue depths and the oldest waiting job per queue (BullMQ), compression
// jobs running and waiting per host, and how far each consumer group is behind on the event, outcome and worker
// figure streams.
import type { Redis } from "ioredis";
import { eventStreamKey } from "../../shared/events/stream.ts";
import { type HostStatus, listHosts } from "../../shared/hosts.ts";
import { queueName } from "../../shared/jobs/catalog.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import { workerFigureStreamKey } from "../../shared/metrics/worker-figures.ts";
import { withDeadline } from "../../shared/redis.ts";
import { outcomeStreamKey } from "../../shared/webhooks/mirror.ts";
import type { ApiMetrics } from "./metrics.ts";

export interface CollectDeps {
  redis: Redis;
  redisPrefix: string;
  jobs: JobProducer;
  redisCommandTimeoutMs: number;
}

const JOB_STATES = ["waiting", "active", "delayed", "prioritized", "failed", "completed"] as const;

export interface QueueDepth {
  queue: string;
  counts: Record<(typeof JOB_STATES)[number], number>;
  oldestWaitingSeconds: number;
}

/** Every queue the service uses: the shared webhooks queue and each known host's host and compression queues. */
export async function knownQueues(
  deps: CollectDeps,
  hosts?: HostStatus[],
): Promise<Array<{ name: string; host?: string; family: string }>> {
  hosts ??= await listHosts(deps.redis, deps.redisPrefix);
  return [
    { name: queueName("webhooks"), family: "webhooks" },
    ...hosts.flatMap((host) =>
      (["host", "compression"] as const).map((family) => ({ name: queueName(family, host.id), host: host.id, family })),
    ),
  ];
}

export async function queueDepth(deps: CollectDeps, name: string): Promise<QueueDepth> {
  const queue = deps.jobs.queue(name);
  const [counts, oldest] = await Promise.all([queue.getJobCounts(...JOB_STATES), queue.getWaiting(0, 0)]);
  const waitingSince = oldest[0]?.timestamp;
  return {
    queue: name,
    counts: Object.fromEntries(JOB_STATES.map((state) => [state, counts[state] ?? 0])) as QueueDepth["counts"],
    oldestWaitingSeconds: waitingSince ? Math.max(0, (Date.now() - waitingSince) / 1000) : 0,
  };
}

/** Sets every scrape-time gauge; leaves them as they were when Redis does not answer in time. */
export async function collectRedisGauges(deps: CollectDeps, metrics: ApiMetrics): Promise<void> {
  const work = async () => {
    const hosts = await listHosts(deps.redis, deps.redisPrefix);
    setQuarantined(metrics, hosts);
    const queues = await knownQueues(deps, hosts);
    const depths = await Promise.all(queues.map((queue) => queueDepth(deps, queue.name)));
    metrics.queueJobs.reset();
    metrics.queueOldestWaiting.reset();
    metrics.compressionActive.reset();
    metrics.compressionPending.reset();
    queues.forEach((queue, index) => {
      const depth = depths[index]!;
      for (const state of JOB_STATES) metrics.queueJobs.set({ queue: queue.name, state }, depth.counts[state]);
      metrics.queueOldestWaiting.set({ queue: queue.name }, depth.oldestWaitingSeconds);
      if (queue.family !== "compression" || !queue.host) return;
      metrics.compressionActive.set({ host: queue.host }, depth.counts.active);
      const { waiting, delayed, prioritized } = depth.counts;
      metrics.compressionPending.set({ host: queue.host }, waiting + delayed + prioritized);
    });
    metrics.streamLag.reset();
    for (const [stream, key] of [
      ["events", eventStreamKey(deps.redisPrefix)],
      ["webhook-outcomes", outcomeStreamKey(deps.redisPrefix)],
      ["worker-figures", workerFigureStreamKey(deps.redisPrefix)],
    ] as const) {
      for (const group of await consumerGroups(deps.redis, key)) {
        if (group.lag !== null) metrics.streamLag.set({ stream, group: group.name }, group.lag);
      }
    }
  };
  await withDeadline(work(), deps.redisCommandTimeoutMs * 3, "collect queue metrics").catch(() => {});
}

/** XINFO GROUPS as name and lag (null when Redis cannot tell, e.g. after a trim past the group). */
async function consumerGroups(redis: Redis, key: string): Promise<Array<{ name: string; lag: number | null }>> {
  const reply = (await redis.xinfo("GROUPS", key).catch(() => [])) as unknown[][];
  return reply.map((fields) => {
    const info = new Map<string, unknown>();
    for (let index = 0; index + 1 < fields.length; index += 2) info.set(String(fields[index]), fields[index + 1]);
    const lag = info.get("lag");
    return { name: String(info.get("name")), lag: typeof lag === "number" ? lag : null };
  });
}

/** Per host and kind, how many resource directories the host holds in quarantine (as its directory entry lists). */
function setQuarantined(metrics: ApiMetrics, hosts: HostStatus[]): void {
  metrics.quarantined.reset();
  for (const host of hosts) {
    for (const kind of ["instance", "snapshot"] as const) {
      metrics.quarantined.set(
        { host: host.id, kind },
        (host.quarantined ?? []).filter((entry) => entry.kind === kind).length,
      );
    }
  }
}
