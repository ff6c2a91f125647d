// Which host a new instance goes to: the one asked for, or the least loaded online host that runs the hypervisor.
import { ApiError } from "../shared/errors.ts";
import type { HostStatus } from "../shared/hosts.ts";

/** `load` counts live instances per host id (absent = none); no hypervisor: any. Ties go to the lowest host id. */
export function chooseHost(
  hosts: readonly HostStatus[],
  load: ReadonlyMap<string, number>,
  hypervisor: string | undefined,
  requested?: string,
): string {
  if (requested !== undefined) return requireUsableHost(hosts, requested, hypervisor).id;
  const online = hosts.filter((host) => host.online);
  if (online.length === 0) throw new ApiError("unavailable", "no worker host is online");
  const capable = online.filter((host) => hypervisor === undefined || host.hypervisors.includes(hypervisor));
  if (capable.length === 0) {
    const available = [...new Set(online.flatMap((host) => host.hypervisors))].sort();
    throw new ApiError(
      "not_supported",
      `hypervisor ${hypervisor} is not available; available: ${available.join(", ") || "none"}`,
    );
  }
  const count = (host: HostStatus) => load.get(host.id) ?? 0;
  return [...capable].sort((left, right) => count(left) - count(right) || left.id.localeCompare(right.id))[0]!.id;
}

/** A host named in a request: 400 when nobody knows it, 503 while it is offline, 501 when it lacks the hypervisor. */
export function requireUsableHost(hosts: readonly HostStatus[], hostId: string, hypervisor?: string): HostStatus {
  const host = hosts.find((candidate) => candidate.id === hostId);
  if (!host) {
    const known = hosts.map((candidate) => candidate.id).join(", ") || "none";
    throw new ApiError("invalid_request", `host_id: no host ${hostId} is known (known hosts: ${known})`);
  }
  if (!host.online) throw new ApiError("unavailable", `host ${hostId} is offline: ${host.offline_reason}`);
  if (hypervisor !== undefined && !host.hypervisors.includes(hypervisor)) {
    throw new ApiError(
      "not_supported",
      `hypervisor ${hypervisor} is not available on host ${hostId}; available: ${host.hypervisors.join(", ")}`,
    );
  }
  return host;
}
