// Runs the whole service the way `npm start` does (supervisor + embedded Redis + API + workers) in a temp data dir.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { SERVICE_PROCESSES } from "../../supervisor/processes.ts";
import { freePort, tempDir, waitFor } from "./fixtures.ts";

/** The guest image `npm test` builds once (scripts/setup.mjs), shared by every test's data dir. */
export const TEST_IMAGES_DIR = path.resolve(process.env.IMAGES_DIR || "data/images");

export interface RunningService {
  baseUrl: string;
  dataDir: string;
  supervisor: ChildProcess;
  output: () => string;
  apiKey: () => string;
  hostId: () => string;
  /** Pids of the supervisor's children (the three processes and Redis). */
  childPids: () => number[];
  /** fetch against the service with the generated key. */
  api(pathAndQuery: string, init?: { method?: string; json?: unknown }): Promise<Response>;
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; ms: number }>;
  remove(): void;
}

export interface StartServiceOptions {
  /** Run the supervisor as the leader of its own process group, as a shell runs `npm start` in a terminal. */
  processGroup?: boolean;
  /** How long to wait for /health (a loaded machine starts the service slowly). */
  readyTimeoutMs?: number;
}

export async function startService(
  env: Record<string, string> = {},
  options: StartServiceOptions = {},
): Promise<RunningService> {
  const data = tempDir("service");
  // A test may run a service again on an earlier one's data dir (a restart of every process).
  const dataDir = env.DATA_DIR || data.dir;
  const port = await freePort();
  let output = "";
  const supervisor = spawn(process.execPath, ["--import", "tsx", "supervisor/main.ts"], {
    env: {
      ...process.env,
      REDIS_URL: "",
      API_KEYS: "",
      DATA_DIR: data.dir,
      IMAGES_DIR: TEST_IMAGES_DIR,
      QEMU_ACCEL: "tcg",
      PORT: String(port),
      LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.processGroup ?? false,
  });
  supervisor.stdout!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  supervisor.stderr!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => supervisor.once("exit", (code) => resolve(code)));
  const baseUrl = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (supervisor.exitCode !== null) throw new Error(`service exited early:\n${output}`);
        const response = await fetch(`${baseUrl}/health`).catch(() => undefined);
        return response?.status === 200 ? true : undefined;
      },
      { timeoutMs: options.readyTimeoutMs ?? 60_000, intervalMs: 200, what: "the service to become healthy" },
    );
  } catch (error) {
    // Leave nothing running: the supervisor stops its children and its Redis (which has a process group of its own).
    supervisor.kill("SIGTERM");
    await exited;
    removeDataDir(data);
    throw error;
  }
  return {
    baseUrl,
    dataDir,
    supervisor,
    output: () => output,
    apiKey: () => readFileSync(path.join(dataDir, "api-key"), "utf8").trim(),
    hostId: () => readFileSync(path.join(dataDir, "host-id"), "utf8").trim(),
    childPids: () => {
      try {
        return execFileSync("pgrep", ["-P", String(supervisor.pid)], { encoding: "utf8" })
          .split("\n")
          .filter(Boolean)
          .map(Number);
      } catch {
        return [];
      }
    },
    api(pathAndQuery, init = {}) {
      const key = readFileSync(path.join(dataDir, "api-key"), "utf8").trim();
      const headers: Record<string, string> = { authorization: `Bearer ${key}` };
      if (init.json !== undefined) headers["content-type"] = "application/json";
      return fetch(`${baseUrl}${pathAndQuery}`, {
        method: init.method ?? (init.json === undefined ? "GET" : "POST"),
        headers,
        body: init.json === undefined ? undefined : JSON.stringify(init.json),
      });
    },
    async stop(signal = "SIGTERM") {
      const started = Date.now();
      if (supervisor.exitCode === null) supervisor.kill(signal);
      const code = await exited;
      return { code, ms: Date.now() - started };
    },
    remove: () => removeDataDir(data),
  };
}

/** The pid of the supervisor's child running `name` (api, capture-worker…), if one runs now. */
export function servicePid(service: Pick<RunningService, "childPids">, name: string): number | undefined {
  const entry = SERVICE_PROCESSES.find((spec) => spec.name === name)?.entry;
  if (!entry) return undefined;
  return service.childPids().find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(entry);
    } catch {
      return false;
    }
  });
}

/** True while the process exists and is not a zombie (daemonized QEMU is reaped by whoever adopted it). */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !["Z", "X"].includes(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
  } catch {
    return false;
  }
};

/** A test's data dir and what outlives the service in it: its VMs, then its image mounts, then the files. */
export function removeDataDir(data: { dir: string; remove: () => void }): void {
  killProcessesUsing(data.dir);
  unmountUnder(data.dir);
  data.remove();
}

/** Snapshot image mounts outlive the service with the VMs that map them; detached here (lazily: QEMUs die async). */
export function unmountUnder(dir: string): void {
  for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
    const target = line.split(" ")[1];
    if (target?.startsWith(`${dir}/`)) execFileSync("umount", ["--lazy", target]);
  }
}

/** VMs outlive the service by design; a test's QEMUs are found by their data dir and killed. */
export function killProcessesUsing(dir: string): void {
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(dir)) process.kill(Number(pid), "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
}
