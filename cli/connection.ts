// Where the CLI talks to and with which key: flags, then SNAPFLEET_URL / SNAPFLEET_API_KEY, then the key the
// service generated in data/api-key (DATA_DIR when set). The official SDK is the client for what it covers.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import Hypeman from "@onkernel/hypeman";
import { readSse } from "./sse.ts";

export const DEFAULT_URL = "http://localhost:8080";

export interface ConnectionFlags {
  url?: string;
  apiKey?: string;
}

export interface Connection {
  baseUrl: string;
  apiKey: string;
  sdk: Hypeman;
  /** GET a JSON route the SDK does not cover. */
  get<T>(pathAndQuery: string): Promise<T>;
  /** Opens GET /events; resolves once the stream's `ready` message names its start. */
  events(query: Record<string, string>, signal: AbortSignal): Promise<AsyncGenerator<StreamedEvent>>;
}

export interface StreamedEvent {
  position: string;
  id: string;
  type: string;
  occurred_at: string;
  subject: string;
  data: Record<string, unknown>;
}

export class CliError extends Error {}

export function resolveConnection(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Connection {
  const baseUrl = (flags.url ?? env.SNAPFLEET_URL ?? DEFAULT_URL).replace(/\/+$/, "");
  const keyFile = path.join(env.DATA_DIR ?? "data", "api-key");
  const apiKey =
    flags.apiKey ?? env.SNAPFLEET_API_KEY ?? (existsSync(keyFile) ? readFileSync(keyFile, "utf8").trim() : "");
  if (!apiKey) throw new CliError(`no API key: pass --api-key, set SNAPFLEET_API_KEY, or run where ${keyFile} exists`);
  const headers = { authorization: `Bearer ${apiKey}` };
  const request = async (pathAndQuery: string, signal?: AbortSignal) => {
    const response = await fetch(`${baseUrl}${pathAndQuery}`, { headers, signal });
    if (!response.ok) throw new CliError(`${response.status} ${await errorMessage(response)}`);
    return response;
  };
  return {
    baseUrl,
    apiKey,
    sdk: new Hypeman({ apiKey, baseURL: baseUrl, maxRetries: 0 }),
    get: async <T>(pathAndQuery: string) => (await (await request(pathAndQuery)).json()) as T,
    async events(query, signal) {
      const response = await request(`/events?${new URLSearchParams(query)}`, signal);
      const messages = readSse(response.body!);
      const first = await messages.next();
      if (first.done || first.value.event !== "ready") throw new CliError("the event stream did not start");
      return (async function* () {
        for await (const message of messages) {
          if (message.event === "message") yield { ...JSON.parse(message.data), position: message.id };
        }
      })();
    },
  };
}

async function errorMessage(response: Response): Promise<string> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as { code?: string; message?: string };
    return body.message ? `${body.code}: ${body.message}` : text;
  } catch {
    return text;
  }
}
