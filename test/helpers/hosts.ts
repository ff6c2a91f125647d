// A host in the directory without a capture worker behind it: what a capture worker's announcement and presence
// connection look like to the API, for tests of the API alone.
import type { Redis } from "ioredis";
import { announceHost, hostPresenceConnectionName } from "../../shared/hosts.ts";

export interface FakeHostOptions {
  /** Name `redis` as the host's presence connection: the host is online while that connection stays open. */
  online?: boolean;
  /** When it last announced itself (default now). */
  lastSeenAt?: string;
  hypervisors?: string[];
  pid?: number;
}

export async function announceFakeHost(
  redis: Redis,
  prefix: string,
  id: string,
  options: FakeHostOptions = {},
): Promise<void> {
  const seen = options.lastSeenAt ?? new Date().toISOString();
  await announceHost(redis, prefix, {
    id,
    hypervisors: options.hypervisors ?? ["qemu"],
    started_at: seen,
    last_seen_at: seen,
    pid: options.pid ?? 1,
  });
  if (options.online) await redis.client("SETNAME", hostPresenceConnectionName(prefix, id));
}
