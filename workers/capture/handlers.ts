// Handlers of the host queue, keyed by job name: each delegates to the part of the host agent that owns it.
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import type { InstanceForker } from "./instance-fork.ts";
import type { InstanceManager } from "./instances.ts";
import type { SnapshotRecompressor } from "./snapshot-recompress.ts";
import type { SnapshotManager } from "./snapshots.ts";

export interface HostHandlerDeps {
  hostId: string;
  instances: InstanceManager;
  snapshots: SnapshotManager;
  forks: InstanceForker;
  recompressor: SnapshotRecompressor;
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
}: HostHandlerDeps): JobHandlers<InstanceJobs> {
  return {
    "host.ping": async () => ({ hostId, receivedAt: new Date().toISOString() }),
    "instance.create": ({ instance }) => instances.create(instance),
    "instance.stop": ({ instance_id }) => instances.stop(instance_id),
    "instance.start": ({ instance_id }) => instances.start(instance_id),
    "instance.standby": ({ instance_id }) => instances.standby(instance_id),
    "instance.restore": ({ instance_id }) => instances.restore(instance_id),
    "instance.delete": ({ instance_id }) => instances.delete(instance_id),
    "instance.logs": ({ instance_id, tail }) => instances.logs(instance_id, tail),
    "snapshot.capture": ({ instance_id, snapshot }) => snapshots.capture(instance_id, snapshot),
    "snapshot.fork": ({ snapshot_id, instance, target_state }) => snapshots.fork(snapshot_id, instance, target_state),
    "snapshot.restore": ({ snapshot_id, instance_id, target_state }) =>
      snapshots.restore(snapshot_id, instance_id, target_state),
    "snapshot.delete": ({ snapshot_id }) => snapshots.delete(snapshot_id),
    "instance.fork": (payload) => forks.fork(payload),
    "snapshot.recompress": ({ snapshot_id, compression }) => recompressor.recompress(snapshot_id, compression),
  };
}
