// Answers sent before the request body was read (413 over the body limit) must not break a keep-alive client: the
// next request on the same connection is answered, round after round.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestApp, TEST_API_KEY, type TestApp } from "../test/helpers/app.ts";

const ROUNDS = 20;
let t: TestApp;
let server: ReturnType<typeof serve>;
let port: number;

beforeAll(async () => {
  t = await createTestApp({ bodyLimitBytes: 64 * 1024 });
  server = serve({ fetch: t.app.fetch, port: 0, hostname: "127.0.0.1" });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  port = (server.address() as AddressInfo).port;
}, 60_000);
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await t.close();
});

/** One request on `agent`; resolves with its status, or the error it failed with. */
function send(agent: http.Agent, method: string, path: string, options: { body?: Buffer; key?: string } = {}) {
  const { body, key = TEST_API_KEY } = options;
  return new Promise<{ status?: number; error?: string }>((resolve) => {
    const headers = {
      authorization: `Bearer ${key}`,
      ...(body ? { "content-type": "application/json", "content-length": body.length } : {}),
    };
    const request = http.request({ host: "127.0.0.1", port, method, path, agent, headers }, (response) => {
      response.resume();
      response.on("end", () => resolve({ status: response.statusCode }));
    });
    request.on("error", (error) => resolve({ error: error.message }));
    request.end(body);
  });
}

it(`keeps a keep-alive client working through ${ROUNDS} rounds of early answers then normal requests`, async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const failures: string[] = [];
  const tooLarge = Buffer.from(JSON.stringify({ padding: "x".repeat(2 * 1024 * 1024) }));
  const expectStatus = (what: string, outcome: { status?: number; error?: string }, status: number) => {
    if (outcome.status !== status) failures.push(`${what}: ${outcome.status ?? outcome.error}`);
  };
  try {
    for (let round = 0; round < ROUNDS; round++) {
      expectStatus(`round ${round} 2 MB body`, await send(agent, "POST", "/hosts/h/ping", { body: tooLarge }), 413);
      const wrongKey = await send(agent, "POST", "/instances", { body: tooLarge, key: "wrong" });
      expectStatus(`round ${round} 2 MB body, wrong key`, wrongKey, 401);
      for (let read = 0; read < 3; read++) {
        expectStatus(`round ${round} GET ${read}`, await send(agent, "GET", "/instances"), 200);
      }
    }
  } finally {
    agent.destroy();
  }
  console.log(`${ROUNDS} rounds of 413, 401, then three GETs on one keep-alive agent: ${failures.length} failures`);
  expect(failures).toEqual([]);
}, 120_000);
