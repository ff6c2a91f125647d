// The directory of worker hosts in Redis: each capture worker announces itself and heartbeats.
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
  /** The QEMU this host runs and the machine types it can load: forks and restores are checked against it. */
  qemu: HOST_QEMU.optional(),
});

export type HostRecord = z.infer<typeof HOST_RECORD_SCHEMA>;

const hostsKey = (prefix: string) => `${prefix}:hosts`;

export async function announceHost(redis: Redis, prefix: string, host: HostRecord): Promise<void> {
  await redis.hset(hostsKey(prefix), host.id, JSON.stringify(host));
}

export async function listHosts(redis: Redis, prefix: string): Promise<Array<HostRecord & { online: boolean }>> {
  const entries = await redis.hgetall(hostsKey(prefix));
  const now = Date.now();
  return Object.values(entries)
    .flatMap((text) => {
      const parsed = HOST_RECORD_SCHEMA.safeParse(JSON.parse(text));
      return parsed.success ? [parsed.data] : [];
    })
    .map((host) => ({ ...host, online: now - Date.parse(host.last_seen_at) < HOST_OFFLINE_AFTER_MS }))
    .sort((left, right) => left.id.localeCompare(right.id));
}
