// Runs the whole service the way `npm start` does (supervisor + embedded Redis + API + workers) in a temp data dir.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { freePort, tempDir, waitFor } from "./fixtures.ts";

export interface RunningService {
  baseUrl: string;
  dataDir: string;
  supervisor: ChildProcess;
  output: () => string;
  apiKey: () => string;
  hostId: () => string;
  /** Pids of the supervisor's children (the three processes and Redis). */
  childPids: () => number[];
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; ms: number }>;
  remove(): void;
}

export async function startService(env: Record<string, string> = {}): Promise<RunningService> {
  const data = tempDir("service");
  const port = await freePort();
  let output = "";
  const supervisor = spawn(process.execPath, ["--import", "tsx", "supervisor/main.ts"], {
    env: {
      ...process.env,
      REDIS_URL: "",
      API_KEYS: "",
      DATA_DIR: data.dir,
      PORT: String(port),
      LOG_LEVEL: "info",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  supervisor.stdout!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  supervisor.stderr!.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => supervisor.once("exit", (code) => resolve(code)));
  const baseUrl = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (supervisor.exitCode !== null) throw new Error(`service exited early:\n${output}`);
      const response = await fetch(`${baseUrl}/health`).catch(() => undefined);
      return response?.status === 200 ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 200, what: "the service to become healthy" },
  );
  return {
    baseUrl,
    dataDir: data.dir,
    supervisor,
    output: () => output,
    apiKey: () => readFileSync(path.join(data.dir, "api-key"), "utf8").trim(),
    hostId: () => readFileSync(path.join(data.dir, "host-id"), "utf8").trim(),
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
    async stop(signal = "SIGTERM") {
      const started = Date.now();
      if (supervisor.exitCode === null) supervisor.kill(signal);
      const code = await exited;
      return { code, ms: Date.now() - started };
    },
    remove: () => data.remove(),
  };
}

export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
