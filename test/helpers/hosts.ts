// A host in the directory without a capture worker behind it: what a capture worker's announcement and presence
// lease look like to the API, for tests of the API alone.
import type { Redis } from "ioredis";
import { announceHost, renewHostLease } from "../../shared/hosts.ts";

/** A fake host's lease outlives any test: it goes offline when the test releases it. */
const FAKE_LEASE_MS = 10 * 60_000;

export interface FakeHostOptions {
  /** Give the host a presence lease: online until it runs out or is released (releaseHostLease). */
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
  if (options.online) await renewHostLease(redis, prefix, id, FAKE_LEASE_MS);
}
