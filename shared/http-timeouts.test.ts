// The servers' timeouts as set on purpose (shared/http-timeouts.ts), on a real node:http server with the bounds made
// small: a transfer of any length completes while its bytes flow, and only a stalled one is cut. With Node's
// defaults a request not received in full within requestTimeout (5 minutes) is cut however well it flows: that is
// the bound the first case outlasts here many times over, scaled down.
import { Agent, createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { applyStreamTimeouts, streamServerOptions } from "./http-timeouts.ts";

const IDLE_MS = 1_000;
let server: Server;
let port: number;

beforeAll(async () => {
  const timeouts = { idleMs: IDLE_MS, headersMs: IDLE_MS };
  server = createServer(streamServerOptions(timeouts), (incoming, response) => {
    let bytes = 0;
    incoming.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    incoming.on("end", () => response.end(String(bytes)));
  });
  applyStreamTimeouts(server, timeouts);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** Sends `chunks` chunks of 1 KiB, `gapMs` apart; resolves with what the server answered, or the error. */
function upload(chunks: number, gapMs: number): Promise<{ answer?: string; error?: string }> {
  return new Promise((resolve) => {
    const client = request({ host: "127.0.0.1", port, method: "PUT", path: "/" }, (response) => {
      let answer = "";
      response.on("data", (chunk: Buffer) => {
        answer += chunk.toString();
      });
      response.on("end", () => resolve({ answer }));
    });
    client.on("error", (error) => resolve({ error: error.message }));
    let sent = 0;
    const next = () => {
      if (sent === chunks) return void client.end();
      sent++;
      client.write(Buffer.alloc(1024));
      setTimeout(next, gapMs); // the pace of a slow client: the gap is what the case is about
    };
    next();
  });
}

it("sets no limit on a whole request, only on silence", () => {
  expect(server.requestTimeout).toBe(0);
  expect(server.timeout).toBe(IDLE_MS);
});

it("keeps an idle connection open longer than clients' pools do, and tells them (Keep-Alive: timeout)", async () => {
  const defaults = createServer((_incoming, response) => response.end());
  applyStreamTimeouts(defaults, { idleMs: 10 * 60_000, headersMs: 60_000 });
  await new Promise<void>((resolve) => defaults.listen(0, "127.0.0.1", () => resolve()));
  const hint = (target: number) =>
    new Promise<string | undefined>((resolve, reject) => {
      const client = request({ host: "127.0.0.1", port: target, path: "/", agent: new Agent({ keepAlive: true }) });
      client.on("response", (response) => {
        response.resume();
        resolve(String(response.headers["keep-alive"]));
      });
      client.on("error", reject);
      client.end();
    });
  try {
    expect(await hint((defaults.address() as AddressInfo).port)).toBe("timeout=65");
    expect(await hint(port)).toBe("timeout=1"); // never beyond the idle bound (1 s here)
  } finally {
    defaults.closeAllConnections();
    await new Promise<void>((resolve) => defaults.close(() => resolve()));
  }
});

it("completes an upload that lasts 8 idle timeouts while its bytes keep flowing", async () => {
  const started = Date.now();
  expect(await upload(40, IDLE_MS / 5)).toEqual({ answer: String(40 * 1024) });
  expect(Date.now() - started).toBeGreaterThan(8 * IDLE_MS); // it did last that long: the case is not vacuous
}, 30_000);

it("cuts an upload whose bytes stop for longer than the idle timeout", async () => {
  const outcome = await upload(2, IDLE_MS * 3);
  expect(outcome.answer).toBeUndefined();
  expect(outcome.error).toMatch(/socket hang up|ECONNRESET|EPIPE/);
}, 30_000);
