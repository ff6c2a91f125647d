// The directory of worker hosts in Redis: each capture worker announces itself and renews a lease key (SET PX) with
// every heartbeat. A host is online while its lease lives: one that stops cleanly deletes it and is offline at once,
// a killed one is offline when the lease runs out. Plain key commands: a least-privilege Redis user is enough.
import type { Redis } from "ioredis";
import { HOST_QEMU } from "./hypervisor/machine.ts";
import { QUARANTINED_ENTRY } from "./quarantine.ts";
import { z } from "./zod.ts";

export const HOST_HEARTBEAT_INTERVAL_MS = 2_000;
/** A host whose lease was not renewed for this long (its process died) is offline and gets no new work. */
export const HOST_LEASE_MS = 6_000;

export const HOST_RECORD_SCHEMA = z.object({
  id: z.string(),
  hypervisors: z.array(z.string()),
  started_at: z.iso.datetime(),
  last_seen_at: z.iso.datetime(),
  pid: z.number().int(),
  /** Where this host's payload server answers (workers/host/payload-server.ts). */
  payload_url: z.string().optional(),
  /** The QEMU this host runs and the machine types it can load: forks and restores are checked against it. */
  qemu: HOST_QEMU.optional(),
  /** Resource directories this host moved aside because their records cannot be read (shared/quarantine.ts). */
  quarantined: z.array(QUARANTINED_ENTRY).optional(),
});

export type HostRecord = z.infer<typeof HOST_RECORD_SCHEMA>;

export interface HostStatus extends HostRecord {
  online: boolean;
  /** Why an offline host is offline; null while online. */
  offline_reason: string | null;
}

const hostsKey = (prefix: string) => `${prefix}:hosts`;
const leaseKey = (prefix: string, hostId: string) => `${prefix}:host-lease:${hostId}`;

export async function announceHost(redis: Redis, prefix: string, host: HostRecord): Promise<void> {
  await redis.hset(hostsKey(prefix), host.id, JSON.stringify(host));
}

/** Keeps the host online for `leaseMs` more. */
export async function renewHostLease(
  redis: Redis,
  prefix: string,
  hostId: string,
  leaseMs = HOST_LEASE_MS,
): Promise<void> {
  await redis.set(leaseKey(prefix, hostId), String(Date.now()), "PX", leaseMs);
}

/** The host is offline from now (a clean stop). */
export async function releaseHostLease(redis: Redis, prefix: string, hostId: string): Promise<void> {
  await redis.del(leaseKey(prefix, hostId));
}

/**
 * Hosts retired with DELETE /hosts/{id}. The API's database holds the decision; this set mirrors it (written at
 * retirement and again by the API's Redis rebuild) so that a retired host's workers refuse to start and its
 * presence stops announcing it.
 */
const retiredKey = (prefix: string) => `${prefix}:retired-hosts`;

/** Takes a retired host out of the directory: GET /hosts no longer lists it, nothing is placed on it. */
export async function retireHostEntry(redis: Redis, prefix: string, hostId: string): Promise<void> {
  await redis
    .multi()
    .sadd(retiredKey(prefix), hostId)
    .hdel(hostsKey(prefix), hostId)
    .del(leaseKey(prefix, hostId))
    .exec();
}

/** Tells Redis again which hosts are retired (after a loss of its data); returns how many. */
export async function mirrorRetiredHosts(redis: Redis, prefix: string, hostIds: string[]): Promise<number> {
  if (hostIds.length === 0) return 0;
  return redis.sadd(retiredKey(prefix), ...hostIds);
}

export async function isRetiredHost(redis: Redis, prefix: string, hostId: string): Promise<boolean> {
  return (await redis.sismember(retiredKey(prefix), hostId)) === 1;
}

export async function listHosts(redis: Redis, prefix: string): Promise<HostStatus[]> {
  const hosts = Object.values(await redis.hgetall(hostsKey(prefix))).flatMap((text) => {
    const parsed = HOST_RECORD_SCHEMA.safeParse(JSON.parse(text));
    return parsed.success ? [parsed.data] : [];
  });
  const leases = hosts.length > 0 ? await redis.mget(hosts.map((host) => leaseKey(prefix, host.id))) : [];
  return hosts
    .map((host, index) => {
      const offline_reason =
        leases[index] === null ? `its capture worker is not connected (no lease since ${host.last_seen_at})` : null;
      return { ...host, online: offline_reason === null, offline_reason };
    })
    .sort((left, right) => left.id.localeCompare(right.id));
}
