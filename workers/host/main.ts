// The capture worker: owns this host's VMs, takes jobs from this host's queue and serves its snapshot files.
import { readFileSync } from "node:fs";
import { isLoopbackBind } from "../../shared/config.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { hostPayloadKey, loadFleetSecret, removeLegacyFleetSecret } from "../../shared/fleet-secret.ts";
import { TombstoneStore } from "../../shared/host-records.ts";
import { listHosts } from "../../shared/hosts.ts";
import { availableHypervisors, getHypervisor } from "../../shared/hypervisor/registry.ts";
import type { HypervisorDriver } from "../../shared/hypervisor/types.ts";
import { StandbyMemory } from "../../shared/instances/standby-memory.ts";
import { queueName } from "../../shared/jobs/catalog.ts";
import { JobProducer } from "../../shared/jobs/producer.ts";
import { startJobWorker } from "../../shared/jobs/worker.ts";
import { selectWorkerCodec, workerFigureReporter } from "../../shared/metrics/worker-figures.ts";
import { objectStoreFor } from "../../shared/object-store.ts";
import { removeHostLeftovers } from "../../shared/orphans.ts";
import { payloadClientFor } from "../../shared/payload-client.ts";
import { bootProcess, exitIfRetired } from "../../shared/process-boot.ts";
import { listQuarantined } from "../../shared/quarantine.ts";
import { closeRedis } from "../../shared/redis.ts";
import { onShutdownSignal } from "../../shared/shutdown.ts";
import { SnapshotStore } from "../../shared/snapshots/store.ts";
import { effectiveAccel } from "./accel.ts";
import { HostAnnouncer, type HostState } from "./announcer.ts";
import { createHostHandlers } from "./handlers.ts";
import { ImageMounts } from "./image-mounts.ts";
import { ImportSlots, importSnapshotArchive } from "./import.ts";
import { InstanceForker } from "./instance-fork.ts";
import { InstanceManager } from "./instances.ts";
import { startPayloadServer } from "./payload-server.ts";
import { startHostPresence } from "./presence.ts";
import { Replicas } from "./replicas.ts";
import { SnapshotRecompressor } from "./snapshot-recompress.ts";
import { SnapshotManager } from "./snapshots.ts";

const RECONCILE_INTERVAL_MS = 2_000;
/** Events of changes this recent are appended again at start: the process may have died before appending them. */
const REPUBLISH_WITHIN_MS = 10 * 60_000;
const CONSOLE_ROTATION_INTERVAL_MS = 10_000;
const REPLICA_RECONCILE_INTERVAL_MS = 30_000;

const boot = bootProcess("capture-worker", { perHost: true });
const { config, log } = boot;
const hostId = boot.hostId!;
const redis = boot.connectRedis();
await exitIfRetired(redis, config.REDIS_PREFIX, hostId, log);
const reportFigure = workerFigureReporter(redis, config.REDIS_PREFIX, log);
await selectWorkerCodec(config.CODEC_BACKEND, log, "capture-worker", reportFigure);

const registryOptions = { qemu: { defaultAccel: effectiveAccel(config.QEMU_ACCEL), logger: log } };
const drivers = new Map<string, HypervisorDriver>();
for (const name of await availableHypervisors(registryOptions))
  drivers.set(name, await getHypervisor(name, registryOptions));
const events = new EventStream(redis, config.REDIS_PREFIX);
const store = new SnapshotStore(config.DATA_DIR, redis, config.REDIS_PREFIX);
const mounts = new ImageMounts(store, log, {
  idleMs: config.IMAGE_MOUNT_IDLE_MS,
  maxIdle: config.IMAGE_MOUNTS_IDLE_MAX,
});
const tombstones = new TombstoneStore(config.DATA_DIR);
const instances = new InstanceManager({
  dataDir: config.DATA_DIR,
  imagesDir: config.IMAGES_DIR,
  hostId,
  drivers,
  events,
  tombstones,
  log,
  vmStopped: async (memoryFile) => {
    const snapshotId = mounts.snapshotOf(memoryFile);
    if (snapshotId) await mounts.idleAfterUse(snapshotId);
  },
});
const jobs = new JobProducer({
  redisUrl: config.REDIS_URL,
  prefix: config.REDIS_PREFIX,
  connection: redis,
  commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
});
// With an object store, snapshots outlive this host: the compression worker uploads them, forks of other hosts'
// snapshots are pulled from it, and a delete removes them from it (shared/object-store.ts).
const objects = objectStoreFor(config);
const snapshots = new SnapshotManager({
  hostId,
  objects,
  instances,
  store,
  mounts,
  tombstones,
  events,
  jobs,
  rawCacheBudgetBytes: config.RAW_CACHE_BUDGET_BYTES,
  log,
});
const announcer = new HostAnnouncer({
  hostId,
  instances,
  store,
  tombstones,
  events,
  tombstoneRetentionMs: config.TOMBSTONE_RETENTION_MS,
  log,
});
await removeHostLeftovers(config.DATA_DIR, log);
// Creates, forks and deletes that died midway are cleared before any job runs (their jobs re-run from scratch).
await instances.removeHalfDone();
await snapshots.removeHalfDone(config.TOMBSTONE_RETENTION_MS);
const forks = new InstanceForker({ instances, snapshots, log });
const recompressor = new SnapshotRecompressor({ hostId, store, events, jobs, snapshots });
// VMs outlive this process: take back the ones that still run, report the ones that died meanwhile.
await instances.reconcile();
await mounts.sweep();
const announce = (reason: string, state?: HostState) =>
  announcer
    .announce(reason, { state })
    .catch((error: Error) => log.warn({ err: error.message, reason }, "announce failed"));
// After a crash, events of the last changes may be missing from the stream (written, not yet appended). One listing
// of the host's files serves that and the first announcement.
const startState = await announcer.readState();
await announcer
  .republishRecent(REPUBLISH_WITHIN_MS, startState)
  .catch((error: Error) => log.warn({ err: error.message }, "republishing recent events failed"));
await announce("start", startState);
// A reconnect may be to a Redis that lost everything (a failover, a lost AOF): tell it all again.
redis.on("ready", () => void announce("redis reconnected"));
// On the interval, a digest only: the read model asks for the buckets it disagrees with (announcer.ts says why no full
// announcement is needed behind it). One at a time: a listing slower than the interval skips a beat.
const announceTimer = everyOneAtATime(config.ANNOUNCE_INTERVAL_MS, "digest", () => announcer.digest());
const reconcileTimer = everyOneAtATime(RECONCILE_INTERVAL_MS, "reconcile", () => instances.reconcile());

const rotateConsoleLogs = () =>
  instances
    .rotateConsoleLogs(config.CONSOLE_LOG_MAX_BYTES)
    .then((rotated) => rotated.length > 0 && log.info({ instances: rotated }, "console logs rotated"))
    .catch((error: Error) => log.warn({ err: error.message }, "console log rotation failed"));
const rotationTimer = setInterval(rotateConsoleLogs, CONSOLE_ROTATION_INTERVAL_MS);
const enforceCacheBudgets = async () => {
  await snapshots.enforceCacheBudget();
  await replicas.enforceBudget().catch((error: Error) => log.warn({ err: error.message }, "payload eviction failed"));
};

const fleetSecret = loadFleetSecret(config.FLEET_SECRET, config.DATA_DIR);
await refuseGeneratedSecretInFleet(fleetSecret.source);
if (await removeLegacyFleetSecret(redis, config.REDIS_PREFIX)) {
  log.warn("removed the plain fleet secret an older release kept in Redis; payload tokens no longer derive from it");
}
const payloads = payloadClientFor(config, fleetSecret.secret);
const replicas = new Replicas({
  hostId,
  store,
  redis,
  prefix: config.REDIS_PREFIX,
  payloads,
  objects,
  events,
  cache: config.PAYLOAD_CACHE_BYTES
    ? {
        budgetBytes: config.PAYLOAD_CACHE_BYTES,
        graceMs: config.PAYLOAD_CACHE_GRACE_MS,
        inUse: (snapshotId) => snapshots.payloadInUse(snapshotId),
      }
    : undefined,
  log,
});
if (!config.PAYLOAD_TLS_CERT && !isLoopbackBind(config.PAYLOAD_BIND)) {
  log.warn({ bind: config.PAYLOAD_BIND }, "the payload server speaks plain HTTP beyond loopback: set PAYLOAD_TLS_CERT");
}
const importSlots = new ImportSlots(config.IMPORT_MAX_CONCURRENT);
const payloadServer = await startPayloadServer({
  store,
  tombstones,
  key: hostPayloadKey(fleetSecret.secret, hostId),
  tls: config.PAYLOAD_TLS_CERT
    ? { cert: readFileSync(config.PAYLOAD_TLS_CERT, "utf8"), key: readFileSync(config.PAYLOAD_TLS_KEY!, "utf8") }
    : undefined,
  port: config.PAYLOAD_PORT,
  host: config.PAYLOAD_BIND,
  log,
  timeouts: { idleMs: config.HTTP_IDLE_TIMEOUT_MS, headersMs: config.HTTP_HEADERS_TIMEOUT_MS },
  ensureLocal: (snapshotId) => replicas.ensureLocal(snapshotId),
  importArchive: (snapshotId, body, gone) =>
    importSnapshotArchive(
      {
        hostId,
        store,
        events,
        log,
        slots: importSlots,
        maxBytes: config.IMPORT_MAX_BYTES,
        queueBackgroundWork: (record) => snapshots.queueBackgroundWork(record),
      },
      snapshotId,
      body,
      gone,
    ),
});
const presence = await startHostPresence({
  // Retired while it ran (it was thought dead): stop cleanly, as at a signal.
  onRetired: () => process.kill(process.pid, "SIGTERM"),
  redisUrl: config.REDIS_URL,
  prefix: config.REDIS_PREFIX,
  commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  host: {
    id: hostId,
    hypervisors: [...drivers.keys()],
    started_at: new Date().toISOString(),
    pid: process.pid,
    payload_url: `${payloadServer.protocol}://${urlHost(config.PAYLOAD_ADVERTISE_HOST)}:${payloadServer.port}`,
    qemu: await drivers
      .get("qemu")
      ?.hostQemu?.()
      .catch((error: Error) => {
        log.warn({ err: error.message }, "cannot tell which QEMU this host runs");
        return undefined;
      }),
  },
  quarantined: () => listQuarantined(config.DATA_DIR),
  log,
});

const worker = startJobWorker({
  queue: queueName("host", hostId),
  prefix: config.REDIS_PREFIX,
  connection: redis,
  handlers: createHostHandlers({
    hostId,
    instances,
    snapshots,
    forks,
    recompressor,
    standbyMemory: new StandbyMemory({ dataDir: config.DATA_DIR, redis, prefix: config.REDIS_PREFIX, log }),
    jobs,
    announcer,
    replicas,
    reportFigure,
  }),
  concurrency: config.HOST_JOB_CONCURRENCY,
  lockDurationMs: config.HOST_JOB_LOCK_MS,
  log,
});
log.info(
  { queue: queueName("host", hostId), hypervisors: [...drivers.keys()], imagesDir: config.IMAGES_DIR },
  "capture worker started",
);

// Which copies this host holds is its disk; Redis's replica sets only mirror it (a flush or a new Redis empties them),
// and a delete that missed a copy (its set lost, this host offline) is learnt from the owner's tombstone.
const reconcileReplicas = () =>
  replicas.reconcile().catch((error: Error) => log.warn({ err: error.message }, "replica reconcile failed"));
void reconcileReplicas();
redis.on("ready", () => void reconcileReplicas());
const replicaTimer = setInterval(reconcileReplicas, REPLICA_RECONCILE_INTERVAL_MS);
await enforceCacheBudgets();
const cacheTimer = setInterval(enforceCacheBudgets, config.CACHE_CHECK_INTERVAL_MS);

// The host stays listed (and goes offline when heartbeats stop): its VMs outlive this process.
onShutdownSignal(log, config.SHUTDOWN_TIMEOUT_MS, stopProcess, config.SUPERVISOR_PID);

/** A secret generated into this data dir is this host's alone: with another host online, calls would fail. */
async function refuseGeneratedSecretInFleet(source: "configured" | "generated"): Promise<void> {
  if (source === "configured") return;
  const others = (await listHosts(redis, config.REDIS_PREFIX)).filter((host) => host.online && host.id !== hostId);
  if (others.length === 0) return;
  log.fatal(
    { otherHosts: others.map((host) => host.id) },
    "other hosts are online: set the same FLEET_SECRET or FLEET_SECRET_FILE on every host and the API",
  );
  process.exit(78);
}

/** An IPv6 literal goes in brackets in a URL. */
function urlHost(name: string): string {
  return name.includes(":") ? `[${name}]` : name;
}

async function stopProcess(): Promise<void> {
  clearInterval(reconcileTimer);
  clearInterval(announceTimer);
  clearInterval(rotationTimer);
  clearInterval(cacheTimer);
  clearInterval(replicaTimer);
  await presence.stop();
  await payloadServer.close();
  await worker.close(Math.max(1_000, config.SHUTDOWN_TIMEOUT_MS - 2_000));
  await mounts.close();
  await jobs.close();
  objects?.close();
  await closeRedis(redis);
}

/** Runs `task` every `ms`, skipping a beat while the last run still goes; a failure is logged, never thrown. */
function everyOneAtATime(ms: number, what: string, task: () => Promise<unknown>): NodeJS.Timeout {
  let running = false;
  return setInterval(() => {
    if (running) return;
    running = true;
    task()
      .catch((error: Error) => log.warn({ err: error.message }, `${what} failed`))
      .finally(() => {
        running = false;
      });
  }, ms);
}
