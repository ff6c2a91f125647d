// This host's payload server: snapshot files over HTTP(S) for exports (and other hosts), with Range requests,
// imports streamed in as archives, and the tombstones of deleted snapshots (so hosts holding a copy can drop it). Every request carries a token signed for this host, its method and its path
// (shared/fleet-secret.ts); with PAYLOAD_TLS_CERT/KEY it speaks HTTPS only.
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { bearerToken } from "../../shared/bearer.ts";
import { ApiError, notFound } from "../../shared/errors.ts";
import { verifyPayloadRequest } from "../../shared/fleet-secret.ts";
import type { TombstoneStore } from "../../shared/host-records.ts";
import { applyStreamTimeouts, type StreamTimeouts, streamServerOptions } from "../../shared/http-timeouts.ts";
import { ID_PATTERN } from "../../shared/ids.ts";
import type { Logger } from "../../shared/logger.ts";
import { ARCHIVE_PAYLOAD_ENTRIES } from "../../shared/snapshots/archive.ts";
import { entryPath, prepareExport } from "../../shared/snapshots/export-files.ts";
import type { SnapshotStore } from "../../shared/snapshots/store.ts";

export interface PayloadServerOptions {
  store: SnapshotStore;
  /** This host's tombstones: a snapshot's says this host deleted it. */
  tombstones: TombstoneStore;
  /** This host's signing key (hostPayloadKey): requests must carry a token made with it. */
  key: Buffer;
  /** PEM certificate chain and key: HTTPS instead of HTTP. */
  tls?: { cert: string; key: string };
  port: number;
  host: string;
  log: Logger;
  /** Imports an archive streamed in as a new snapshot with id `snapshotId` (workers/host/import.ts). */
  importArchive(snapshotId: string, body: IncomingMessage, gone: AbortSignal): Promise<unknown>;
  /** Puts a payload evicted to the object store back on this disk before it is listed (Replicas.ensureLocal). */
  ensureLocal?(snapshotId: string): Promise<unknown>;
  /** HTTP_IDLE_TIMEOUT_MS and HTTP_HEADERS_TIMEOUT_MS: transfers of any length while their bytes flow. */
  timeouts: StreamTimeouts;
}

export interface PayloadServer {
  port: number;
  protocol: "http" | "https";
  close(): Promise<void>;
}

const ROUTES: Array<{ method: string; pattern: RegExp; handler: keyof typeof HANDLERS }> = [
  { method: "GET", pattern: /^\/snapshots\/([^/]+)\/record$/, handler: "record" },
  { method: "GET", pattern: /^\/snapshots\/([^/]+)\/tombstone$/, handler: "tombstone" },
  { method: "GET", pattern: /^\/snapshots\/([^/]+)\/export$/, handler: "listing" },
  { method: "GET", pattern: /^\/snapshots\/([^/]+)\/files\/([^/]+)$/, handler: "file" },
  { method: "PUT", pattern: /^\/imports\/([^/]+)$/, handler: "import" },
];

type Handler = (
  options: PayloadServerOptions,
  request: IncomingMessage,
  response: ServerResponse,
  params: string[],
) => Promise<void>;

const HANDLERS = {
  record: (async (options, _request, response, [id]) => {
    const record = await options.store.read(requireId(id!));
    if (!record) throw notFound("snapshot", id!);
    sendJson(response, 200, record);
  }) satisfies Handler,
  /** 200 only when this host deleted the snapshot: a 404 says nothing (never held, or its tombstone expired). */
  tombstone: (async (options, _request, response, [id]) => {
    const tombstone = await options.tombstones.read("snapshot", requireId(id!));
    if (!tombstone) throw new ApiError("not_found", `this host holds no tombstone of snapshot ${id}`);
    sendJson(response, 200, tombstone);
  }) satisfies Handler,
  listing: (async (options, _request, response, [id]) => {
    await options.ensureLocal?.(requireId(id!));
    sendJson(response, 200, await prepareExport(options.store, requireId(id!)));
  }) satisfies Handler,
  file: (async (options, request, response, [id, entry]) => {
    const snapshotId = requireId(id!);
    if (!ARCHIVE_PAYLOAD_ENTRIES.includes(entry!)) throw notFound("payload file", entry!);
    const record = await options.store.read(snapshotId);
    if (!record) throw notFound("snapshot", snapshotId);
    // Served by name while it exists, not by the record's layout now: a compression that ends between the listing
    // and this request moves the record on, and the listed file is still there.
    const file = entryPath(options.store, snapshotId, entry!);
    const size = await stat(file).then(
      (stats) => stats.size,
      () => {
        throw new ApiError("not_found", `${entry} of snapshot ${snapshotId} is not prepared: list the export first`);
      },
    );
    const range = parseRange(request.headers.range, size);
    if (range === "unsatisfiable") {
      response.writeHead(416, { "content-range": `bytes */${size}` }).end();
      return;
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    response.writeHead(range ? 206 : 200, {
      "content-type": "application/octet-stream",
      "content-length": String(end - start + 1),
      "accept-ranges": "bytes",
      ...(range ? { "content-range": `bytes ${start}-${end}/${size}` } : {}),
    });
    if (end < start) return void response.end();
    createReadStream(file, { start, end }).pipe(response);
  }) satisfies Handler,
  import: (async (options, request, response, [id]) => {
    // The caller gone (it gave up, or its socket idled out) ends the import, wherever it is: its slot and staging
    // must not wait for a body or an answer nobody will send or read.
    const gone = new AbortController();
    response.once("close", () => {
      if (!response.writableFinished) gone.abort(new Error("the caller closed the connection"));
    });
    sendJson(response, 201, await options.importArchive(requireId(id!), request, gone.signal));
  }) satisfies Handler,
};

export function startPayloadServer(options: PayloadServerOptions): Promise<PayloadServer> {
  const listener = (request: IncomingMessage, response: ServerResponse) => {
    handle(options, request, response).catch((error: unknown) => sendError(options.log, response, error));
  };
  const serverOptions = streamServerOptions(options.timeouts);
  const server: Server = options.tls
    ? createTlsServer({ ...serverOptions, ...options.tls }, listener)
    : createServer(serverOptions, listener);
  applyStreamTimeouts(server, options.timeouts);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        protocol: options.tls ? "https" : "http",
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

async function handle(options: PayloadServerOptions, request: IncomingMessage, response: ServerResponse) {
  const presented = bearerToken(request.headers.authorization);
  const check = verifyPayloadRequest(options.key, { method: request.method ?? "", path: request.url ?? "" }, presented);
  if (!check.ok) throw new ApiError("unauthorized", check.reason);
  const url = new URL(request.url ?? "/", "http://payload-server");
  for (const route of ROUTES) {
    const match = route.pattern.exec(url.pathname);
    if (match && route.method === request.method) {
      return HANDLERS[route.handler](options, request, response, match.slice(1).map(decodeURIComponent));
    }
  }
  throw new ApiError("not_found", `no route for ${request.method} ${url.pathname}`);
}

function requireId(id: string): string {
  if (!ID_PATTERN.test(id)) throw new ApiError("invalid_request", `${id} is not a snapshot id`);
  return id;
}

/** One `bytes=` range (first-last, first-, or -suffix); undefined for none. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | "unsatisfiable" | undefined {
  if (!header) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === "" && match[2] === "")) return "unsatisfiable";
  let start: number;
  let end: number;
  if (match[1] === "") {
    start = Math.max(0, size - Number(match[2]));
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  }
  return start >= size || end < start ? "unsatisfiable" : { start, end };
}

function sendJson(response: ServerResponse, status: number, body: unknown) {
  response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

function sendError(log: Logger, response: ServerResponse, error: unknown) {
  const apiError =
    error instanceof ApiError ? error : new ApiError("internal_error", "internal error", { cause: error });
  if (apiError.code === "internal_error") log.error({ err: error }, "payload server request failed");
  if (response.headersSent) return void response.destroy();
  sendJson(response, apiError.status, apiError.toEnvelope());
}
