/** Small helpers to find and run host commands. */
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Absolute path of an executable found on PATH (or given as a path), or null. */
export async function findExecutable(command: string): Promise<string | null> {
  const candidates = command.includes("/")
    ? [command]
    : (process.env.PATH ?? "").split(path.delimiter).flatMap((dir) => (dir ? [path.join(dir, command)] : []));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return path.resolve(candidate);
    } catch {
      // not here; try the next PATH entry
    }
  }
  return null;
}

export interface RunOptions {
  cwd?: string;
  timeoutMs?: number;
  /** Output larger than this fails the command (default 64 MiB). */
  maxBuffer?: number;
}

/** Runs a command without a shell; rejects with stderr in the message when it fails. */
export async function run(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileAsync(command, args, {
      cwd: options.cwd,
      timeout: options.timeoutMs ?? 0,
      maxBuffer: options.maxBuffer ?? 64 * 1024 * 1024,
      encoding: "utf8",
    });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr?.trim();
    throw new Error(`${command} ${args.join(" ")} failed${stderr ? `: ${stderr}` : ""}`, { cause: error });
  }
}
