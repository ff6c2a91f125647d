// What every command gets: the connection (from global flags, env or data/api-key) and the output mode.

import { APIError } from "@onkernel/hypeman";
import type { Command } from "commander";
import { CliError, type Connection, resolveConnection } from "./connection.ts";
import { createOutput, type Output } from "./output.ts";

export interface Context {
  connection: Connection;
  output: Output;
}

interface GlobalOptions {
  url?: string;
  apiKey?: string;
  json?: boolean;
}

/** Wraps a command's action: builds its context from the global options and turns failures into one stderr line. */
export function withContext<Args extends unknown[]>(
  action: (context: Context, ...args: Args) => Promise<void>,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const command = args.at(-1) as Command;
    const options = command.optsWithGlobals<GlobalOptions>();
    try {
      const connection = resolveConnection({ url: options.url, apiKey: options.apiKey });
      await action({ connection, output: createOutput(Boolean(options.json)) }, ...(args.slice(0, -1) as Args));
    } catch (error) {
      process.stderr.write(`error: ${describe(error)}\n`);
      process.exitCode = 1;
    }
  };
}

function describe(error: unknown): string {
  if (error instanceof APIError) {
    const body = error.error as { code?: string; message?: string } | undefined;
    return body?.message ? `${error.status} ${body.code}: ${body.message}` : error.message;
  }
  if (error instanceof CliError) return error.message;
  if (error instanceof TypeError && /fetch failed/.test(error.message)) {
    return `cannot reach the service (${(error.cause as Error | undefined)?.message ?? error.message})`;
  }
  return error instanceof Error ? error.message : String(error);
}
