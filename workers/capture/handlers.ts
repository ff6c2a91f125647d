// Handlers of the host queue, keyed by job name: each delegates to the part of the host agent that owns it.
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import type { InstanceManager } from "./instances.ts";
import type { Replicas } from "./replicas.ts";
import type { SnapshotManager } from "./snapshots.ts";

export interface HostHandlerDeps {
  hostId: string;
  instances: InstanceManager;
  snapshots: SnapshotManager;
  replicas: Replicas;
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
  | "snapshot.replicate"
  | "snapshot.drop-replica";

export function createHostHandlers({
  hostId,
  instances,
  snapshots,
  replicas,
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
    "snapshot.replicate": ({ snapshot_id, owner_host_id }) => replicas.ensure(snapshot_id, owner_host_id),
    "snapshot.drop-replica": ({ snapshot_id }) => replicas.drop(snapshot_id),
  };
}
