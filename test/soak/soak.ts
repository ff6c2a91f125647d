// `npm run soak`: N snapshot pipelines against the whole service (started as test/helpers/service.ts does) and a
// second worker host, while their processes and Redis are SIGKILLed at random, Redis is restarted and flushed once
// (with a snapshot schedule, a webhook subscription and replicas on the second host in flight: the schedule must fire
// again, no delivery stay pending, a kept replica be known again and a deleted snapshot's replica be dropped); odd
// pipelines fork on the host that does not own their snapshot, so replicas are pulled and dropped under the chaos.
// Then the read model is compared with both hosts' records on disk. Not part of `npm test`. Flags (or env): --pipelines=N (SOAK_PIPELINES, 4),
// --concurrency=N (SOAK_CONCURRENCY, 2), --duration=10m (SOAK_DURATION), --converge=60s (SOAK_CONVERGE),
// --kill-every=20s (SOAK_KILL_EVERY, the mean pause between timed kills; half the pipeline steps also end with one),
// --level=3 (SOAK_ZSTD_LEVEL, the snapshots' zstd level), --keep (SOAK_KEEP=1: leave the data dirs).
import { randomBytes } from "node:crypto";
import { setMaxListeners } from "node:events";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseDurationList } from "../../shared/duration.ts";
import { freePort } from "../../supervisor/embedded-redis.ts";
import { killProcessesUsing, startService, TEST_IMAGES_DIR, unmountUnder } from "../helpers/service.ts";
import { KILL_TARGETS, killServiceProcess, SoakHost, SoakRedis } from "./chaos.ts";
import { compareSides, type Problem, type ResourceKind, type Verdict } from "./compare.ts";
import { startInFlight } from "./in-flight.ts";
import { PIPELINE_STEPS, runPipeline, type SoakClient } from "./pipeline.ts";

function option(name: string, env: string, fallback: string): string {
  const flag = process.argv.find((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`));
  if (flag) return flag.includes("=") ? flag.slice(flag.indexOf("=") + 1) : "1";
  return process.env[env] || fallback;
}
function durationOption(name: string, env: string, fallback: string): number {
  const value = option(name, env, fallback);
  const [ms, ...rest] = parseDurationList(value) ?? [];
  if (ms === undefined || rest.length) throw new Error(`--${name}: a duration like 90s or 10m, got ${value}`);
  return ms;
}
const PIPELINES = Number(option("pipelines", "SOAK_PIPELINES", "4"));
const CONCURRENCY = Number(option("concurrency", "SOAK_CONCURRENCY", "2"));
const DURATION_MS = durationOption("duration", "SOAK_DURATION", "10m");
const CONVERGE_MS = durationOption("converge", "SOAK_CONVERGE", "60s");
const KILL_EVERY_MS = durationOption("kill-every", "SOAK_KILL_EVERY", "20s");
const ZSTD_LEVEL = Number(option("level", "SOAK_ZSTD_LEVEL", "3"));
/** Chance that a pipeline step is followed by a kill, so kills land mid-pipeline however fast the steps are. */
const STEP_KILL_PROBABILITY = 0.5;
const KEEP = option("keep", "SOAK_KEEP", "0") === "1";
if (!(PIPELINES >= 1 && CONCURRENCY >= 1)) throw new Error("--pipelines and --concurrency must be at least 1");

const started = Date.now();
const say = (line: string) => process.stdout.write(`[soak +${Math.round((Date.now() - started) / 1000)}s] ${line}\n`);

const root = mkdtempSync(path.join(tmpdir(), "snapfleet-soak-"));
const redis = new SoakRedis(path.join(root, "redis"), await freePort());
await redis.start();
say(`redis on ${redis.url}; ${PIPELINES} pipelines, ${CONCURRENCY} at a time, at most ${DURATION_MS / 1000}s`);
// Both hosts share the fleet's secret; their payload servers listen on loopback.
const fleet = { FLEET_SECRET: randomBytes(32).toString("base64url"), PAYLOAD_BIND: "127.0.0.1" };
const service = await startService(
  // A compression whose worker died is taken over after 3 s instead of 30 s.
  {
    REDIS_URL: redis.url,
    ...fleet,
    COMPRESSION_JOB_LOCK_MS: "3000",
    JOB_RESULT_TIMEOUT_MS: "120000",
    // The in-flight webhook receiver listens on loopback; what Redis lost is rebuilt every 5 s.
    WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
    RECONCILE_INTERVAL_MS: "5000",
  },
  { readyTimeoutMs: 120_000 },
).catch(async (error: Error) => {
  await redis.stop();
  rmSync(root, { recursive: true, force: true });
  throw error;
});
say(`service up on ${service.baseUrl}, data in ${service.dataDir}`);
const secondHost = new SoakHost("soak-b", path.join(root, "host-b"), {
  REDIS_URL: redis.url,
  ...fleet,
  IMAGES_DIR: TEST_IMAGES_DIR,
  QEMU_ACCEL: "tcg",
  LOG_LEVEL: "info",
  COMPRESSION_JOB_LOCK_MS: "3000",
});
mkdirSync(secondHost.dataDir, { recursive: true });
// Whatever ends this process (a thrown error included) leaves nothing it started running: the supervisor, its
// children, the VMs and the soak's Redis. A clean end has stopped them already; this only catches the rest.
process.once("exit", () => {
  if (service.supervisor.exitCode === null) {
    for (const pid of service.childPids()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
    service.supervisor.kill("SIGKILL");
  }
  for (const pid of secondHost.pids()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  killProcessesUsing(service.dataDir);
  killProcessesUsing(secondHost.dataDir);
  redis.killNow();
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, async () => {
    chaosRunning = false;
    say(`${signal}: stopping the service and Redis`);
    await Promise.all([service.stop("SIGTERM"), secondHost.stop()]);
    killProcessesUsing(service.dataDir);
    killProcessesUsing(secondHost.dataDir);
    await redis.stop();
    if (!KEEP) {
      unmountUnder(secondHost.dataDir);
      service.remove();
      rmSync(root, { recursive: true, force: true });
    }
    process.exit(130);
  });
}
await secondHost.start();
say(`second host ${secondHost.id} up, data in ${secondHost.dataDir}`);

const deadline = new AbortController();
setMaxListeners(0, deadline.signal); // every request in flight listens to it
const deadlineTimer = setTimeout(() => deadline.abort(), DURATION_MS);
// Chaos: kills at random intervals around KILL_EVERY_MS and after random pipeline steps; a killed Redis comes back
// after a second from its AOF; one FLUSHALL once half the steps of the run are done.
/** Ids whose resource both hosts hold as their own (one id made twice): never converged. Set by compareNow. */
const twice = new Set<string>();
const kills = new Map<string, number>(KILL_TARGETS.map((target) => [target, 0]));
let flushed = false;
let flushedAt: number | undefined;
let stepsDone = 0;
let chaosRunning = true;
let chaosChain: Promise<void> = Promise.resolve();
/** Chaos actions run one at a time (a Redis restart must not overlap another kill of it). */
const strike = (action: () => Promise<void>) => {
  chaosChain = chaosChain.then(action).catch((error: Error) => {
    say(`chaos action failed: ${error.message}`);
  });
  return chaosChain;
};
/** Targets in rounds of a random order each, so every process is killed once every five kills. */
let round: string[] = [];
const nextTarget = () => {
  if (round.length === 0) round = [...KILL_TARGETS].sort(() => Math.random() - 0.5);
  return round.pop()!;
};
const killRandom = () =>
  strike(async () => {
    const target = nextTarget();
    if (target === "redis") {
      await redis.kill();
      await new Promise((resolve) => setTimeout(resolve, 1_000)); // Redis down for a while: the chaos being soaked
      await redis.start();
      say("killed redis (SIGKILL), restarted it from its AOF");
    } else if (SoakHost.processNames.includes(target)) {
      await secondHost.killAndRestart(target);
      say(`killed ${target} (SIGKILL), restarted it`);
    } else if (killServiceProcess(service, target)) say(`killed ${target} (SIGKILL)`);
    else return; // being restarted by the supervisor right now
    kills.set(target, kills.get(target)! + 1);
  });
const client: SoakClient = {
  baseUrl: service.baseUrl,
  apiKey: service.apiKey,
  acknowledged: new Map(),
  signal: deadline.signal,
  log: say,
  compressionLevel: ZSTD_LEVEL,
  hostIds: [service.hostId(), secondHost.id],
  async afterStep() {
    stepsDone++;
    if (!flushed && stepsDone >= Math.ceil((PIPELINES * PIPELINE_STEPS) / 2)) {
      flushed = true;
      await strike(async () => {
        await redis.flushAll();
        flushedAt = Date.now();
        say("redis: FLUSHALL");
      });
    } else if (Math.random() < STEP_KILL_PROBABILITY) await killRandom();
  },
};
const chaosOver = new AbortController();
const chaos = (async () => {
  while (chaosRunning) {
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, KILL_EVERY_MS * (0.5 + Math.random()));
      chaosOver.signal.addEventListener("abort", () => resolve(clearTimeout(timer)), { once: true });
    });
    if (chaosRunning) await killRandom();
  }
})();

// Pipelines, CONCURRENCY at a time; none starts after the deadline.
const run = Date.now().toString(36);
// A schedule and a webhook subscription in flight across the mid-run Redis data loss.
const inFlight = await startInFlight(
  {
    baseUrl: service.baseUrl,
    apiKey: service.apiKey,
    log: say,
    redisUrl: redis.url,
    redisPrefix: "snapfleet",
    hostIds: client.hostIds,
    dataDirOf: (hostId) => (hostId === secondHost.id ? secondHost.dataDir : service.dataDir),
  },
  run,
);
const failedAt = new Map<number, string>();
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(CONCURRENCY, PIPELINES) }, async () => {
    while (next < PIPELINES && !deadline.signal.aborted) {
      const index = next++;
      say(`pipeline ${index} started`);
      const failed = await runPipeline(client, run, index);
      if (failed) failedAt.set(index, failed);
      else say(`pipeline ${index} completed`);
    }
  }),
);
const notStarted = PIPELINES - next;
chaosRunning = false;
chaosOver.abort();
await chaos;
await chaosChain;
clearTimeout(deadlineTimer);
if (!flushed) say("the run ended before the mid-run FLUSHALL: it did not happen");
await redis.start(); // a no-op unless the last restart failed

// Convergence: compare until nothing is wrong or CONVERGE_MS has passed.
say(`chaos over; waiting up to ${CONVERGE_MS / 1000}s for the read model to converge`);
const convergeDeadline = Date.now() + CONVERGE_MS;
let verdict: Verdict = { checked: [] };
let unreachable: string | undefined;
for (;;) {
  try {
    verdict = await compareNow();
    unreachable = undefined;
  } catch (error) {
    unreachable = (error as Error).message;
  }
  const converged = !unreachable && twice.size === 0 && !verdict.checked.some((entry) => entry.problem);
  if (converged || Date.now() >= convergeDeadline) break;
  await new Promise((resolve) => setTimeout(resolve, 2_000)); // poll interval until convergence or its deadline
}

say("checking what was in flight across the Redis data loss (a schedule, webhook deliveries)");
const inFlightChecks = await inFlight.verify(flushedAt, CONVERGE_MS + 60_000);
await inFlight.close();
const problems = verdict.checked.flatMap((entry) => (entry.problem ? [entry.problem] : []));
const byVerdict = (name: Problem["verdict"]) => problems.filter((problem) => problem.verdict === name);
const completed = PIPELINES - notStarted - failedAt.size;
console.log("");
console.log(`pipelines: ${PIPELINES} (${completed} completed, ${failedAt.size} failed, ${notStarted} not started)`);
for (const [index, step] of failedAt) console.log(`  pipeline ${index} failed at: ${step}`);
const killList = [...kills].map(([target, count]) => `${target} ${count}`).join(", ");
console.log(
  `kills: ${[...kills.values()].reduce((a, b) => a + b, 0)} (${killList}); redis flushed: ${flushed ? 1 : 0}`,
);
for (const name of ["stuck", "lost", "diverged"] as const) {
  console.log(`${name}: ${byVerdict(name).length}`);
  for (const problem of byVerdict(name)) console.log(`  ${problem.kind} ${problem.id}: ${problem.detail}`);
}
console.log(`on both hosts: ${twice.size}`);
for (const id of twice) console.log(`  ${id}: one id, a resource on each host`);
if (unreachable) console.log(`read model unreachable at the end: ${unreachable}`);
for (const check of inFlightChecks) console.log(`${check.ok ? "ok" : "FAILED"}: ${check.name} (${check.detail})`);
const inFlightFailed = inFlightChecks.filter((check) => !check.ok).length;
// A check per pipeline (it completed) and per resource either side knows of (it converged), and the API answering.
const passed = completed + verdict.checked.length - problems.length + inFlightChecks.length - inFlightFailed;
const failed = PIPELINES - completed + problems.length + twice.size + (unreachable ? 1 : 0) + inFlightFailed;
console.log(`${passed} passed, ${failed} failed`);

if (failed > 0) console.log(`the second host's last lines:\n${secondHost.tail()}`);
await Promise.all([service.stop("SIGTERM"), secondHost.stop()]);
await redis.stop();
killProcessesUsing(service.dataDir); // VMs outlive the service by design
killProcessesUsing(secondHost.dataDir);
if (KEEP) console.log(`kept: ${root} and ${service.dataDir}`);
else {
  service.remove();
  unmountUnder(secondHost.dataDir);
  rmSync(root, { recursive: true, force: true });
}
process.exit(failed > 0 ? 1 : 0);

async function compareNow() {
  const [instances, snapshots] = await Promise.all([fetchList("/instances"), fetchList("/snapshots")]);
  const readModel = new Map([...instances, ...snapshots].map((resource) => [resource.id as string, resource]));
  const kinds = new Map<string, ResourceKind>();
  for (const resource of instances) kinds.set(resource.id as string, "instance");
  for (const resource of snapshots) kinds.set(resource.id as string, "snapshot");
  const host = new Map<string, Record<string, unknown> & { id: string }>();
  const replicas = new Map<string, string[]>();
  twice.clear();
  for (const [hostId, dataDir] of [
    [service.hostId(), service.dataDir],
    [secondHost.id, secondHost.dataDir],
  ]) {
    for (const [kind, dir, file] of [
      ["instance", "instances", "instance.json"],
      ["snapshot", "snapshots", "snapshot.json"],
    ] as const) {
      for (const id of readdirSync(path.join(dataDir!, dir), { withFileTypes: true })) {
        if (!id.isDirectory() || id.name.startsWith(".")) continue;
        const record = readRecord(path.join(dataDir!, dir, id.name, file));
        // instance.json holds { instance, version, last_event } (older hosts: the bare instance).
        const resource = kind === "snapshot" ? record?.snapshot : (record?.instance ?? record);
        if (!resource) continue;
        kinds.set(resource.id, kind);
        // A pulled copy (snapshot.json with `replica_of`) is not its host's resource: it must only not outlive it.
        if (record.replica_of) replicas.set(resource.id, [...(replicas.get(resource.id) ?? []), hostId!]);
        else if (host.has(resource.id)) twice.add(resource.id);
        else host.set(resource.id, resource);
      }
    }
  }
  return compareSides({
    readModel,
    host,
    replicas,
    acknowledged: client.acknowledged,
    kindOf: (id) => kinds.get(id) ?? "instance",
  });
}

/** GET a list, asking again while the API restarts; throws once the API has not answered for a minute. */
async function fetchList(pathAndQuery: string): Promise<Array<Record<string, unknown> & { id: string }>> {
  const giveUp = Date.now() + 60_000;
  while (Date.now() < giveUp) {
    try {
      const response = await fetch(`${service.baseUrl}${pathAndQuery}`, {
        headers: { authorization: `Bearer ${service.apiKey()}` },
        signal: AbortSignal.timeout(10_000),
      });
      if (response.status === 200) return (await response.json()) as Array<Record<string, unknown> & { id: string }>;
    } catch {
      // the API is restarting: ask again
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // retry interval while the API restarts
  }
  throw new Error(`GET ${pathAndQuery} did not answer 200 for a minute`);
}

// biome-ignore lint/suspicious/noExplicitAny: host records are compared field by field, not typed here
function readRecord(file: string): any {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined; // mid-write or gone: the next comparison reads it again
  }
}
