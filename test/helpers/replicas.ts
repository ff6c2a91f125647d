// The service scaled out: replica A is `npm start` (supervisor, API and workers) and replica B a second API
// process, both on one PostgreSQL database and the test run's Redis under one prefix, with the same keys.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { freePort, tempDir, testRedisUrl, uniquePrefix, waitFor } from "./fixtures.ts";
import { createTestDatabase } from "./postgres.ts";
import { type RunningService, startService } from "./service.ts";

export const REPLICA_API_KEY = "replica-test-key-0123456789";

export interface ApiReplica {
  baseUrl: string;
  /** fetch against this replica with the shared key. */
  api(pathAndQuery: string, init?: { method?: string; json?: unknown }): Promise<Response>;
}

export interface ReplicatedService {
  prefix: string;
  redisUrl: string;
  /** Replica A: the whole service (its data dir holds the worker host's snapshots). */
  a: ApiReplica & { service: RunningService };
  /** Replica B: an API process only. */
  b: ApiReplica & { process: ChildProcess; output: () => string };
  stop(): Promise<void>;
}

export async function startReplicatedService(env: Record<string, string> = {}): Promise<ReplicatedService> {
  const database = await createTestDatabase();
  const prefix = uniquePrefix("replicas");
  const shared = {
    REDIS_URL: testRedisUrl(),
    REDIS_PREFIX: prefix,
    DATABASE_URL: database.url,
    API_KEYS: REPLICA_API_KEY,
    WEBHOOK_SECRET_KEY: randomBytes(32).toString("base64"),
    ...env,
  };
  const service = await startService({ ...shared, API_REPLICA_ID: "replica-a" });
  const b = await startApiProcess({ ...shared, API_REPLICA_ID: "replica-b" });
  return {
    prefix,
    redisUrl: shared.REDIS_URL,
    a: { service, ...replicaClient(service.baseUrl) },
    b,
    async stop() {
      if (b.process.exitCode === null && b.process.signalCode === null) {
        const exited = new Promise((resolve) => b.process.once("exit", resolve));
        b.process.kill("SIGTERM");
        await exited;
      }
      await service.stop("SIGTERM");
      service.remove();
      await database.drop();
    },
  };
}

function replicaClient(baseUrl: string): ApiReplica {
  return {
    baseUrl,
    api(pathAndQuery, init = {}) {
      const headers: Record<string, string> = { authorization: `Bearer ${REPLICA_API_KEY}` };
      if (init.json !== undefined) headers["content-type"] = "application/json";
      return fetch(`${baseUrl}${pathAndQuery}`, {
        method: init.method ?? (init.json === undefined ? "GET" : "POST"),
        headers,
        body: init.json === undefined ? undefined : JSON.stringify(init.json),
      });
    },
  };
}

async function startApiProcess(env: Record<string, string>): Promise<ReplicatedService["b"]> {
  const data = tempDir("replica-b");
  const port = await freePort();
  let output = "";
  const child = spawn(process.execPath, ["--import", "tsx", "api/main.ts"], {
    env: { ...process.env, ...env, DATA_DIR: data.dir, PORT: String(port), LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.once("exit", () => data.remove());
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`replica B exited early:\n${output}`);
      const response = await fetch(`${baseUrl}/health`).catch(() => undefined);
      return response?.status === 200 ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200, what: "replica B to become healthy" },
  );
  return { process: child, output: () => output, ...replicaClient(baseUrl) };
}
