// `npm run read-model:rebuild`: empties the read model of instances and snapshots and asks every online host to
// announce the full state of what it owns; the API's projector fills the read model again from those announcements
// within seconds. Safe while the service runs (reads are briefly incomplete). Webhooks and deliveries are kept.
import { databaseTarget, migrateToLatest, openDatabase } from "../api/db/database.ts";
import { requestAnnouncements } from "../api/read-model/maintenance.ts";
import { loadConfigOrExit } from "../shared/config.ts";
import { JobProducer } from "../shared/jobs/producer.ts";
import { createLogger } from "../shared/logger.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../shared/redis.ts";

const config = loadConfigOrExit();
const log = createLogger("read-model-rebuild", config.LOG_LEVEL);
if (!config.REDIS_URL) {
  log.fatal("REDIS_URL is not set: point it at the service's Redis (npm start logs it)");
  process.exit(78);
}
const db = openDatabase(databaseTarget(config));
await migrateToLatest(db);
const redis = connectRedis(config.REDIS_URL, "producer", config.REDIS_COMMAND_TIMEOUT_MS);
redis.on("error", () => {});
if (!(await waitForRedisReady(redis, 5_000))) {
  log.fatal("redis is not reachable");
  process.exit(69);
}
const jobs = new JobProducer({
  redisUrl: config.REDIS_URL,
  prefix: config.REDIS_PREFIX,
  connection: redis,
  commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
});
const removed = await db.transaction().execute(async (trx) => {
  await trx.deleteFrom("snapshot_tags").execute();
  const snapshots = await trx.deleteFrom("snapshots").executeTakeFirst();
  const instances = await trx.deleteFrom("instances").executeTakeFirst();
  return { snapshots: Number(snapshots.numDeletedRows), instances: Number(instances.numDeletedRows) };
});
const hosts = await requestAnnouncements({ redis, prefix: config.REDIS_PREFIX, jobs, log }, "rebuild");
log.info({ removed, askedHosts: hosts }, "read model emptied; hosts asked to announce their state");
await jobs.close();
await closeRedis(redis);
await db.destroy();
