// The soak's chaos: SIGKILLs of the service's processes and of a second host's, and a Redis the soak owns so it can
// kill it, bring it back on the same port from its own AOF, and flush it.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { Redis } from "ioredis";
import { entryCommand, SERVICE_PROCESSES } from "../../supervisor/processes.ts";
import { type ServiceProcess, startProcess, waitForLog } from "../helpers/processes.ts";
import { type RunningService, servicePid } from "../helpers/service.ts";

/** The second host's processes, as the kill targets name them. */
const SECOND_HOST_PROCESSES = [
  { name: "host-b capture-worker", entry: "workers/host/main.ts", ready: "capture worker started" },
  { name: "host-b compression-worker", entry: "workers/compression/main.ts", ready: "compression worker started" },
] as const;

export const KILL_TARGETS = [
  ...SERVICE_PROCESSES.map((spec) => spec.name),
  ...SECOND_HOST_PROCESSES.map((spec) => spec.name),
  "redis",
] as const;

/**
 * A second worker host (a capture and a compression worker with their own HOST_ID and DATA_DIR) on the service's
 * Redis, started the way a deployment starts one; the soak restarts what it kills, as a process manager would.
 */
export class SoakHost {
  private readonly processes = new Map<string, ServiceProcess>();

  constructor(
    readonly id: string,
    readonly dataDir: string,
    private readonly env: Record<string, string>,
  ) {}

  static readonly processNames: readonly string[] = SECOND_HOST_PROCESSES.map((spec) => spec.name);

  async start(): Promise<void> {
    await Promise.all(SECOND_HOST_PROCESSES.map((spec) => this.startOne(spec.name)));
  }

  /** SIGKILLs `name` and starts it again a second later; resolves once it is ready. */
  async killAndRestart(name: string): Promise<void> {
    const running = this.processes.get(name);
    if (running) {
      running.child.kill("SIGKILL");
      await running.exited;
    }
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // down for a while, as a restarting unit would be
    await this.startOne(name);
  }

  pids(): number[] {
    return [...this.processes.values()].flatMap((running) => (running.child.pid ? [running.child.pid] : []));
  }

  /** The last lines each process wrote, for a failed run's report. */
  tail(lines = 20): string {
    return [...this.processes.values()]
      .map((running) => `--- ${running.name}\n${running.output().split("\n").slice(-lines).join("\n")}`)
      .join("\n");
  }

  async stop(): Promise<void> {
    await Promise.all([...this.processes.values()].map((running) => running.stop("SIGTERM")));
  }

  private async startOne(name: string): Promise<void> {
    const spec = SECOND_HOST_PROCESSES.find((candidate) => candidate.name === name)!;
    const started = startProcess(name, entryCommand(spec.entry), {
      ...this.env,
      HOST_ID: this.id,
      DATA_DIR: this.dataDir,
    });
    this.processes.set(name, started);
    await waitForLog(started, spec.ready, 120_000);
  }
}

/** A redis-server as `npm start` runs one (AOF on, noeviction), on a port that stays the same across restarts. */
export class SoakRedis {
  private child?: ChildProcess;

  constructor(
    private readonly dir: string,
    readonly port: number,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts it unless it runs; resolves once it answers PING. */
  async start(): Promise<void> {
    if (this.running) return;
    // biome-ignore format: one flag per line reads best
    const args = [
      "--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir,
      "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction", "--save", "",
    ];
    this.child = spawn("redis-server", args, { stdio: "ignore" });
    const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => {});
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          if (probe.status !== "ready") await probe.connect();
          await probe.ping();
          return;
        } catch {
          if (attempt > 100) throw new Error("the soak's redis-server did not answer");
          await new Promise((resolve) => setTimeout(resolve, 100)); // retry interval: the server is still starting
        }
      }
    } finally {
      probe.disconnect();
    }
  }

  /** SIGKILL, as a crash would; resolves once it is gone. */
  kill(): Promise<void> {
    return this.signalAndWait("SIGKILL");
  }

  async flushAll(): Promise<void> {
    const client = new Redis(this.url, { maxRetriesPerRequest: 1 });
    try {
      await client.flushall();
    } finally {
      client.disconnect();
    }
  }

  stop(): Promise<void> {
    return this.signalAndWait("SIGTERM");
  }

  /** At once, without waiting (from an exit handler, where nothing async runs). */
  killNow(): void {
    if (this.running) this.child!.kill("SIGKILL");
  }

  private async signalAndWait(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    await exited;
  }
}

/** SIGKILLs the service process `name`; false when none was running (the supervisor is restarting it). */
export function killServiceProcess(service: RunningService, name: string): boolean {
  const pid = servicePid(service, name);
  if (pid === undefined) return false;
  try {
    process.kill(pid, "SIGKILL");
    return true;
  } catch {
    return false;
  }
}
