// A Redis primary, its replica and three sentinels watching them (`redis-server --sentinel`, the engine Debian's
// redis-sentinel package runs), each in a temp dir on its own loopback port: for failovers a test brings about.
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { findRedisServer } from "../../supervisor/embedded-redis.ts";
import { freePort, tempDir, waitFor } from "./fixtures.ts";
import { redisAnswers, redisProcessId } from "./redis-server.ts";

export interface SentinelSet {
  name: string;
  /** REDIS_SENTINELS: `127.0.0.1:<port>,…`. */
  sentinels: string;
  /** The port of the server the sentinels call the primary now. */
  primaryPort(): Promise<number>;
  /** Asks the sentinels for a failover; resolves once they name the other server as primary and it takes writes. */
  failover(): Promise<{ from: number; to: number }>;
  stop(): Promise<void>;
}

const SENTINELS = 3;

/**
 * Starts the set, again on other ports when one of them was taken meanwhile (another test's server got a port between
 * freePort and the bind: CI once saw a sentinel port answered by a plain redis-server).
 */
export async function startSentinelSet(name = "snapfleet-test"): Promise<SentinelSet> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startSentinelSetOnce(name);
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

async function startSentinelSetOnce(name: string): Promise<SentinelSet> {
  const binary = findRedisServer();
  if (!binary) throw new Error("redis-server is not installed");
  const dir = tempDir("sentinel");
  const children: ChildProcess[] = [];
  /** The process started for each port: the server answering there must be it. */
  const started = new Map<number, ChildProcess>();
  const run = (args: string[], port: number) => {
    const child = spawn(binary, args, { stdio: "ignore" });
    children.push(child);
    started.set(port, child);
    return child;
  };
  const killAll = () =>
    Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGKILL");
          }),
      ),
    );
  try {
    return await startServers();
  } catch (error) {
    await killAll();
    dir.remove();
    throw error;
  }

  async function startServers(): Promise<SentinelSet> {
    const answers = redisAnswers;
    const [primary, replica] = [await freePort(), await freePort()];
    const server = (port: number, extra: string[] = []) =>
      run(
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "yes",
          "--dir",
          dir.dir,
          "--appendfilename",
          `aof-${port}`,
          "--appenddirname",
          `aof-${port}`,
          ...extra,
        ],
        port,
      );
    server(primary);
    server(replica, ["--replicaof", "127.0.0.1", String(primary)]);
    const sentinelPorts: number[] = [];
    for (let index = 0; index < SENTINELS; index++) {
      const port = await freePort();
      const config = path.join(dir.dir, `sentinel-${port}.conf`);
      // Quorum 2 of 3; a primary silent for 2 s is down; a failover may take 10 s before another is tried.
      writeFileSync(
        config,
        [
          `port ${port}`,
          "bind 127.0.0.1",
          `sentinel monitor ${name} 127.0.0.1 ${primary} 2`,
          `sentinel down-after-milliseconds ${name} 2000`,
          `sentinel failover-timeout ${name} 10000`,
          `sentinel parallel-syncs ${name} 1`,
          "",
        ].join("\n"),
      );
      run([config, "--sentinel"], port);
      sentinelPorts.push(port);
    }
    for (const port of [primary, replica, ...sentinelPorts]) {
      const child = started.get(port)!;
      await waitFor(
        async () => {
          if (child.exitCode !== null) throw new Error(`the server for port ${port} exited (the port was taken?)`);
          return (await answers(port)) && (await redisProcessId(port)) === child.pid ? true : undefined;
        },
        { timeoutMs: 15_000, intervalMs: 100, what: `redis on port ${port}` },
      );
    }
    const sentinelClient = () => new Redis(sentinelPorts[0]!, "127.0.0.1", { maxRetriesPerRequest: 1 });
    const primaryPort = async () => {
      const client = sentinelClient();
      try {
        const [, port] = (await client.call("SENTINEL", "get-master-addr-by-name", name)) as [string, string];
        return Number(port);
      } finally {
        client.disconnect();
      }
    };
    // Every sentinel knows the replica and the other sentinels before a failover is asked for.
    await waitFor(
      async () => {
        const client = sentinelClient();
        try {
          const replicas = (await client.call("SENTINEL", "replicas", name)) as unknown[];
          const others = (await client.call("SENTINEL", "sentinels", name)) as unknown[];
          return replicas.length === 1 && others.length === SENTINELS - 1 ? true : undefined;
        } finally {
          client.disconnect();
        }
      },
      { timeoutMs: 30_000, intervalMs: 200, what: "the sentinels to find the replica and each other" },
    );
    return {
      name,
      sentinels: sentinelPorts.map((port) => `127.0.0.1:${port}`).join(","),
      primaryPort,
      async failover() {
        const from = await primaryPort();
        const client = sentinelClient();
        try {
          await client.call("SENTINEL", "failover", name);
        } finally {
          client.disconnect();
        }
        const to = await waitFor(
          async () => {
            const now = await primaryPort();
            if (now === from) return undefined;
            const promoted = new Redis(now, "127.0.0.1", { maxRetriesPerRequest: 1 });
            try {
              const role = (await promoted.call("ROLE")) as unknown;
              return Array.isArray(role) && role[0] === "master" ? now : undefined;
            } finally {
              promoted.disconnect();
            }
          },
          { timeoutMs: 30_000, intervalMs: 200, what: "the sentinels to promote the replica" },
        );
        return { from, to };
      },
      async stop() {
        await killAll();
        dir.remove();
      },
    };
  }
}
