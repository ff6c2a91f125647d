// Malformed input on every mutating route of the real app: wrong content types, broken JSON, wrong types, huge
// numbers, unicode, arrays for objects, missing bodies. None may produce a 5xx other than 503/504.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES } from "../shared/errors.ts";
import { newId } from "../shared/ids.ts";
import { createTestApp, type TestApp } from "../test/helpers/app.ts";

const CONTENT_TYPES = [
  undefined,
  "application/json",
  "application/x-www-form-urlencoded",
  "text/plain",
  "multipart/form-data; boundary=x",
  "application/json; charset=utf-8",
  "application/xml",
  "APPLICATION/JSON",
  "application/json;;;=",
  "application/vnd.api+json",
  "*/*",
];

const HUGE = "9".repeat(400);
const BODIES: Array<string | Uint8Array | undefined> = [
  undefined,
  "",
  "   ",
  "{",
  "}",
  "[]",
  "[1,2,3]",
  "null",
  "true",
  "0",
  HUGE,
  '"a string"',
  "name=web-1&size=256MB",
  '{"name":"web-1"}trailing',
  "\uFEFF{}",
  new Uint8Array([0xff, 0xfe, 0x7b, 0x7d]),
  `${"[".repeat(5_000)}${"]".repeat(5_000)}`,
  '{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}',
  `{"name":${HUGE}}`,
  '{"name":1e309}',
  '{"name":"ünïcødé-名前-🚀"}',
  '{"name":"\\u0000\\ud800"}',
  `{"name":"${"a".repeat(100_000)}"}`,
  '{"name":["web-1"]}',
  '{"name":{"first":"web"}}',
  '{"name":null}',
  '{"kind":"Standby","name":"ok","tags":{"k":1}}',
  '{"kind":"Exploded"}',
  '{"kind":["Standby"]}',
  '{"kind":"Standby","compression":{"enabled":true,"level":1e999}}',
  '{"kind":"Standby","compression":{"enabled":"yes","algorithm":"gzip"}}',
  '{"kind":"Stopped","compression":[]}',
  '{"name":"web-1","size":"99999999999999999999999GB"}',
  '{"name":"web-1","size":-1}',
  '{"name":"web-1","vcpus":1.5}',
  '{"name":"web-1","vcpus":-9007199254740993}',
  '{"name":"web-1","overlay_size":"1e3MB"}',
  '{"name":"web-1","hypervisor":"qemu\\u0000"}',
  '{"name":"fork-1","target_state":"Exploded"}',
  '{"name":"fork-1","target_hypervisor":42}',
  '{"target_state":null,"target_hypervisor":[]}',
  '{"url":"javascript:alert(1)"}',
  '{"url":"http://[::1"}',
  '{"url":12}',
  '{"url":"http://127.0.0.1/x","event_types":"snapshot.*"}',
  '{"url":"http://127.0.0.1/x","event_types":[1,null]}',
  '{"enabled":"false"}',
  '{"description":{"nested":[{"deep":true}]}}',
];

const MUTATING = new Set(["post", "put", "patch", "delete"]);

/** Path parameter values: an unknown well-formed id, and ones that are not ids at all. */
const PATH_VALUES = () => [newId(), "..%2F..%2Fetc", "%C3%BC%F0%9F%9A%80", "x".repeat(200)];

describe("malformed requests on every mutating route", () => {
  let t: TestApp;
  let routes: Array<{ method: string; path: string }>;

  beforeAll(async () => {
    t = await createTestApp({ webhookAllowedHosts: ["127.0.0.1"] });
    const document = (await (await t.request("/openapi.json")).json()) as { paths: Record<string, object> };
    routes = Object.entries(document.paths).flatMap(([path, operations]) =>
      Object.keys(operations)
        .filter((method) => MUTATING.has(method))
        .map((method) => ({ method: method.toUpperCase(), path })),
    );
  });
  afterAll(() => t.close());

  it("answers each with an error envelope and never a 5xx other than 503/504", async () => {
    expect(routes.length).toBeGreaterThanOrEqual(12);
    const failures: string[] = [];
    const byStatus = new Map<number, number>();
    let sent = 0;
    for (const [routeIndex, route] of routes.entries()) {
      const pathValues = PATH_VALUES();
      for (const [bodyIndex, body] of BODIES.entries()) {
        const contentType = CONTENT_TYPES[(bodyIndex + routeIndex) % CONTENT_TYPES.length];
        const path = route.path.replace(/\{[^}]+\}/g, () => pathValues[bodyIndex % pathValues.length]!);
        const headers: Record<string, string> = contentType === undefined ? {} : { "content-type": contentType };
        const response = await t.request(path, { method: route.method, headers, body });
        sent++;
        byStatus.set(response.status, (byStatus.get(response.status) ?? 0) + 1);
        const problem = await checkResponse(response);
        if (problem) failures.push(`${route.method} ${path} [${contentType}] ${describeBody(body)}: ${problem}`);
      }
      for (const contentType of CONTENT_TYPES) {
        const path = route.path.replace(/\{[^}]+\}/g, newId());
        const headers: Record<string, string> = contentType === undefined ? {} : { "content-type": contentType };
        const response = await t.request(path, { method: route.method, headers, body: '{"name":"web-1"}' });
        sent++;
        byStatus.set(response.status, (byStatus.get(response.status) ?? 0) + 1);
        const problem = await checkResponse(response);
        if (problem) failures.push(`${route.method} ${path} [${contentType}] valid JSON: ${problem}`);
      }
    }
    expect(sent).toBeGreaterThan(300);
    expect(failures).toEqual([]);
    expect([...byStatus.keys()].filter((status) => status >= 500 && status !== 503)).toEqual([]);
  });
});

async function checkResponse(response: Response): Promise<string | undefined> {
  const { status } = response;
  if (status >= 500 && status !== 503 && status !== 504) return `status ${status}: ${await response.text()}`;
  if (status < 400) return undefined;
  const text = await response.text();
  try {
    const envelope = JSON.parse(text) as { code?: string; message?: string };
    if (!ERROR_CODES.includes(envelope.code as (typeof ERROR_CODES)[number]) || typeof envelope.message !== "string") {
      return `status ${status} without an error envelope: ${text.slice(0, 200)}`;
    }
  } catch {
    return `status ${status} with a body that is not JSON: ${text.slice(0, 200)}`;
  }
  return undefined;
}

function describeBody(body: string | Uint8Array | undefined): string {
  if (body === undefined) return "no body";
  const text = typeof body === "string" ? body : `bytes ${Buffer.from(body).toString("hex")}`;
  return JSON.stringify(text.slice(0, 60));
}
