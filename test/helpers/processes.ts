// Service processes started the way a deployment starts them (an entry point and an environment), one per role.
import { type ChildProcess, spawn } from "node:child_process";
import { waitFor } from "./fixtures.ts";

export interface ServiceProcess {
  name: string;
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs `command` (argv) from the repository root with exactly `env` plus PATH and HOME. */
export function startProcess(name: string, command: readonly string[], env: Record<string, string>): ServiceProcess {
  const [executable, ...args] = command;
  const child = spawn(executable === "node" ? process.execPath : executable!, args, {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const append = (chunk: Buffer) => {
    output += chunk.toString();
  };
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    name,
    child,
    output: () => output,
    exited,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Waits until a process logs a line containing `text`; fails at once if it exits first. */
export async function waitForLog(process: ServiceProcess, text: string, timeoutMs = 90_000): Promise<true> {
  const waited = waitFor(
    () => {
      if (process.output().includes(text)) return true;
      if (process.child.exitCode !== null) throw new Error(`${process.name} exited:\n${process.output()}`);
      return undefined;
    },
    { timeoutMs, intervalMs: 100, what: `${process.name} to log "${text}"` },
  );
  return waited.catch((error: Error) => {
    throw new Error(`${error.message}; its output so far:\n${process.output().slice(-3_000)}`);
  });
}
