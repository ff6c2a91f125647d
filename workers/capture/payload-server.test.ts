import { readFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostPayloadKey, signPayloadRequest } from "../../shared/fleet-secret.ts";
import { newId } from "../../shared/ids.ts";
import { createLogger } from "../../shared/logger.ts";
import { PayloadClient, type PayloadTarget, PayloadUrlRefusedError } from "../../shared/payload-client.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import { SnapshotStore } from "../../shared/snapshots/store.ts";
import { jsonOf, tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { makeTestCertificates } from "../../test/helpers/tls.ts";
import { type PayloadServer, parseRange, startPayloadServer } from "./payload-server.ts";

const SECRET = "payload-server-test-secret";

describe("parseRange", () => {
  it("reads first-last, first- and -suffix ranges, clamped to the file", () => {
    expect(parseRange(undefined, 100)).toBeUndefined();
    expect(parseRange("bytes=0-9", 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange("bytes=90-", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=90-500", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=-10", 100)).toEqual({ start: 90, end: 99 });
  });

  it("calls ranges past the end, reversed or malformed unsatisfiable", () => {
    for (const header of ["bytes=100-", "bytes=5-2", "bytes=-", "items=0-1", "bytes=0-1,4-5"]) {
      expect(parseRange(header, 100), header).toBe("unsatisfiable");
    }
  });
});

describe("the payload server's door (HTTPS, request-bound tokens)", () => {
  const dir = tempDir("payload-server");
  const certificates = makeTestCertificates(dir.dir);
  const redis = connectRedis(testRedisUrl(), "producer", 2_000);
  const imports: string[] = [];
  const ca = readFileSync(certificates.ca, "utf8");
  const client = new PayloadClient({ secret: SECRET, ca });
  let server: PayloadServer;
  let target: PayloadTarget;

  beforeAll(async () => {
    server = await startPayloadServer({
      store: new SnapshotStore(dir.dir, redis, uniquePrefix("payload")),
      key: hostPayloadKey(SECRET, "host-a"),
      tls: { cert: readFileSync(certificates.cert, "utf8"), key: readFileSync(certificates.key, "utf8") },
      port: 0,
      host: "127.0.0.1",
      log: createLogger("payload-server-test", "silent"),
      importArchive: async (id) => {
        imports.push(id);
        return {};
      },
    });
    target = { hostId: "host-a", url: `https://127.0.0.1:${server.port}` };
  });

  afterAll(async () => {
    await server?.close();
    await closeRedis(redis);
    dir.remove();
  });

  /** A request with whatever token an attacker holds, over a connection that trusts our CA. */
  const send = (method: string, requestPath: string, token?: string) =>
    new Promise<{ status: number; body: { code: string; message: string } }>((resolve, reject) => {
      const request = httpsRequest(
        `${target.url}${requestPath}`,
        { method, ca, headers: token ? { authorization: `Bearer ${token}` } : {} },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () =>
            resolve({ status: response.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }),
          );
        },
      );
      request.once("error", reject);
      request.end();
    });
  const tokenFor = (method: string, requestPath: string, nowMs?: number) =>
    signPayloadRequest(hostPayloadKey(SECRET, "host-a"), { method, path: requestPath }, nowMs);
  const RECORD = `/snapshots/${newId()}/record`;

  it("lets a signed request through over HTTPS verified against the CA", async () => {
    const response = await client.request(target, RECORD);
    expect(response.status).toBe(404); // past the door: the snapshot is not there
    expect((await jsonOf(response)).code).toBe("not_found");
  });

  it.each([
    ["no token", () => undefined, "missing"],
    ["a token for another path", () => tokenFor("GET", `/snapshots/${newId()}/record`), "does not match"],
    ["an expired token", () => tokenFor("GET", RECORD, Date.now() - 5 * 60_000), "expired"],
    [
      "another host's token",
      () => signPayloadRequest(hostPayloadKey(SECRET, "host-b"), { method: "GET", path: RECORD }),
      "does not match",
    ],
  ])("refuses %s with 401 unauthorized", async (_what, token, reason) => {
    const response = await send("GET", RECORD, token());
    expect(response.status).toBe(401);
    expect(response.body).toMatchObject({ code: "unauthorized", message: expect.stringContaining(reason) });
  });

  it("refuses a GET token used for a PUT: nothing is imported", async () => {
    const importPath = `/imports/${newId()}`;
    const response = await send("PUT", importPath, tokenFor("GET", importPath));
    expect(response.status).toBe(401);
    expect(response.body.code).toBe("unauthorized");
    expect(imports).toEqual([]);
  });

  it("is refused by a client that trusts another CA, and a client with a CA never speaks plain HTTP", async () => {
    const stranger = new PayloadClient({ secret: SECRET, ca: readFileSync(certificates.otherCa, "utf8") });
    await expect(stranger.request(target, RECORD)).rejects.toMatchObject({
      code: expect.stringMatching(/CERT|SIGNATURE|ISSUER/),
    });
    const plain = { ...target, url: `http://127.0.0.1:${server.port}` };
    await expect(client.request(plain, RECORD)).rejects.toBeInstanceOf(PayloadUrlRefusedError);
  });
});
