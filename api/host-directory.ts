// The host directory as reads present it (`host_online`, and Unknown for an offline host's instances), kept in
// memory: refreshed in the background and by every live lookup a command makes, so a read never waits on Redis for
// it. Commands (placement, "is its host online") still ask Redis. Redis holds the directory; this is a copy of it
// at most REFRESH_MS old, and none at all when Redis has not answered for STALE_AFTER_MS (reads then go without
// the field, as they do while Redis is down).
import type { Redis } from "ioredis";
import { type HostStatus, listHosts } from "../shared/hosts.ts";
import { redisCall } from "../shared/redis.ts";

const REFRESH_MS = 500;
const STALE_AFTER_MS = 5 * REFRESH_MS;

export type HostLookup = (hostId: string) => HostStatus | undefined;

export class HostDirectoryView {
  private hosts?: Map<string, HostStatus>;
  /** When the listing in hand was asked for: an older answer arriving later never replaces a newer one. */
  private askedAt = 0;
  private timer?: NodeJS.Timeout;

  constructor(private readonly options: { redis: Redis; prefix: string; commandTimeoutMs: number }) {}

  start(): void {
    const refresh = () => {
      const askedAt = Date.now();
      return redisCall(
        listHosts(this.options.redis, this.options.prefix),
        this.options.commandTimeoutMs,
        "list hosts",
      ).then(
        (hosts) => this.update(hosts, askedAt),
        () => {}, // unreachable Redis: the copy goes stale, and reads go without the field
      );
    };
    void refresh();
    this.timer = setInterval(refresh, REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Takes a listing asked for at `askedAt` (by the refresh, or by any command's live lookup), unless it is older. */
  update(hosts: HostStatus[], askedAt: number): void {
    if (askedAt < this.askedAt) return;
    this.hosts = new Map(hosts.map((host) => [host.id, host]));
    this.askedAt = askedAt;
  }

  /** The directory as last seen; undefined when it is unknown or stale. */
  lookup(): HostLookup | undefined {
    const hosts = this.hosts;
    if (!hosts || Date.now() - this.askedAt > STALE_AFTER_MS) return undefined;
    return (hostId) => hosts.get(hostId);
  }
}
