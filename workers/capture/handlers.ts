// Handlers of the host queue, keyed by job name: each delegates to the part of the host agent that owns it, passing
// the job id so that a re-run of the same job (BullMQ re-runs stalled jobs) returns the first run's result.
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import type { HostAnnouncer } from "./announcer.ts";
import type { InstanceManager } from "./instances.ts";
import type { Replicas } from "./replicas.ts";
import type { SnapshotManager } from "./snapshots.ts";

export interface HostHandlerDeps {
  hostId: string;
  instances: InstanceManager;
  snapshots: SnapshotManager;
  replicas: Replicas;
  announcer: HostAnnouncer;
}

type InstanceJobs =
  | "host.ping"
  | "host.announce"
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
  announcer,
}: HostHandlerDeps): JobHandlers<InstanceJobs> {
  return {
    "host.ping": async () => ({ hostId, receivedAt: new Date().toISOString() }),
    "host.announce": async () => {
      await announcer.announce("requested");
      return { hostId, receivedAt: new Date().toISOString() };
    },
    "instance.create": ({ instance }, { job }) => instances.create(instance, job.id),
    "instance.stop": ({ instance_id }, { job }) => instances.stop(instance_id, job.id),
    "instance.start": ({ instance_id }, { job }) => instances.start(instance_id, job.id),
    "instance.standby": ({ instance_id }, { job }) => instances.standby(instance_id, job.id),
    "instance.restore": ({ instance_id }, { job }) => instances.restore(instance_id, job.id),
    "instance.delete": ({ instance_id }, { job }) => instances.delete(instance_id, job.id),
    "instance.logs": ({ instance_id, tail }) => instances.logs(instance_id, tail),
    "snapshot.capture": ({ instance_id, snapshot }, { job }) => snapshots.capture(instance_id, snapshot, job.id),
    "snapshot.fork": ({ snapshot_id, instance, target_state }, { job }) =>
      snapshots.fork(snapshot_id, instance, target_state, job.id),
    "snapshot.restore": ({ snapshot_id, instance_id, target_state }, { job }) =>
      snapshots.restore(snapshot_id, instance_id, target_state, job.id),
    "snapshot.delete": ({ snapshot_id }, { job }) => snapshots.delete(snapshot_id, job.id),
    "snapshot.replicate": ({ snapshot_id, owner_host_id }) => replicas.ensure(snapshot_id, owner_host_id),
    "snapshot.drop-replica": ({ snapshot_id }) => replicas.drop(snapshot_id),
  };
}
