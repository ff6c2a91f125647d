// Host liveness on resources, derived at read time from the host directory (never written to the read model):
// an offline host's instances read Unknown with the reason, its snapshots carry host_online false.
import type { HostStatus } from "../shared/hosts.ts";
import type { Instance } from "../shared/schemas/instance.ts";
import type { Snapshot } from "../shared/schemas/snapshot.ts";
import type { AppDeps } from "./app.ts";
import { knownHosts } from "./commands.ts";

type HostLookup = (hostId: string) => HostStatus | undefined;

/** The host directory as a lookup; undefined while Redis cannot say (reads keep working without the field). */
async function hostLookup(deps: AppDeps): Promise<HostLookup | undefined> {
  try {
    const hosts = new Map((await knownHosts(deps)).map((host) => [host.id, host]));
    return (hostId) => hosts.get(hostId);
  } catch {
    return undefined;
  }
}

function instanceWithHost(instance: Instance, lookup: HostLookup): Instance {
  const host = lookup(instance.host_id);
  if (host?.online) return { ...instance, host_online: true };
  const reason = host ? host.offline_reason : "it is not in the host directory";
  return {
    ...instance,
    host_online: false,
    state: "Unknown",
    state_error: `host ${instance.host_id} is offline: ${reason}`,
  };
}

export async function presentInstances(deps: AppDeps, instances: Instance[]): Promise<Instance[]> {
  const lookup = await hostLookup(deps);
  return lookup ? instances.map((instance) => instanceWithHost(instance, lookup)) : instances;
}

export async function presentInstance(deps: AppDeps, instance: Instance): Promise<Instance> {
  return (await presentInstances(deps, [instance]))[0]!;
}

export async function presentSnapshots(deps: AppDeps, snapshots: Snapshot[]): Promise<Snapshot[]> {
  const lookup = await hostLookup(deps);
  if (!lookup) return snapshots;
  return snapshots.map((snapshot) => ({ ...snapshot, host_online: lookup(snapshot.host_id)?.online ?? false }));
}

export async function presentSnapshot(deps: AppDeps, snapshot: Snapshot): Promise<Snapshot> {
  return (await presentSnapshots(deps, [snapshot]))[0]!;
}
