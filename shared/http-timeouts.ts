// Timeouts of our HTTP servers, set on purpose: Node's defaults cut any request not fully received within 5 minutes
// (requestTimeout), which ends imports of large snapshots. No limit on a whole request; a connection whose bytes
// stop moving for `idleMs` is closed instead, so a transfer of any length completes while its body flows.
import type { Server } from "node:http";

export interface StreamTimeouts {
  /** HTTP_IDLE_TIMEOUT_MS: no byte in either direction for this long closes the connection. */
  idleMs: number;
  /** How long a client has to send its request headers (slow-loris guard). */
  headersMs: number;
}

/**
 * How long an idle keep-alive connection stays open between requests: longer than the idle pools of common clients
 * (Node's agent and undici 4–5 s, load balancers 60 s), so the client closes an idle connection first. With Node's
 * default (5 s, the same as its agent's) a client can send its next request on a socket the server is closing at that
 * moment and get a reset instead of an answer. Never longer than the idle bound.
 */
export const KEEP_ALIVE_MS = 65_000;

export function applyStreamTimeouts(server: Server, timeouts: StreamTimeouts): void {
  server.requestTimeout = 0;
  server.keepAliveTimeout = Math.min(KEEP_ALIVE_MS, timeouts.idleMs);
  server.headersTimeout = timeouts.headersMs;
  server.timeout = timeouts.idleMs;
}

/** Server options to create it with: headers (and any request) timeouts checked often enough to matter. */
export function streamServerOptions(timeouts: StreamTimeouts): { connectionsCheckingInterval: number } {
  return { connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(timeouts.headersMs / 2))) };
}
