// Read-only API keys (API_READ_KEYS) on the whole app: they read what a dashboard shows, and nothing else gets past
// them, not a write, not an export of a guest's memory, not a board session.
import { afterAll, beforeAll, expect, it } from "vitest";
import { parseConfig } from "../../shared/config.ts";
import { createTestApp, TEST_API_KEY, type TestApp } from "../../test/helpers/app.ts";
import { jsonOf } from "../../test/helpers/fixtures.ts";

const READ_KEY = "read-only-key-0123456789";
let t: TestApp;

beforeAll(async () => {
  t = await createTestApp({ readOnlyApiKeys: [READ_KEY] });
});
afterAll(() => t.close());

it("reads lists, records, hosts, events' dead letters and metrics with a read-only key", async () => {
  for (const path of ["/instances", "/snapshots", "/hosts", "/webhooks", "/events/dead-letters", "/metrics"]) {
    const response = await t.request(path, { auth: READ_KEY });
    expect({ path, status: response.status }).toEqual({ path, status: 200 });
  }
  const missing = await t.request("/snapshots/nosuchsnapshot00000000000", { auth: READ_KEY });
  expect(missing.status).toBe(404); // past auth: the read model answered
});

it("refuses every write, an export and a board session with a 403 forbidden that names the key's kind", async () => {
  const refused: Array<[string, string, unknown?]> = [
    ["POST", "/instances", { name: "ro" }],
    ["DELETE", "/instances/x"],
    ["POST", "/snapshots/x/fork", { name: "ro" }],
    ["PUT", "/snapshots/x/schedule", { interval: "1h" }],
    ["POST", "/webhooks", { url: "https://example.com/hook" }],
    ["POST", "/snapshots/import"],
    ["GET", "/snapshots/x/export"],
    ["HEAD", "/snapshots/x/export"],
    ["POST", "/ui/session"],
  ];
  for (const [method, path, json] of refused) {
    const response = await t.request(path, { method, auth: READ_KEY, json });
    const body = method === "HEAD" ? { code: "forbidden", message: "read-only" } : await jsonOf(response);
    expect({ method, path, status: response.status, code: body.code }).toEqual({
      method,
      path,
      status: 403,
      code: "forbidden",
    });
    expect(body.message).toMatch(/read-only/);
  }
});

it("lets the full key do the same writes (they fail on their own merits, not on the key)", async () => {
  const created = await t.request("/webhooks", { method: "POST", json: { url: "https://example.com/hook" } });
  expect(created.status).not.toBe(403);
  expect((await t.request("/snapshots/x/export", { auth: TEST_API_KEY })).status).toBe(404);
});

it("still refuses a key that is in neither list, and a key put in both lists at boot", async () => {
  expect((await t.request("/instances", { auth: "neither-key-0123456789" })).status).toBe(401);
  expect(() => parseConfig({ API_KEYS: READ_KEY, API_READ_KEYS: READ_KEY })).toThrow(/both read-only/);
});
