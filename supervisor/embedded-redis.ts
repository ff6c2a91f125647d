// The private redis-server that `npm start` runs when REDIS_URL is unset: AOF on, noeviction, files in the data dir.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { Redis } from "ioredis";
import type { Logger } from "../shared/logger.ts";

export const REDIS_INSTALL_HINT =
  "redis-server not found: install it (apt-get install -y redis-server, or brew install redis) or set REDIS_URL to an existing Redis";

export interface EmbeddedRedis {
  url: string;
  process: ChildProcess;
  stop(deadlineMs: number): Promise<void>;
}

export function findRedisServer(searchPath = process.env.PATH ?? ""): string | undefined {
  for (const dir of searchPath.split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, "redis-server");
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")),
      );
    });
  });
}

export interface EmbeddedRedisOptions {
  /**
   * Run it in a process group of its own, so a Ctrl-C in the terminal (SIGINT to the whole foreground group) does not
   * reach it: the supervisor stops it last, once the processes that use it are down.
   */
  ownProcessGroup?: boolean;
}

/** Starts redis-server on a free loopback port and resolves once it answers PING. */
export async function startEmbeddedRedis(
  binary: string,
  dataDir: string,
  log: Logger,
  options: EmbeddedRedisOptions = {},
): Promise<EmbeddedRedis> {
  const dir = path.join(dataDir, "redis");
  mkdirSync(dir, { recursive: true });
  const pidFile = path.join(dir, "redis.pid");
  await stopStaleRedis(pidFile, log);
  const port = await freePort();
  // biome-ignore format: one flag per line reads best
  const args = [
    "--port", String(port), "--bind", "127.0.0.1",
    "--dir", dir, "--pidfile", pidFile, "--logfile", path.join(dir, "redis.log"),
    "--appendonly", "yes", "--appendfsync", "everysec",
    "--maxmemory-policy", "noeviction", "--save", "",
  ];
  const child = spawn(binary, args, { stdio: "ignore", detached: options.ownProcessGroup ?? false });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = `redis://127.0.0.1:${port}`;
  await waitForPing(url, exited);
  log.info({ url, dir, pid: child.pid }, "embedded redis started");
  return {
    url,
    process: child,
    async stop(deadlineMs) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM"); // redis flushes its AOF and exits
      const timer = setTimeout(() => child.kill("SIGKILL"), deadlineMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function waitForPing(url: string, exited: Promise<number | null>): Promise<void> {
  const deadline = Date.now() + 10_000;
  let processGone = false;
  exited.then(() => {
    processGone = true;
  });
  while (Date.now() < deadline && !processGone) {
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => {});
    try {
      await probe.connect();
      if ((await probe.ping()) === "PONG") return;
    } catch {
      // not up yet
    } finally {
      probe.disconnect();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(
    processGone ? "redis-server exited at start (see data/redis/redis.log)" : "redis-server did not answer",
  );
}

/** A redis-server left behind by a supervisor that was killed would share our AOF files: stop it first. */
async function stopStaleRedis(pidFile: string, log: Logger): Promise<void> {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(pidFile, "utf8"), 10);
  } catch {
    return;
  }
  const command = (() => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {
      return "";
    }
  })();
  if (pid > 0 && command.includes("redis-server")) {
    log.warn({ pid }, "stopping a redis-server left over from an earlier run");
    process.kill(pid, "SIGTERM");
    for (let waited = 0; waited < 5_000 && existsSync(`/proc/${pid}`); waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  rmSync(pidFile, { force: true });
}
