// Background upkeep of the read model in the API process: asks every host for its full state when the API starts
// (so an empty or lost read model file is rebuilt within seconds, not at the hosts' next interval), and releases
// names held for outcomes that never came.

import type { Redis } from "ioredis";
import { listHosts } from "../../shared/hosts.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Db } from "../db/database.ts";
import { releaseExpiredReservations } from "./names.ts";

const SWEEP_INTERVAL_MS = 60_000;

export interface ReadModelMaintenanceOptions {
  db: Db;
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

export function startReadModelMaintenance(options: ReadModelMaintenanceOptions, ready: Promise<void>) {
  const { log } = options;
  const sweep = () =>
    releaseExpiredReservations(options.db)
      .then((released) => {
        if (released > 0) log.info({ released }, "released names held for creates that never completed");
      })
      .catch((error: Error) => log.warn({ err: error.message }, "releasing expired name holds failed"));
  const timer = setInterval(sweep, SWEEP_INTERVAL_MS);
  void ready.then(() =>
    requestAnnouncements(options, "api started").catch((error: Error) =>
      log.warn({ err: error.message }, "could not ask hosts to announce; their interval will"),
    ),
  );
  return {
    stop() {
      clearInterval(timer);
    },
  };
}
