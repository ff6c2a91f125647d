// `npm start`: one supervising command that runs Redis (when none is configured), the API and both workers.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadConfigOrExit } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import { type EmbeddedRedis, findRedisServer, REDIS_INSTALL_HINT, startEmbeddedRedis } from "./embedded-redis.ts";
import { entryCommand, type ProcessSpec, SERVICE_PROCESSES } from "./processes.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const EXIT_CONFIG_ERROR = 78;
/** A child that ran this long before dying is restarted without back-off. */
const HEALTHY_RUN_MS = 60_000;
/** Of the total shutdown budget, what is kept for Redis after the children are down. */
const REDIS_STOP_BUDGET_MS = 1_500;

const config = loadConfigOrExit();
const log = createLogger("supervisor", config.LOG_LEVEL);
mkdirSync(config.DATA_DIR, { recursive: true });

let redis: EmbeddedRedis | undefined;
let redisUrl = config.REDIS_URL;
if (!redisUrl) {
  const binary = findRedisServer();
  if (!binary) {
    process.stderr.write(`${REDIS_INSTALL_HINT}\n`);
    process.exit(1);
  }
  redis = await startEmbeddedRedis(binary, config.DATA_DIR, log, { ownProcessGroup: true });
  redisUrl = redis.url;
}

interface Supervised {
  spec: ProcessSpec;
  child?: ChildProcess;
  startedAt: number;
  restarts: number;
  restartTimer?: NodeJS.Timeout;
}

let stopping = false;
const supervised: Supervised[] = SERVICE_PROCESSES.map((spec) => ({ spec, startedAt: 0, restarts: 0 }));

function launch(entry: Supervised): void {
  const [command, ...args] = entryCommand(entry.spec.entry);
  const child = spawn(command === "node" ? process.execPath : command!, args, {
    cwd: ROOT,
    stdio: "inherit",
    env: {
      // The codecs run on libuv's pool (4 threads by default): give it every core, plus two for file I/O.
      UV_THREADPOOL_SIZE: String(availableParallelism() + 2),
      ...process.env,
      REDIS_URL: redisUrl,
      DATA_DIR: config.DATA_DIR,
      SUPERVISOR_PID: String(process.pid),
    },
  });
  entry.child = child;
  entry.startedAt = Date.now();
  log.info({ process: entry.spec.name, pid: child.pid }, "started");
  child.once("exit", (code, signal) => {
    entry.child = undefined;
    if (stopping) return;
    log.error({ process: entry.spec.name, code, signal }, "exited unexpectedly");
    if (code === EXIT_CONFIG_ERROR) return void shutdown("config error in a child", EXIT_CONFIG_ERROR);
    if (!config.WORKER_RESTART) return void shutdown(`${entry.spec.name} exited`, 1);
    entry.restarts = Date.now() - entry.startedAt > HEALTHY_RUN_MS ? 0 : entry.restarts + 1;
    const delay = Math.min(config.WORKER_RESTART_MAX_DELAY_MS, entry.restarts === 0 ? 0 : 500 * 2 ** entry.restarts);
    log.info({ process: entry.spec.name, delayMs: delay }, "restarting");
    entry.restartTimer = setTimeout(() => launch(entry), delay);
  });
}

async function shutdown(reason: string, exitCode: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  log.info({ reason }, "stopping all processes");
  const childBudget = Math.max(1_000, config.SHUTDOWN_TIMEOUT_MS - REDIS_STOP_BUDGET_MS);
  await Promise.all(supervised.map((entry) => stopChild(entry, childBudget)));
  await redis?.stop(REDIS_STOP_BUDGET_MS);
  log.info("all processes stopped");
  process.exit(exitCode);
}

async function stopChild(entry: Supervised, deadlineMs: number): Promise<void> {
  clearTimeout(entry.restartTimer);
  const child = entry.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => {
    log.warn({ process: entry.spec.name }, "did not stop in time: killing");
    child.kill("SIGKILL");
  }, deadlineMs);
  await exited;
  clearTimeout(timer);
}

process.on("SIGINT", () => void shutdown("SIGINT", 0));
process.on("SIGTERM", () => void shutdown("SIGTERM", 0));
for (const entry of supervised) launch(entry);
