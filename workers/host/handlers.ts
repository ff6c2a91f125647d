// Handlers of the host queue, keyed by job name: each delegates to the part of the host agent that owns it, passing
// the job id so that a re-run of the same job (BullMQ re-runs stalled jobs) returns the first run's result.

import type { Job } from "bullmq";
import type { StandbyMemory } from "../../shared/instances/standby-memory.ts";
import type { JobEnvelope, JobProducer } from "../../shared/jobs/producer.ts";
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import type { RunningOperation, WorkerFigure } from "../../shared/metrics/worker-figures.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { HostAnnouncer } from "./announcer.ts";
import type { InstanceForker } from "./instance-fork.ts";
import type { InstanceManager } from "./instances.ts";
import type { Replicas } from "./replicas.ts";
import type { SnapshotRecompressor } from "./snapshot-recompress.ts";
import type { SnapshotManager } from "./snapshots.ts";
import { scheduleStandbyCompression } from "./standby-compression.ts";

export interface HostHandlerDeps {
  hostId: string;
  instances: InstanceManager;
  snapshots: SnapshotManager;
  replicas: Replicas;
  announcer: HostAnnouncer;
  forks: InstanceForker;
  recompressor: SnapshotRecompressor;
  standbyMemory: StandbyMemory;
  jobs: JobProducer;
  /** Where time-to-Running and restore memory figures go (shared/metrics/worker-figures.ts). */
  reportFigure: (figure: WorkerFigure) => void;
}

type InstanceJobs =
  | "host.ping"
  | "host.announce"
  | "instance.create"
  | "instance.stop"
  | "instance.start"
  | "instance.standby"
  | "instance.standby.compression.changed"
  | "instance.restore"
  | "instance.delete"
  | "instance.logs"
  | "instance.stats"
  | "snapshot.capture"
  | "snapshot.fork"
  | "snapshot.restore"
  | "snapshot.delete"
  | "snapshot.replicate"
  | "snapshot.adopt"
  | "snapshot.drop-replica"
  | "instance.fork"
  | "snapshot.recompress";

export function createHostHandlers({
  hostId,
  instances,
  snapshots,
  replicas,
  forks,
  recompressor,
  standbyMemory,
  jobs,
  announcer,
  reportFigure,
}: HostHandlerDeps): JobHandlers<InstanceJobs> {
  // Whatever reads or replaces a Standby instance's RAM runs with it raw: after a compression in flight, unpacked.
  /** Publishes where the instance's standby compression stands now, read from its files. */
  const refreshCompression = (instanceId: string, error?: string) =>
    instances.refreshStandbyCompression(instanceId, () => standbyMemory.status(instanceId, error));
  // A snapshot or fork of a Standby instance leaves its RAM unpacked: the instance shows that after the operation.
  const raw = async <T>(instanceId: string, operation: () => Promise<T>) => {
    try {
      return await standbyMemory.whileRaw(instanceId, operation);
    } finally {
      await refreshCompression(instanceId).catch(() => false);
    }
  };
  /** The command was accepted when its job was queued: from then to the instance Running is its time to Running. */
  const untilRunning = async <Result extends { instance: Instance }>(
    operation: RunningOperation,
    job: Job<JobEnvelope>,
    work: Promise<Result>,
  ): Promise<Result> => {
    const result = await work;
    if (result.instance.state === "Running") {
      const seconds = Math.max(0, (Date.now() - job.timestamp) / 1000);
      reportFigure({ kind: "time_to_running", operation, hypervisor: result.instance.hypervisor, seconds });
    }
    return result;
  };
  return {
    "host.ping": async () => ({ hostId, receivedAt: new Date().toISOString() }),
    "host.announce": async ({ reason, scope }) => {
      await announcer.announce(`requested: ${reason}`, { scope });
      return { hostId, receivedAt: new Date().toISOString() };
    },
    "instance.create": ({ instance }, { job }) => untilRunning("create", job, instances.create(instance, job.id)),
    "instance.stop": ({ instance_id }, { job }) => instances.stop(instance_id, job.id),
    "instance.start": ({ instance_id }, { job }) => untilRunning("start", job, instances.start(instance_id, job.id)),
    "instance.standby": async ({ instance_id, compression, compression_delay_ms }, { job, log }) => {
      const result = await instances.standby(instance_id, job.id);
      // The standby is done and announced: a failed step here leaves the RAM uncompressed, nothing worse. The intent
      // goes first: it is what the compression worker queues the job again from when Redis loses it.
      const delayMs = compression_delay_ms ?? 0;
      const intent = compression && { ...compression, not_before: new Date(Date.now() + delayMs).toISOString() };
      try {
        await standbyMemory.recordCompressionIntent(instance_id, intent || undefined);
        if (compression) await scheduleStandbyCompression(jobs, hostId, instance_id, compression, delayMs);
        if (await refreshCompression(instance_id)) return await instances.publishCurrent(instance_id);
      } catch (error) {
        log.warn({ instanceId: instance_id, err: (error as Error).message }, "standby compression not queued");
      }
      return result;
    },
    "instance.standby.compression.changed": async ({ instance_id, error }) => ({
      changed: await refreshCompression(instance_id, error ?? undefined),
    }),
    "instance.restore": ({ instance_id }, { job }) =>
      untilRunning(
        "restore",
        job,
        standbyMemory.whileRaw(
          instance_id,
          () => instances.restore(instance_id, job.id),
          (prepared) => reportFigure({ kind: "restore_memory_prepare", ...prepared }),
        ),
      ),
    "instance.delete": ({ instance_id }, { job }) => instances.delete(instance_id, job.id),
    "instance.logs": ({ instance_id, tail }) => instances.logs(instance_id, tail),
    "instance.stats": ({ instance_id }) => instances.stats(instance_id),
    "snapshot.capture": ({ instance_id, snapshot }, { job }) =>
      raw(instance_id, () => snapshots.capture(instance_id, snapshot, job.id)),
    // A snapshot's payload may have been evicted to the object store (replicas.ts): back on this disk first.
    "snapshot.fork": ({ snapshot_id, instance, target_state, min_version }, { job }) =>
      untilRunning(
        "fork",
        job,
        replicas.usingLocal(snapshot_id, () =>
          snapshots.fork(snapshot_id, instance, target_state, job.id, min_version),
        ),
      ),
    "snapshot.restore": ({ snapshot_id, instance_id, target_state }, { job }) =>
      untilRunning(
        "snapshot_restore",
        job,
        replicas.usingLocal(snapshot_id, () =>
          raw(instance_id, () => snapshots.restore(snapshot_id, instance_id, target_state, job.id)),
        ),
      ),
    "snapshot.delete": ({ snapshot_id }, { job }) => snapshots.delete(snapshot_id, job.id),
    "snapshot.replicate": ({ snapshot_id, owner_host_id }) => replicas.ensure(snapshot_id, owner_host_id),
    "snapshot.adopt": ({ snapshot_id, from_host_id, min_version }) =>
      replicas.adopt(snapshot_id, from_host_id, min_version),
    "snapshot.drop-replica": ({ snapshot_id }) => replicas.drop(snapshot_id),
    "instance.fork": (payload, { job }) =>
      untilRunning(
        "fork",
        job,
        raw(payload.instance_id, () => forks.fork(payload, job.id)),
      ),
    "snapshot.recompress": ({ snapshot_id, compression }, { job }) =>
      replicas.usingLocal(snapshot_id, () => recompressor.recompress(snapshot_id, compression, job.id)),
  };
}
