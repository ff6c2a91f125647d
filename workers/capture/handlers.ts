// Handlers of the host queue, keyed by job name.
import type { JobHandlers } from "../../shared/jobs/worker.ts";

export interface HostHandlerDeps {
  hostId: string;
}

export function createHostHandlers(deps: HostHandlerDeps): JobHandlers<"host.ping"> {
  return {
    "host.ping": async () => ({ hostId: deps.hostId, receivedAt: new Date().toISOString() }),
  };
}
