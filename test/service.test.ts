// The whole service as `npm start` runs it: embedded Redis, API and both workers under the supervisor.

import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { validate } from "@readme/openapi-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../shared/config.ts";
import { DEADLINE_SLACK_MS, freePort, jsonOf, tempDir, waitFor } from "./helpers/fixtures.ts";
import { isAlive, type RunningService, startService } from "./helpers/service.ts";

/** The supervisor stops its children within SHUTDOWN_TIMEOUT_MS (the tests' services keep the default). */
const STOP_BOUND_MS = parseConfig({}).SHUTDOWN_TIMEOUT_MS + DEADLINE_SLACK_MS;

/** The supervisor's children, read while it runs: Redis and the four processes of `npm start`. */
function expectEveryServiceProcess(pids: number[]): void {
  const commands = pids.map(readCmdline).join(" ");
  for (const name of ["redis-server", "api/main.ts", "host/main.ts", "compression/main.ts", "webhooks/main.ts"]) {
    expect(commands).toContain(name);
  }
}

describe("npm start", () => {
  let service: RunningService;
  beforeAll(async () => {
    service = await startService();
  }, 60_000);
  afterAll(async () => {
    await service?.stop("SIGKILL");
    service?.remove();
  });

  it("comes up healthy on its embedded Redis and SQLite file", async () => {
    const response = await fetch(`${service.baseUrl}/health`);
    expect(await response.json()).toEqual({ status: "ok", checks: { redis: "ok", database: "ok" } });
  });

  it("generates an API key into the data dir and says where", async () => {
    expect(service.apiKey()).toMatch(/^sf_[A-Za-z0-9_-]{32}$/);
    expect(service.output()).toContain(`${service.dataDir}/api-key`);
  });

  it("answers 401 JSON without a token and 200 with the generated key", async () => {
    const anonymous = await fetch(`${service.baseUrl}/hosts`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("content-type")).toContain("application/json");
    const authorized = await fetch(`${service.baseUrl}/hosts`, {
      headers: { authorization: `Bearer ${service.apiKey()}` },
    });
    expect(authorized.status).toBe(200);
  });

  it("serves a valid OpenAPI 3.1 document with a bearer scheme", async () => {
    const document = await jsonOf(await fetch(`${service.baseUrl}/openapi.json`));
    expect(document.openapi).toBe("3.1.0");
    expect(document.components.securitySchemes.bearerAuth).toEqual(
      expect.objectContaining({ type: "http", scheme: "bearer" }),
    );
    const result = await validate(structuredClone(document));
    expect(result.valid ? [] : result.errors).toEqual([]);
  });

  it("carries a job from the API through Redis to the capture worker and back", async () => {
    const hostId = await waitFor(() => service.hostId(), { what: "host id" });
    const response = await fetch(`${service.baseUrl}/hosts/${hostId}/ping`, {
      method: "POST",
      headers: { authorization: `Bearer ${service.apiKey()}` },
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ host_id: hostId, round_trip_ms: expect.any(Number) });
  });

  it("logs structured JSON lines named after each process", () => {
    const names = new Set(
      service
        .output()
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line).name),
    );
    for (const name of ["supervisor", "api", "capture-worker", "compression-worker", "webhooks-worker"])
      expect(names).toContain(name);
  });

  it("stops every process cleanly within SHUTDOWN_TIMEOUT_MS on SIGTERM", async () => {
    const children = service.childPids();
    expect(children.length).toBe(5); // redis-server + four processes
    const { code, ms } = await service.stop("SIGTERM");
    expect(code).toBe(0);
    expect(service.output()).not.toContain("did not stop in time"); // the deadline, by the supervisor's own clock
    expect(ms).toBeLessThan(STOP_BOUND_MS);
    for (const pid of children) expect(isAlive(pid), `pid ${pid}`).toBe(false);
    expect(service.output()).toContain("all processes stopped");
  });
});

describe("supervision", () => {
  it("restarts a worker that dies and stops everything on SIGINT", async () => {
    const service = await startService();
    try {
      const before = service.childPids();
      const hostIdLine = service
        .output()
        .split("\n")
        .find((line) => line.includes('"capture worker started"'));
      const workerPid = JSON.parse(hostIdLine!).pid as number;
      process.kill(workerPid, "SIGKILL");
      // Read while the supervisor runs: once it has exited, pgrep -P finds no children whatever is left.
      const running = await waitFor(
        () => {
          const now = service.childPids();
          return now.length === before.length && !now.includes(workerPid) ? now : undefined;
        },
        { timeoutMs: 20_000, what: "the capture worker to be restarted" },
      );
      expectEveryServiceProcess(running);
      const { code, ms } = await service.stop("SIGINT");
      expect(code).toBe(0);
      expect(service.output()).not.toContain("did not stop in time"); // the deadline, by the supervisor's own clock
      expect(ms).toBeLessThan(STOP_BOUND_MS);
      for (const pid of running) expect(isAlive(pid), `pid ${pid} ${readCmdline(pid)}`).toBe(false);
    } finally {
      await service.stop("SIGKILL");
      service.remove();
    }
  });

  it("stops every process cleanly on Ctrl-C (SIGINT to the whole process group)", async () => {
    const service = await startService({}, { processGroup: true });
    try {
      const children = service.childPids();
      expectEveryServiceProcess(children);
      const exited = new Promise<number | null>((resolve) => service.supervisor.once("exit", (code) => resolve(code)));
      const started = Date.now();
      process.kill(-service.supervisor.pid!, "SIGINT");
      const code = await exited;
      console.log(`Ctrl-C to the process group: everything stopped in ${Date.now() - started} ms`);
      expect(code).toBe(0);
      for (const pid of children) expect(isAlive(pid), `pid ${pid} ${readCmdline(pid)}`).toBe(false);
      expect(service.output()).toContain("all processes stopped");
      expect(service.output()).not.toContain("did not stop in time");
    } finally {
      await service.stop("SIGKILL");
      service.remove();
    }
  });

  it("children stop by themselves when the supervisor is killed with SIGKILL", async () => {
    const service = await startService();
    try {
      const children = service.childPids();
      const processes = children.filter((pid) => !readCmdline(pid).includes("redis-server"));
      expect(processes).toHaveLength(4);
      await service.stop("SIGKILL");
      // redis-server has no watchdog; the next start stops it through its pidfile. The four processes go.
      await waitFor(() => (processes.every((pid) => !isAlive(pid)) ? true : undefined), {
        timeoutMs: 15_000,
        what: "orphaned processes to exit",
      });
      for (const pid of children) if (isAlive(pid)) process.kill(pid, "SIGKILL");
    } finally {
      service.remove();
    }
  });
});

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return "";
  }
}

describe("without a redis-server binary", () => {
  it("exits with a one-line hint on how to get one", () => {
    const data = tempDir("noredis");
    const result = spawnSync(process.execPath, ["--import", "tsx", "supervisor/main.ts"], {
      env: { ...process.env, PATH: "/nonexistent", REDIS_URL: "", DATA_DIR: data.dir },
      encoding: "utf8",
      timeout: 30_000,
    });
    data.remove();
    expect(result.status).toBe(1);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain("apt-get install -y redis-server");
  });
});

describe("the API with Redis down at boot", () => {
  it("serves a degraded /health and 503s instead of waiting for Redis", async () => {
    const data = tempDir("noredis-api");
    const port = await freePort();
    const api = spawn(process.execPath, ["--import", "tsx", "api/main.ts"], {
      env: {
        ...process.env,
        DATA_DIR: data.dir,
        PORT: String(port),
        REDIS_URL: "redis://127.0.0.1:1",
        LOG_LEVEL: "error",
      },
      stdio: "ignore",
    });
    try {
      const health = await waitFor(
        async () => {
          const response = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
          return response ? { status: response.status, body: await jsonOf(response) } : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200, what: "the API to listen" },
      );
      expect(health).toEqual({ status: 503, body: { status: "degraded", checks: { redis: "down", database: "ok" } } });
      const key = readFileSync(path.join(data.dir, "api-key"), "utf8").trim();
      const response = await fetch(`http://127.0.0.1:${port}/instances`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "web-1" }),
      });
      expect(response.status).toBe(503);
      expect((await jsonOf(response)).code).toBe("unavailable");
    } finally {
      api.kill("SIGKILL");
      data.remove();
    }
  });
});
