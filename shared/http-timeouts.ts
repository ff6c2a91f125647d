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

export function applyStreamTimeouts(server: Server, timeouts: StreamTimeouts): void {
  server.requestTimeout = 0;
  server.headersTimeout = timeouts.headersMs;
  server.timeout = timeouts.idleMs;
}

/** Server options to create it with: headers (and any request) timeouts checked often enough to matter. */
export function streamServerOptions(timeouts: StreamTimeouts): { connectionsCheckingInterval: number } {
  return { connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(timeouts.headersMs / 2))) };
}
