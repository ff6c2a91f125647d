// The directory of worker hosts in Redis: each capture worker announces itself and heartbeats over a connection
// named after the host. A host is online while its heartbeat is fresh and that connection is open: Redis drops it
// the moment the process dies, so a killed host is seen offline at once rather than after the heartbeat lapses.
import type { Redis } from "ioredis";
import { HOST_QEMU } from "./hypervisor/machine.ts";
import { z } from "./zod.ts";

export const HOST_HEARTBEAT_INTERVAL_MS = 5_000;
/** A host not heard from for this long is reported offline and gets no new work. */
export const HOST_OFFLINE_AFTER_MS = 20_000;

export const HOST_RECORD_SCHEMA = z.object({
  id: z.string(),
  hypervisors: z.array(z.string()),
  started_at: z.iso.datetime(),
  last_seen_at: z.iso.datetime(),
  pid: z.number().int(),
  /** Where this host's payload server answers (workers/capture/payload-server.ts). */
  payload_url: z.string().optional(),
  /** The QEMU this host runs and the machine types it can load: forks and restores are checked against it. */
  qemu: HOST_QEMU.optional(),
});

export type HostRecord = z.infer<typeof HOST_RECORD_SCHEMA>;

export interface HostStatus extends HostRecord {
  online: boolean;
  /** Why an offline host is offline; null while online. */
  offline_reason: string | null;
}

const hostsKey = (prefix: string) => `${prefix}:hosts`;

export async function announceHost(redis: Redis, prefix: string, host: HostRecord): Promise<void> {
  await redis.hset(hostsKey(prefix), host.id, JSON.stringify(host));
}

export async function listHosts(redis: Redis, prefix: string): Promise<HostStatus[]> {
  const [entries, clients] = await Promise.all([
    redis.hgetall(hostsKey(prefix)),
    redis.client("LIST") as Promise<string>,
  ]);
  const connected = connectionNames(clients);
  const now = Date.now();
  return Object.values(entries)
    .flatMap((text) => {
      const parsed = HOST_RECORD_SCHEMA.safeParse(JSON.parse(text));
      return parsed.success ? [parsed.data] : [];
    })
    .map((host) => {
      const offline_reason =
        now - Date.parse(host.last_seen_at) >= HOST_OFFLINE_AFTER_MS
          ? `no heartbeat since ${host.last_seen_at}`
          : connected.has(hostPresenceConnectionName(prefix, host.id))
            ? null
            : "its capture worker is not connected";
      return { ...host, online: offline_reason === null, offline_reason };
    })
    .sort((left, right) => left.id.localeCompare(right.id));
}

/** The client name of the connection a capture worker holds open while it runs. */
export function hostPresenceConnectionName(prefix: string, hostId: string): string {
  return `${prefix}:host-presence:${hostId}`;
}

function connectionNames(clientList: string): Set<string> {
  return new Set(clientList.split("\n").flatMap((line) => /(?:^| )name=(\S+)/.exec(line)?.[1] ?? []));
}
