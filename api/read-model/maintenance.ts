// Asks every host for its full state when the API starts, so an empty or lost read model is rebuilt within seconds
// rather than at the hosts' next interval. (Expired name holds are released by the maintenance pass, api/retention.ts.)
import type { Redis } from "ioredis";
import { listHosts } from "../../shared/hosts.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { Logger } from "../../shared/logger.ts";

export interface ReadModelMaintenanceOptions {
  redis: Redis;
  prefix: string;
  jobs: JobProducer;
  log: Logger;
}

/** Puts a `host.announce` job on every online host's queue; returns the hosts asked. */
export async function requestAnnouncements(options: ReadModelMaintenanceOptions, reason: string): Promise<string[]> {
  const hosts = (await listHosts(options.redis, options.prefix)).filter((host) => host.online);
  for (const host of hosts) await options.jobs.enqueue("host.announce", { reason }, { hostId: host.id });
  return hosts.map((host) => host.id);
}

/** Once the projector reads the stream, asks every host to announce (failures are left to their interval). */
export function askHostsOnceReady(options: ReadModelMaintenanceOptions, ready: Promise<void>): void {
  void ready.then(() =>
    requestAnnouncements(options, "api started").catch((error: Error) =>
      options.log.warn({ err: error.message }, "could not ask hosts to announce; their interval will"),
    ),
  );
}
