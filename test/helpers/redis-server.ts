// A redis-server a test controls itself (kill it, bring back an empty one on the same port), unlike the shared one.
import { type ChildProcess, spawn } from "node:child_process";
import { Redis } from "ioredis";
import { findRedisServer } from "../../supervisor/embedded-redis.ts";
import { freePort, waitFor } from "./fixtures.ts";

export interface TestRedis {
  url: string;
  port: number;
  /** Stops this server (SIGKILL: its data is gone, as on a lost disk). */
  kill(): Promise<void>;
  /** Starts a new, empty server on the same port. */
  restartEmpty(): Promise<void>;
  stop(): Promise<void>;
}

export async function startTestRedis(): Promise<TestRedis> {
  const binary = findRedisServer();
  if (!binary) throw new Error("redis-server is not installed");
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async () => {
    child = spawn(binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    });
    await waitFor(() => redisAnswers(port), { timeoutMs: 10_000, intervalMs: 100, what: "redis-server to answer" });
  };
  const kill = async () => {
    const running = child;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGKILL");
    await exited;
  };
  await launch();
  return { url: `redis://127.0.0.1:${port}`, port, kill, restartEmpty: launch, stop: kill };
}

/** True once the redis-server on loopback `port` answers PING; undefined while it does not (for waitFor). */
export async function redisAnswers(port: number): Promise<true | undefined> {
  return probeRedis(port, async (probe) => ((await probe.ping()) === "PONG" ? true : undefined));
}

/** The process id the Redis server (or sentinel) answering on `port` reports, if one answers. */
export async function redisProcessId(port: number): Promise<number | undefined> {
  return probeRedis(port, async (probe) => {
    const match = /^process_id:(\d+)/m.exec((await probe.call("INFO", "server")) as string);
    return match ? Number(match[1]) : undefined;
  });
}

/** One question to whatever answers on `port`, on a connection that never retries; undefined when none answers. */
async function probeRedis<T>(port: number, ask: (probe: Redis) => Promise<T | undefined>): Promise<T | undefined> {
  const probe = new Redis(port, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on("error", () => {});
  try {
    await probe.connect();
    return await ask(probe);
  } catch {
    return undefined;
  } finally {
    probe.disconnect();
  }
}
