// npm run fuzz: random corruptions of a real snapshot export sent to POST /snapshots/import of a whole service (real
// QEMU guest, real hosts' payload server). Half corrupt the archive as bytes (bit flips, truncations, splices); half
// corrupt one entry and recompute the manifest (and an image's checksum list), so the damage reaches the record
// schema, the seek-table decoder and the squashfs reader behind the sha256 checks. Asserts no 5xx but 503/507, the
// service healthy throughout, nothing left in the snapshots dir, and a clean import still working at the end; prints
// the count per status and per kind of corruption.
// On a failure the service's output is kept in test-artifacts/fuzz-service.log.
//   npm run fuzz -- --count 2000 --seed 7 [--only "archive truncation"]
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { type ArchiveEntry, archiveOf, checksumsOf, entriesOf, postArchive } from "../test/helpers/archives.ts";
import { waitForTick } from "../test/helpers/console.ts";
import { waitFor } from "../test/helpers/fixtures.ts";
import { startService } from "../test/helpers/service.ts";

const { values } = parseArgs({
  options: {
    count: { type: "string", default: "2000" },
    seed: { type: "string", default: "1" },
    /** Only the corruptions whose kind contains this (e.g. "archive truncation"), to chase one failure. */
    only: { type: "string" },
  },
});
const COUNT = Number(values.count);
const ALLOWED_5XX = new Set([503, 507]);
const HEALTH_EVERY = 50;

/** A small seeded PRNG (mulberry32), so a failing run can be replayed with its seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const next = random(Number(values.seed));
const below = (n: number) => Math.floor(next() * n);

function flipBits(data: Buffer): Buffer {
  const out = Buffer.from(data);
  for (let flips = 1 + below(8); flips > 0; flips--) out[below(out.length)]! ^= 1 << below(8);
  return out;
}

function truncate(data: Buffer): Buffer {
  return data.subarray(0, below(data.length));
}

/** Copies a random range over another place, or cuts one out, or inserts random bytes. */
function splice(data: Buffer): Buffer {
  const at = below(data.length);
  const length = 1 + below(Math.min(4096, data.length - at));
  const choice = below(3);
  if (choice === 0) {
    const out = Buffer.from(data);
    data.copy(out, below(data.length - length + 1), at, at + length);
    return out;
  }
  if (choice === 1) return Buffer.concat([data.subarray(0, at), data.subarray(at + length)]);
  const inserted = Buffer.alloc(length);
  for (let index = 0; index < length; index++) inserted[index] = below(256);
  return Buffer.concat([data.subarray(0, at), inserted, data.subarray(at)]);
}

const BYTE_MUTATIONS = { "bit flips": flipBits, truncation: truncate, splice } as const;
type MutationName = keyof typeof BYTE_MUTATIONS;

/** Damages the end of a buffer more often: seek tables, squashfs tables and JSON tails live there. */
function mutateTail(data: Buffer, mutation: (data: Buffer) => Buffer): Buffer {
  if (next() < 0.5 || data.length < 8192) return mutation(data);
  const cut = data.length - 4096;
  return Buffer.concat([data.subarray(0, cut), mutation(data.subarray(cut))]);
}

async function corrupted(archive: Buffer, entries: ArchiveEntry[]): Promise<{ kind: string; body: Buffer }> {
  const mutationName = Object.keys(BYTE_MUTATIONS)[below(3)] as MutationName;
  const mutation = BYTE_MUTATIONS[mutationName];
  if (next() < 0.5) return { kind: `archive ${mutationName}`, body: mutation(archive) };
  const target = entries[below(entries.length - 1)]!; // any entry but the manifest, which is recomputed
  const damaged = entries.map((entry) =>
    entry === target ? { name: entry.name, data: mutateTail(entry.data, mutation) } : entry,
  );
  if (target.name.endsWith(".sqfs")) {
    const sums = damaged.find((entry) => entry.name === `${target.name}.sums`)!;
    sums.data = await checksumsOf(damaged.find((entry) => entry.name === target.name)!.data);
  }
  return { kind: `${target.name} ${mutationName}`, body: await archiveOf(damaged) };
}

async function main(): Promise<void> {
  // A busy machine starts the service slowly; the fuzz itself has no time limit.
  const service = await startService(
    { IMPORT_MAX_CONCURRENT: "2", LOG_LEVEL: process.env.LOG_LEVEL ?? "warn" },
    { readyTimeoutMs: 300_000 },
  );
  try {
    const post = (pathAndQuery: string, json: unknown) => service.api(pathAndQuery, { method: "POST", json });
    await post("/instances", { name: "fuzz-src", size: "128MB", overlay_size: "16MB" });
    await waitForTick(service.api, "fuzz-src", 2);
    const taken = await post("/instances/fuzz-src/snapshots", {
      kind: "Standby",
      compression: { enabled: true, algorithm: "zstd", level: 1 },
    });
    const snapshot = (await taken.json()) as { id: string };
    await waitFor(
      async () => {
        const state = (await (await service.api(`/snapshots/${snapshot.id}`)).json()) as { compression_state: string };
        return state.compression_state === "compressed";
      },
      { timeoutMs: 120_000, intervalMs: 250, what: "compression" },
    );
    const archive = Buffer.from(await (await service.api(`/snapshots/${snapshot.id}/export`)).arrayBuffer());
    const entries = await entriesOf(archive);
    const importArchive = (body: Buffer) => postArchive(`${service.baseUrl}/snapshots/import`, service.apiKey(), body);

    const byStatus = new Map<number, number>();
    const byKind = new Map<string, Map<number, number>>();
    const failures: string[] = [];
    const started = performance.now();
    for (let run = 1; run <= COUNT; run++) {
      let { kind, body } = await corrupted(archive, entries);
      while (values.only && !kind.includes(values.only)) ({ kind, body } = await corrupted(archive, entries));
      // 0: the connection broke before an answer (counted, and a failure: a refusal must reach the client).
      const { status, answer } = await importArchive(body).then(
        (response) => ({ status: response.status, answer: response.text }),
        (error: Error) => ({ status: 0, answer: String(error) }),
      );
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
      const kinds = byKind.get(kind) ?? new Map<number, number>();
      kinds.set(status, (kinds.get(status) ?? 0) + 1);
      byKind.set(kind, kinds);
      if (status === 0 || (status >= 500 && !ALLOWED_5XX.has(status))) {
        failures.push(`#${run} ${kind}: ${status} ${answer.slice(0, 300)}`);
      }
      if (status === 201) await service.api(`/snapshots/${JSON.parse(answer).id}`, { method: "DELETE" });
      if (run % HEALTH_EVERY === 0) {
        const health = await fetch(`${service.baseUrl}/health`);
        if (health.status !== 200) failures.push(`#${run}: /health answered ${health.status}`);
        process.stdout.write(`${run}/${COUNT} sent, ${failures.length} failures\n`);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    const leftovers = readdirSync(path.join(service.dataDir, "snapshots")).filter((name) => name.startsWith("."));
    if (leftovers.length > 0) failures.push(`left in the snapshots dir: ${leftovers.join(", ")}`);
    const clean = await importArchive(archive);
    if (clean.status !== 201) failures.push(`a clean import afterwards answered ${clean.status}`);

    console.log(
      `\n${COUNT} corrupted archives in ${seconds.toFixed(0)} s (seed ${values.seed}, load ${loadavg()[0]!.toFixed(1)})`,
    );
    console.log("by status:", Object.fromEntries([...byStatus].sort(([a], [b]) => a - b)));
    for (const [kind, statuses] of [...byKind].sort(([a], [b]) => a.localeCompare(b))) {
      console.log(`  ${kind.padEnd(32)} ${JSON.stringify(Object.fromEntries(statuses))}`);
    }
    if (failures.length > 0) {
      console.log(`\n${failures.length} failures:\n${failures.slice(0, 20).join("\n")}`);
      mkdirSync("test-artifacts", { recursive: true });
      writeFileSync("test-artifacts/fuzz-service.log", service.output());
      console.log("the service's output: test-artifacts/fuzz-service.log");
      process.exitCode = 1;
    } else {
      console.log("no 5xx but 503/507, /health 200 throughout, nothing left behind, a clean import still works");
    }
  } finally {
    await service.stop("SIGTERM");
    service.remove();
  }
}

await main();
