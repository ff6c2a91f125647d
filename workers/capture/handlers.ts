// Handlers of the host queue, keyed by job name: each delegates to the part of the host agent that owns it.
import type { StandbyMemory } from "../../shared/instances/standby-memory.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import type { InstanceForker } from "./instance-fork.ts";
import type { InstanceManager } from "./instances.ts";
import type { SnapshotRecompressor } from "./snapshot-recompress.ts";
import type { SnapshotManager } from "./snapshots.ts";
import { scheduleStandbyCompression } from "./standby-compression.ts";

export interface HostHandlerDeps {
  hostId: string;
  instances: InstanceManager;
  snapshots: SnapshotManager;
  forks: InstanceForker;
  recompressor: SnapshotRecompressor;
  standbyMemory: StandbyMemory;
  jobs: JobProducer;
}

type InstanceJobs =
  | "host.ping"
  | "instance.create"
  | "instance.stop"
  | "instance.start"
  | "instance.standby"
  | "instance.restore"
  | "instance.delete"
  | "instance.logs"
  | "snapshot.capture"
  | "snapshot.fork"
  | "snapshot.restore"
  | "snapshot.delete"
  | "instance.fork"
  | "snapshot.recompress";

export function createHostHandlers({
  hostId,
  instances,
  snapshots,
  forks,
  recompressor,
  standbyMemory,
  jobs,
}: HostHandlerDeps): JobHandlers<InstanceJobs> {
  // Whatever reads or replaces a Standby instance's RAM runs with it raw: after a compression in flight, unpacked.
  const raw = <T>(instanceId: string, operation: () => Promise<T>) => standbyMemory.whileRaw(instanceId, operation);
  return {
    "host.ping": async () => ({ hostId, receivedAt: new Date().toISOString() }),
    "instance.create": ({ instance }) => instances.create(instance),
    "instance.stop": ({ instance_id }) => instances.stop(instance_id),
    "instance.start": ({ instance_id }) => instances.start(instance_id),
    "instance.standby": async ({ instance_id, compression, compression_delay_ms }, { log }) => {
      const result = await instances.standby(instance_id);
      if (compression) {
        // The standby is done and announced: a failed enqueue leaves the RAM uncompressed, nothing worse.
        await scheduleStandbyCompression(jobs, hostId, instance_id, compression, compression_delay_ms ?? 0).catch(
          (error: Error) => log.warn({ instanceId: instance_id, err: error.message }, "standby compression not queued"),
        );
      }
      return result;
    },
    "instance.restore": ({ instance_id }) => raw(instance_id, () => instances.restore(instance_id)),
    "instance.delete": ({ instance_id }) => instances.delete(instance_id),
    "instance.logs": ({ instance_id, tail }) => instances.logs(instance_id, tail),
    "snapshot.capture": ({ instance_id, snapshot }) => raw(instance_id, () => snapshots.capture(instance_id, snapshot)),
    "snapshot.fork": ({ snapshot_id, instance, target_state }) => snapshots.fork(snapshot_id, instance, target_state),
    "snapshot.restore": ({ snapshot_id, instance_id, target_state }) =>
      raw(instance_id, () => snapshots.restore(snapshot_id, instance_id, target_state)),
    "snapshot.delete": ({ snapshot_id }) => snapshots.delete(snapshot_id),
    "instance.fork": (payload) => raw(payload.instance_id, () => forks.fork(payload)),
    "snapshot.recompress": ({ snapshot_id, compression }) => recompressor.recompress(snapshot_id, compression),
  };
}
