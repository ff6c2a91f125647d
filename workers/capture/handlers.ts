// Handlers of the host queue, keyed by job name: each delegates to the part of the host agent that owns it.
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import type { InstanceManager } from "./instances.ts";

export interface HostHandlerDeps {
  hostId: string;
  instances: InstanceManager;
}

type InstanceJobs =
  | "host.ping"
  | "instance.create"
  | "instance.stop"
  | "instance.start"
  | "instance.standby"
  | "instance.restore"
  | "instance.delete"
  | "instance.logs";

export function createHostHandlers({ hostId, instances }: HostHandlerDeps): JobHandlers<InstanceJobs> {
  return {
    "host.ping": async () => ({ hostId, receivedAt: new Date().toISOString() }),
    "instance.create": ({ instance }) => instances.create(instance),
    "instance.stop": ({ instance_id }) => instances.stop(instance_id),
    "instance.start": ({ instance_id }) => instances.start(instance_id),
    "instance.standby": ({ instance_id }) => instances.standby(instance_id),
    "instance.restore": ({ instance_id }) => instances.restore(instance_id),
    "instance.delete": ({ instance_id }) => instances.delete(instance_id),
    "instance.logs": ({ instance_id, tail }) => instances.logs(instance_id, tail),
  };
}
