// Calls to hosts' payload servers (workers/host/payload-server.ts), from the API and from other hosts: every
// request signed for its host, method and path (shared/fleet-secret.ts), over HTTPS verified against
// PAYLOAD_TLS_CA when one is configured (then a plain http:// payload URL is refused, never downgraded to).
import { readFileSync } from "node:fs";
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Config } from "./config.ts";
import { hostPayloadKey, loadFleetSecret, signPayloadRequest } from "./fleet-secret.ts";

export interface PayloadTarget {
  hostId: string;
  /** The host's announced payload_url. */
  url: string;
}

export interface PayloadCall {
  method?: string;
  headers?: Record<string, string>;
  body?: ReadableStream<Uint8Array> | null;
}

export class PayloadUrlRefusedError extends Error {
  override name = "PayloadUrlRefusedError";
}

export interface PayloadClientOptions {
  secret: string;
  ca?: string;
  /** HTTP_IDLE_TIMEOUT_MS: no byte either way for this long fails the call (a host that accepted and went silent). */
  idleMs?: number;
}

export class PayloadClient {
  constructor(private readonly options: PayloadClientOptions) {}

  /** Sends one signed request; resolves with the answer whatever its status, rejects when nothing answered. */
  async request(target: PayloadTarget, pathAndQuery: string, call: PayloadCall = {}): Promise<Response> {
    const url = new URL(pathAndQuery, target.url);
    if (url.protocol !== "https:" && (url.protocol !== "http:" || this.options.ca)) {
      throw new PayloadUrlRefusedError(`host ${target.hostId}'s payload URL ${target.url} is not https`);
    }
    const method = call.method ?? "GET";
    const token = signPayloadRequest(hostPayloadKey(this.options.secret, target.hostId), {
      method,
      path: `${url.pathname}${url.search}`,
    });
    const headers: OutgoingHttpHeaders = { ...call.headers, authorization: `Bearer ${token}` };
    const answer = await send(url, { method, headers, ca: this.options.ca }, call.body, this.options.idleMs);
    return toResponse(answer, method);
  }
}

function send(
  url: URL,
  options: { method: string; headers: OutgoingHttpHeaders; ca?: string },
  body: ReadableStream<Uint8Array> | null | undefined,
  idleMs: number | undefined,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const request =
      url.protocol === "https:" ? httpsRequest(url, options, resolve) : httpRequest(url, options, resolve);
    request.once("error", reject);
    // The socket's inactivity timer: it covers the wait for an answer and every pause of the body that follows.
    if (idleMs) {
      request.setTimeout(idleMs, () =>
        request.destroy(new Error(`${url.host} sent nothing for ${idleMs} ms (HTTP_IDLE_TIMEOUT_MS)`)),
      );
    }
    if (!body) return void request.end();
    pipeline(Readable.fromWeb(body as never), request).catch((error: Error) => request.destroy(error));
  });
}

function toResponse(answer: IncomingMessage, method: string): Response {
  const headers = new Headers();
  for (const [name, value] of Object.entries(answer.headers)) {
    for (const one of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, one);
  }
  const status = answer.statusCode ?? 502;
  const empty = method === "HEAD" || status === 204 || status === 304;
  if (empty) answer.resume();
  const body = empty ? null : (Readable.toWeb(answer) as unknown as ReadableStream<Uint8Array>);
  return new Response(body, { status, headers });
}

/** The client every process of this deployment uses: its fleet secret, and the CA named by PAYLOAD_TLS_CA. */
export function payloadClientFor(
  config: Pick<Config, "FLEET_SECRET" | "DATA_DIR" | "PAYLOAD_TLS_CA" | "HTTP_IDLE_TIMEOUT_MS">,
  secret = loadFleetSecret(config.FLEET_SECRET, config.DATA_DIR).secret,
): PayloadClient {
  return new PayloadClient({
    secret,
    ca: config.PAYLOAD_TLS_CA ? readFileSync(config.PAYLOAD_TLS_CA, "utf8") : undefined,
    idleMs: config.HTTP_IDLE_TIMEOUT_MS,
  });
}
