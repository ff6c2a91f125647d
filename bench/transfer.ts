// npm run bench:transfer — moving snapshots between hosts, on two worker hosts of one machine (test/helpers/fleet.ts:
// real API, capture and compression worker processes, a private Redis, QEMU guests):
// - pull throughput: a host's payload files fetched from another host's payload server over loopback HTTP, against
//   `cp` of the same files;
// - fork → 201 of a snapshot on the fork's own host, on another host (the first fork there pulls the payload), and on
//   that other host again (its replica is local by then).
//
// - the object store (bench/lib/store-transfer.ts, on a single-node Ceph cluster started for the run): upload and
//   download throughput against the SDK's plain PutObject/GetObject, and a host's first fork of a 1 GiB compressed
//   snapshot from the store against the download alone.
//
// Options: --rounds <n> (default 3), --store-mib <n> (default 512), --no-store (skip the object store part),
// --store-only (only the object store part).
// Prints markdown tables for bench/README.md (## Transfer).
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createLogger } from "../shared/logger.ts";
import { findRedisServer, startEmbeddedRedis } from "../supervisor/embedded-redis.ts";
import { startCephCluster } from "../test/helpers/ceph-cluster.ts";
import { waitForTick } from "../test/helpers/console.ts";
import { startFleet } from "../test/helpers/fleet.ts";
import { apiConsole, capturedBetween, consolePoint, waitForResume } from "../test/helpers/resume.ts";
import { downloadResuming } from "../workers/host/replicas.ts";
import { median } from "./lib/median.ts";
import { firstForkFromStore, printStoreFigures, storeThroughput } from "./lib/store-transfer.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    "store-mib": { type: "string", default: "512" },
    "no-store": { type: "boolean", default: false },
    "store-only": { type: "boolean", default: false },
  },
});
const ROUNDS = Number(flags.rounds);
// biome-ignore lint/suspicious/noExplicitAny: bench code reads the API's JSON loosely
type Json = any;

const work = mkdtempSync(path.join(tmpdir(), "snapfleet-bench-transfer-"));
const redisServer = await startEmbeddedRedis(
  findRedisServer()!,
  path.join(work, "redis"),
  createLogger("redis", "warn"),
);
const fleet = await startFleet(2, { redisUrl: redisServer.url });
const stop = async () => {
  await fleet.stop();
  await redisServer.stop(2_000);
  rmSync(work, { recursive: true, force: true });
};
process.once("SIGINT", () => void stop().then(() => process.exit(130)));
const api = (pathAndQuery: string) => fleet.api(pathAndQuery);

async function call(pathAndQuery: string, json?: unknown, expected = 0): Promise<Json> {
  const response = await fleet.api(pathAndQuery, json === undefined ? {} : { json });
  const text = await response.text();
  if (expected && response.status !== expected) throw new Error(`${pathAndQuery}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

async function timedFork(snapshotId: string, name: string, hostId: string): Promise<number> {
  const started = performance.now();
  await call(`/snapshots/${snapshotId}/fork`, { name, host_id: hostId }, 201);
  const ms = performance.now() - started;
  await fleet.api(`/instances/${name}`, { method: "DELETE" });
  return ms;
}

const fmt = (values: number[]) =>
  `${median(values).toFixed(0)} (${Math.min(...values).toFixed(0)}–${Math.max(...values).toFixed(0)})`;

async function hostToHost(): Promise<void> {
  await call("/instances", { name: "bench-src", size: "256MB", host_id: "fleet-a" }, 201);
  await waitForTick(api, "bench-src", 2);
  const owner = { client: fleet.payloads, target: await fleet.payloadTarget("fleet-a") };

  const forks = { local: [] as number[], remoteFirst: [] as number[], remoteAgain: [] as number[] };
  const pulls: Array<{ bytes: number; httpMs: number; cpMs: number }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    const before = await consolePoint(apiConsole(api, "bench-src"));
    const snapshot = await call("/instances/bench-src/snapshots", { kind: "Standby" }, 201);
    const captured = capturedBetween(before, await consolePoint(apiConsole(api, "bench-src")));
    forks.local.push(await timedFork(snapshot.id, `local-${round}`, "fleet-a"));
    forks.remoteFirst.push(await timedFork(snapshot.id, `remote-${round}`, "fleet-b"));
    forks.remoteAgain.push(await timedFork(snapshot.id, `again-${round}`, "fleet-b"));
    if (round === 0) {
      await call(`/snapshots/${snapshot.id}/fork`, { name: "check", host_id: "fleet-b" }, 201);
      await waitForResume(apiConsole(api, "check"), captured); // a pulled fork resumes, or the figures mean nothing
      await fleet.api("/instances/check", { method: "DELETE" });
    }

    // The same files over HTTP (the prepared export forms on fleet-a) and with cp, page cache warm for both.
    const listing: Json = await (await fleet.payloads.request(owner.target, `/snapshots/${snapshot.id}/export`)).json();
    const target = mkdtempSync(path.join(work, "pull-"));
    let bytes = 0;
    const httpStarted = performance.now();
    for (const file of listing.files) {
      bytes += await downloadResuming(
        owner,
        `/snapshots/${snapshot.id}/files/${file.name}`,
        path.join(target, file.name),
        file.size,
      );
    }
    const httpMs = performance.now() - httpStarted;
    const sources = listing.files.map((file: Json) => {
      const stored = path.join(fleet.host("fleet-a").dataDir, "snapshots", snapshot.id, file.name);
      return statSync(stored, { throwIfNoEntry: false })
        ? stored
        : path.join(fleet.host("fleet-a").dataDir, "cache", snapshot.id, file.name);
    });
    const copyDir = mkdtempSync(path.join(work, "cp-"));
    const cpStarted = performance.now();
    execFileSync("cp", ["--sparse=always", ...sources, copyDir]);
    const cpMs = performance.now() - cpStarted;
    pulls.push({ bytes, httpMs, cpMs });
    rmSync(target, { recursive: true, force: true });
    rmSync(copyDir, { recursive: true, force: true });
    await fleet.api(`/snapshots/${snapshot.id}`, { method: "DELETE" });
  }

  const mbps = (bytes: number, ms: number) => (bytes / 1024 / 1024 / (ms / 1000)).toFixed(0);
  console.log(
    `\n## Transfer (${new Date().toISOString()}, ${cpus().length} cores, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB, load ${loadavg()
      .map((load) => load.toFixed(1))
      .join(" ")})\n`,
  );
  console.log("256 MiB guest, Standby snapshot (raw; exported as zstd-1 .sfc), two hosts on one machine, loopback.\n");
  console.log("| round | payload (.sfc) bytes | HTTP pull ms | MiB/s | cp ms | MiB/s |");
  console.log("|---|---|---|---|---|---|");
  for (const [round, pull] of pulls.entries()) {
    const cells = [round + 1, pull.bytes, pull.httpMs.toFixed(0), mbps(pull.bytes, pull.httpMs), pull.cpMs.toFixed(0)];
    console.log(`| ${cells.join(" | ")} | ${mbps(pull.bytes, pull.cpMs)} |`);
  }
  console.log("\n| fork → 201 (ms, median (min–max)) | |");
  console.log("|---|---|");
  console.log(`| on the snapshot's own host | ${fmt(forks.local)} |`);
  console.log(`| on another host, first fork (pulls the payload) | ${fmt(forks.remoteFirst)} |`);
  console.log(`| on another host again (replica local) | ${fmt(forks.remoteAgain)} |`);
}

try {
  if (!flags["store-only"]) await hostToHost();
  if (!flags["no-store"]) {
    await fleet.stop();
    const cluster = await startCephCluster(path.join(work, "ceph"));
    try {
      const rounds = await storeThroughput(cluster, work, Number(flags["store-mib"]), Math.max(ROUNDS, 5));
      const fork = await firstForkFromStore(cluster, redisServer.url, work);
      printStoreFigures(rounds, fork);
    } finally {
      await cluster.stop();
    }
  }
} finally {
  await stop();
}
