import { Writable } from "node:stream";
import { Hono } from "hono";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ApiMetrics } from "../metrics/metrics.ts";
import { requestIds, requestLog } from "./request-log.ts";

function appWithLog() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()));
      done();
    },
  });
  const app = new Hono();
  app.use("*", requestIds());
  app.use("*", requestLog(pino(sink), new ApiMetrics()));
  app.get("/things/:id", (c) => c.json({ id: c.req.param("id") }));
  return { app, lines };
}

describe("request log and request ids", () => {
  it("writes one line per request with the route pattern and echoes a sane incoming id", async () => {
    const { app, lines } = appWithLog();
    const response = await app.request("/things/42", { headers: { "x-request-id": "client-abc_123" } });
    expect(response.headers.get("x-request-id")).toBe("client-abc_123");
    expect(lines).toEqual([
      expect.objectContaining({
        msg: "request",
        req_id: "client-abc_123",
        method: "GET",
        path: "/things/42",
        route: "/things/:id",
        status: 200,
        ms: expect.any(Number),
      }),
    ]);
  });

  it("replaces an id that is too long or has odd characters, and makes one when there is none", async () => {
    const { app, lines } = appWithLog();
    const odd = await app.request("/things/1", { headers: { "x-request-id": "bad id\u0007<script>" } });
    const long = await app.request("/things/1", { headers: { "x-request-id": "a".repeat(200) } });
    const none = await app.request("/missing");
    const ids = [odd, long, none].map((response) => response.headers.get("x-request-id"));
    for (const id of ids) expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(ids).size).toBe(3);
    expect(lines.map((line) => [line.req_id, line.route, line.status])).toEqual([
      [ids[0], "/things/:id", 200],
      [ids[1], "/things/:id", 200],
      [ids[2], "unmatched", 404],
    ]);
  });
});
