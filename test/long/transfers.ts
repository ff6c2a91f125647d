// npm run test:long-transfers: an export and an import that each last longer than Node's 5-minute request cut
// (requestTimeout, checked every 30 s: a request is cut between 300 and 330 s) complete, at real length, against the
// whole service started as test/helpers/service.ts does with its default timeouts (shared/http-timeouts.ts). Not
// part of `npm test`; it runs about 12 minutes. A dense 128MB guest's Standby snapshot is exported once at full
// speed (its size sets the pace), then exported again read through a throttle, then that archive is uploaded through
// a throttle to POST /snapshots/import, and the imported snapshot is forked to Running. One after the other: the
// import sends the bytes the slow export received.
import { createHash } from "node:crypto";
import { createReadStream, mkdtempSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { extract } from "tar-stream";
import { ARCHIVE_MANIFEST, ARCHIVE_MANIFEST_ENTRY } from "../../shared/snapshots/archive.ts";
import { waitForTick } from "../helpers/console.ts";
import { jsonOf, waitFor } from "../helpers/fixtures.ts";
import { killProcessesUsing, type RunningService, startService } from "../helpers/service.ts";

/** How long each throttled transfer lasts. */
const TARGET_MS = 345_000;
/** Each must outlast Node's requestTimeout (300 s) plus its checking interval (30 s). */
const MIN_MS = 330_000;
/**
 * More than the socket buffers between the API and this reader hold (about 4 MB on loopback, measured): the export
 * reads all but this many bytes at the throttled pace, so the API is still sending at the end of that pace.
 */
const BUFFERED_MAX = 8 * 1024 ** 2;
/** Upload chunk size. */
const CHUNK = 64 * 1024;
const REPORT_EVERY_MS = 60_000;

const started = Date.now();
const say = (line: string) =>
  process.stdout.write(`[long-transfers +${Math.round((Date.now() - started) / 1000)}s] ${line}\n`);
const seconds = (ms: number) => (ms / 1000).toFixed(1);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// The service's own defaults are what is checked.
for (const name of ["HTTP_IDLE_TIMEOUT_MS", "HTTP_HEADERS_TIMEOUT_MS"]) {
  if (process.env[name]) say(`${name} is set in this environment: ignored, the service runs on its default`);
  delete process.env[name];
}

const work = mkdtempSync(path.join(tmpdir(), "snapfleet-long-transfers-"));
const service: RunningService = await startService({}, { readyTimeoutMs: 120_000 }).catch((error: Error) => {
  rmSync(work, { recursive: true, force: true });
  throw error;
});
say(`service up on ${service.baseUrl}, data in ${service.dataDir}`);
// Whatever ends this process leaves nothing it started running; a clean end has stopped it all already.
process.once("exit", () => {
  if (service.supervisor.exitCode === null) {
    for (const pid of service.childPids()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
    service.supervisor.kill("SIGKILL");
  }
  killProcessesUsing(service.dataDir);
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, async () => {
    say(`${signal}: stopping the service`);
    await cleanUp();
    process.exit(130);
  });
}

async function cleanUp(): Promise<void> {
  await service.stop("SIGTERM");
  service.remove(); // its VMs, mounts and data dir
  rmSync(work, { recursive: true, force: true });
}

const authorization = `Bearer ${service.apiKey()}`;

async function expectJson(response: Response, status: number, what: string) {
  const text = await response.text();
  if (response.status !== status) throw new Error(`${what}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/**
 * GETs the export into `file`; with `pace`, its first `pace.bytes` bytes are read no faster than spread over
 * `pace.ms` and the rest as it comes. The bytes and the time.
 */
async function exportTo(snapshotId: string, file: string, pace?: { bytes: number; ms: number }) {
  const begun = Date.now();
  const response = await fetch(`${service.baseUrl}/snapshots/${snapshotId}/export`, { headers: { authorization } });
  if (response.status !== 200) throw new Error(`export: ${response.status} ${await response.text()}`);
  const declared = response.headers.get("content-length");
  const out = await open(file, "w");
  let bytes = 0;
  let reported = begun;
  try {
    const reader = response.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await out.write(value);
      bytes += value.length;
      if (pace) {
        // The next read waits until the bytes so far are due: the server sends only as fast as its buffers drain.
        const due = begun + (Math.min(bytes, pace.bytes) / pace.bytes) * pace.ms;
        if (due > Date.now()) await sleep(due - Date.now());
        if (Date.now() - reported >= REPORT_EVERY_MS) {
          reported = Date.now();
          say(`export: ${bytes} bytes after ${seconds(reported - begun)} s`);
        }
      }
    }
  } catch (error) {
    throw new Error(`export: cut after ${bytes} bytes, ${seconds(Date.now() - begun)} s: ${causeOf(error)}`);
  } finally {
    await out.close();
  }
  if (declared !== null && Number(declared) !== bytes) throw new Error(`export: ${bytes} bytes of ${declared}`);
  return { bytes, ms: Date.now() - begun };
}

/** Every entry's size and sha256 against the archive's manifest (the last entry). */
async function checkArchive(file: string): Promise<number> {
  const seen = new Map<string, { size: number; sha256: string }>();
  let manifest: unknown;
  const reader = extract();
  createReadStream(file).pipe(reader);
  for await (const entry of reader) {
    const hash = createHash("sha256");
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      hash.update(chunk);
      size += chunk.length;
      if (entry.header.name === ARCHIVE_MANIFEST_ENTRY) chunks.push(chunk);
    }
    if (entry.header.name === ARCHIVE_MANIFEST_ENTRY) manifest = JSON.parse(Buffer.concat(chunks).toString());
    else seen.set(entry.header.name, { size, sha256: hash.digest("hex") });
  }
  const { entries } = ARCHIVE_MANIFEST.parse(manifest);
  if (entries.length !== seen.size)
    throw new Error(`archive: ${seen.size} entries, the manifest lists ${entries.length}`);
  for (const { name, size, sha256 } of entries) {
    const got = seen.get(name);
    if (got?.size !== size || got.sha256 !== sha256) throw new Error(`archive: ${name} differs from its manifest`);
  }
  return entries.length;
}

/** POSTs `file` to the import route as a body sent no faster than `bytesPerSecond`; the answer and the time. */
async function importFrom(file: string, bytesPerSecond: number) {
  const size = statSync(file).size;
  const input = await open(file, "r");
  let sent = 0;
  let reported = 0;
  const begun = Date.now();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { bytesRead, buffer } = await input.read(Buffer.alloc(CHUNK), 0, CHUNK, sent);
      if (bytesRead === 0) return controller.close();
      // Each chunk goes when the bytes up to its end are due at this rate.
      const due = begun + ((sent + bytesRead) / bytesPerSecond) * 1000;
      if (due > Date.now()) await sleep(due - Date.now());
      sent += bytesRead;
      controller.enqueue(buffer.subarray(0, bytesRead));
      if (Date.now() - begun - reported >= REPORT_EVERY_MS) {
        reported = Date.now() - begun;
        say(`import: ${sent} bytes sent after ${seconds(reported)} s`);
      }
    },
  });
  try {
    const response = await fetch(`${service.baseUrl}/snapshots/import`, {
      method: "POST",
      body,
      headers: { authorization, "content-type": "application/x-tar" },
      duplex: "half",
    } as RequestInit);
    const text = await response.text();
    return { size, sent, status: response.status, text, ms: Date.now() - begun };
  } catch (error) {
    throw new Error(`import: cut after ${sent} of ${size} bytes, ${seconds(Date.now() - begun)} s: ${causeOf(error)}`);
  } finally {
    await input.close();
  }
}

/** fetch's "fetch failed" with what failed under it. */
const causeOf = (error: unknown): string => {
  const { message, cause } = error as Error;
  return cause ? `${message} (${causeOf(cause)})` : message;
};

const CHECKS = ["export", "import", "fork of the import"] as const;
const passed: string[] = [];
const failures: string[] = [];
const check = async (name: (typeof CHECKS)[number], body: () => Promise<void>) => {
  try {
    await body();
    passed.push(name);
  } catch (error) {
    const { message } = error as Error;
    failures.push(message.startsWith(`${name}:`) ? message : `${name}: ${message}`);
    throw error;
  }
};

try {
  await expectJson(
    await service.api("/instances", { json: { name: "long-src", size: "128MB", memory_load: { fill_percent: 70 } } }),
    201,
    "create",
  );
  await waitForTick(service.api, "long-src", 2, 300_000); // the guest counts once its RAM is filled
  say("long-src runs with 70 % of its RAM filled");
  const snapshot = await expectJson(
    await service.api("/instances/long-src/snapshots", { json: { kind: "Standby", name: "long" } }),
    201,
    "snapshot",
  );
  say(`snapshot ${snapshot.id} taken`);
  const quick = await exportTo(snapshot.id, path.join(work, "quick.tar"));
  if (quick.bytes < 3 * BUFFERED_MAX) throw new Error(`the archive is too small to outlast buffers: ${quick.bytes}`);
  say(`a full-speed export: ${quick.bytes} bytes in ${seconds(quick.ms)} s`);

  const archive = path.join(work, "slow.tar");
  await check("export", async () => {
    const { bytes, ms } = await exportTo(snapshot.id, archive, { bytes: quick.bytes - BUFFERED_MAX, ms: TARGET_MS });
    if (bytes !== quick.bytes) throw new Error(`${bytes} bytes, the full-speed export had ${quick.bytes}`);
    const entries = await checkArchive(archive);
    if (ms < MIN_MS) throw new Error(`lasted ${seconds(ms)} s, under ${MIN_MS / 1000} s: the check proves nothing`);
    console.log(`export: ${bytes} bytes in ${seconds(ms)} s: complete (${entries} entries match the manifest)`);
  });

  let importedId = "";
  await check("import", async () => {
    const { size, sent, status, text, ms } = await importFrom(archive, quick.bytes / (TARGET_MS / 1000));
    if (status !== 201) throw new Error(`${status} after ${sent} of ${size} bytes, ${seconds(ms)} s: ${text}`);
    if (ms < MIN_MS) throw new Error(`lasted ${seconds(ms)} s, under ${MIN_MS / 1000} s: the check proves nothing`);
    importedId = JSON.parse(text).id;
    console.log(`import: ${sent} bytes in ${seconds(ms)} s: ${status} ${importedId}`);
  });

  await check("fork of the import", async () => {
    await expectJson(
      await service.api(`/snapshots/${importedId}/fork`, { json: { name: "long-fork", target_state: "Running" } }),
      201,
      "fork",
    );
    const state = await waitFor(
      async () => {
        const { state } = await jsonOf(await service.api("/instances/long-fork"));
        return state === "Running" ? state : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500, what: "long-fork to run" },
    );
    await waitForTick(service.api, "long-fork", 1); // the restored guest counts on
    console.log(`fork of the import: ${state}`);
  });
} catch (error) {
  if (!failures.length) failures.push(`setup: ${(error as Error).message}`);
}

for (const failure of failures) console.log(`FAILED: ${failure}`);
const notReached = CHECKS.filter((name) => !passed.includes(name) && !failures.some((f) => f.startsWith(`${name}:`)));
for (const name of notReached) console.log(`not reached: ${name}`);
const failed = CHECKS.length - passed.length;
console.log(`${passed.length} passed, ${failed} failed`);
if (failed)
  console.log(`service output (last 40 lines):\n${service.output().trim().split("\n").slice(-40).join("\n")}`);
await cleanUp();
process.exit(failed ? 1 : 0);
