import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostPayloadKey, signPayloadRequest } from "../../shared/fleet-secret.ts";
import { nextStamp, TOMBSTONE, TombstoneStore } from "../../shared/host-records.ts";
import { newId } from "../../shared/ids.ts";
import { createLogger } from "../../shared/logger.ts";
import { PayloadClient, type PayloadTarget, PayloadUrlRefusedError } from "../../shared/payload-client.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import { prepareExport } from "../../shared/snapshots/export-files.ts";
import {
  DEVICE_STATE_FILE,
  DISK_FILE,
  MEMORY_FILE,
  type SnapshotRecord,
  SnapshotStore,
} from "../../shared/snapshots/store.ts";
import { jsonOf, tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
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
      tombstones: new TombstoneStore(dir.dir),
      key: hostPayloadKey(SECRET, "host-a"),
      tls: { cert: readFileSync(certificates.cert, "utf8"), key: readFileSync(certificates.key, "utf8") },
      port: 0,
      host: "127.0.0.1",
      timeouts: { idleMs: 60_000, headersMs: 10_000 },
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

describe("the tombstone route", () => {
  const dir = tempDir("payload-tombstones");
  const redis = connectRedis(testRedisUrl(), "producer", 2_000);
  const tombstones = new TombstoneStore(dir.dir);
  const client = new PayloadClient({ secret: SECRET });
  let server: PayloadServer;
  let target: PayloadTarget;

  beforeAll(async () => {
    server = await startPayloadServer({
      store: new SnapshotStore(dir.dir, redis, uniquePrefix("payload")),
      tombstones,
      key: hostPayloadKey(SECRET, "host-d"),
      port: 0,
      host: "127.0.0.1",
      timeouts: { idleMs: 60_000, headersMs: 10_000 },
      log: createLogger("payload-server-test", "silent"),
      importArchive: async () => ({}),
    });
    target = { hostId: "host-d", url: `http://127.0.0.1:${server.port}` };
  });

  afterAll(async () => {
    await server?.close();
    await closeRedis(redis);
    dir.remove();
  });

  it("answers 200 with the tombstone of a snapshot this host deleted, 404 for one it did not", async () => {
    const snapshot = sampleSnapshot(sampleInstance({ host_id: "host-d" }));
    const tombstone = {
      kind: "snapshot" as const,
      ...nextStamp(undefined, "snapshot.deleted", null),
      deleted_at: new Date().toISOString(),
      snapshot,
    };
    await tombstones.write(tombstone);
    // A deleted instance's tombstone is no snapshot's, whatever its id.
    const instance = sampleInstance({ host_id: "host-d" });
    await tombstones.write({ ...tombstone, kind: "instance", instance });

    const deleted = await client.request(target, `/snapshots/${snapshot.id}/tombstone`);
    expect(deleted.status).toBe(200);
    expect(TOMBSTONE.parse(await jsonOf(deleted))).toEqual(tombstone);

    for (const id of [newId(), instance.id]) {
      const unknown = await client.request(target, `/snapshots/${id}/tombstone`);
      expect(unknown.status).toBe(404);
      expect((await jsonOf(unknown)).code).toBe("not_found");
    }
  });
});

describe("payload server timeouts", () => {
  const IDLE_MS = 300;
  const id = newId();
  const key = hostPayloadKey(SECRET, "host-t");

  /** PUTs `chunks` of 1 KiB to /imports/<id>, `gapMs` apart; resolves with the status, or the error that cut it. */
  function slowUpload(port: number, chunks: number, gapMs: number): Promise<number | string> {
    return new Promise((resolve) => {
      const request = httpRequest(
        {
          port,
          host: "127.0.0.1",
          method: "PUT",
          path: `/imports/${id}`,
          headers: { authorization: `Bearer ${signPayloadRequest(key, { method: "PUT", path: `/imports/${id}` })}` },
        },
        (response) => {
          response.resume();
          response.on("end", () => resolve(response.statusCode ?? 0));
        },
      );
      request.on("error", (error) => resolve((error as NodeJS.ErrnoException).code ?? error.message));
      let sent = 0;
      const sendNext = () => {
        if (sent++ === chunks) return void request.end();
        request.write(Buffer.alloc(1024, 1));
        setTimeout(sendNext, gapMs);
      };
      sendNext();
    });
  }

  async function server() {
    const data = tempDir("payload");
    const redis = connectRedis(testRedisUrl(), "worker", 1_000);
    const received: number[] = [];
    const started = await startPayloadServer({
      store: new SnapshotStore(data.dir, redis, uniquePrefix("payload")),
      tombstones: new TombstoneStore(data.dir),
      key,
      port: 0,
      host: "127.0.0.1",
      log: createLogger("payload-test", "silent"),
      timeouts: { idleMs: IDLE_MS, headersMs: 1_000 },
      importArchive: async (_snapshotId, body) => {
        let bytes = 0;
        for await (const chunk of body) bytes += (chunk as Buffer).length;
        received.push(bytes);
        return { bytes };
      },
    });
    return {
      port: started.port,
      received,
      async close() {
        await started.close();
        await closeRedis(redis);
        data.remove();
      },
    };
  }

  it("completes an upload far longer than the idle timeout while its body keeps flowing", async () => {
    const s = await server();
    // 30 chunks 60 ms apart: about 1.8 s, six times the idle timeout, never idle for more than 60 ms.
    expect(await slowUpload(s.port, 30, 60)).toBe(201);
    expect(s.received).toEqual([30 * 1024]);
    await s.close();
  });

  it("closes an upload whose body stops flowing for longer than the idle timeout", async () => {
    const s = await server();
    expect(await slowUpload(s.port, 3, IDLE_MS * 4)).toMatch(/ECONNRESET|socket hang up/);
    await s.close();
  });
});

describe("an export that overlaps a compression", () => {
  const dir = tempDir("payload-export");
  const redis = connectRedis(testRedisUrl(), "producer", 2_000);
  const store = new SnapshotStore(dir.dir, redis, uniquePrefix("payload"));
  const client = new PayloadClient({ secret: SECRET });
  let server: PayloadServer;
  let target: PayloadTarget;

  beforeAll(async () => {
    server = await startPayloadServer({
      store,
      tombstones: new TombstoneStore(dir.dir),
      key: hostPayloadKey(SECRET, "host-e"),
      port: 0,
      host: "127.0.0.1",
      timeouts: { idleMs: 60_000, headersMs: 10_000 },
      log: createLogger("payload-server-test", "silent"),
      importArchive: async () => ({}),
    });
    target = { hostId: "host-e", url: `http://127.0.0.1:${server.port}` };
  });

  afterAll(async () => {
    await server?.close();
    await closeRedis(redis);
    dir.remove();
  });

  it("serves every file it listed after the compression moved the record on to the image", async () => {
    const source = sampleInstance({ host_id: "host-e", state: "Standby" });
    const raw: SnapshotRecord = {
      snapshot: sampleSnapshot(source, { compression_state: "none" }),
      source,
      memory_layout: "file",
      memory_payload: MEMORY_FILE,
      ...nextStamp(undefined, "snapshot.created", null),
    };
    const id = raw.snapshot.id;
    mkdirSync(store.dir(id), { recursive: true });
    for (const name of [DISK_FILE, MEMORY_FILE, DEVICE_STATE_FILE]) writeFileSync(store.file(id, name), `${name}\n`);
    await store.write(raw);
    const listing = await prepareExport(store, id);
    expect(listing.files.map((file) => file.name)).toContain("memory.raw.sfc");

    // The compression ends now: the record says compressed (an image), and the raw memory is gone.
    writeFileSync(store.file(id, "memory.raw.sqfs"), "image");
    writeFileSync(store.file(id, "memory.raw.sqfs.sums"), "sums");
    rmSync(store.file(id, MEMORY_FILE));
    await store.write({
      ...raw,
      snapshot: { ...raw.snapshot, compression_state: "compressed", compressed_size_bytes: 5 },
      ...nextStamp(raw, "snapshot.compression.completed", null),
    });

    for (const file of listing.files) {
      const response = await client.request(target, `/snapshots/${id}/files/${file.name}`);
      expect(response.status, file.name).toBe(200);
      expect((await response.arrayBuffer()).byteLength, file.name).toBe(file.size);
    }
  });
});
