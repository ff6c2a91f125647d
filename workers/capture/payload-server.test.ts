import { request as httpRequest } from "node:http";
import { describe, expect, it } from "vitest";
import { newId } from "../../shared/ids.ts";
import { createLogger } from "../../shared/logger.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import { SnapshotStore } from "../../shared/snapshots/store.ts";
import { tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { parseRange, startPayloadServer } from "./payload-server.ts";

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

describe("payload server timeouts", () => {
  const IDLE_MS = 300;
  const TOKEN = "payload-test-token";
  const id = newId();

  /** PUTs `chunks` of 1 KiB to /imports/<id>, `gapMs` apart; resolves with the status, or the error that cut it. */
  function slowUpload(port: number, chunks: number, gapMs: number): Promise<number | string> {
    return new Promise((resolve) => {
      const request = httpRequest(
        {
          port,
          host: "127.0.0.1",
          method: "PUT",
          path: `/imports/${id}`,
          headers: { authorization: `Bearer ${TOKEN}` },
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
      token: TOKEN,
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
