// bench:transfer's object-store part, on a real single-node Ceph cluster's S3 gateway (test/helpers/ceph-cluster.ts):
// - upload and download throughput of our path (shared/object-store.ts: multipart parts in parallel up; parallel
//   ranged GETs, sha256 check and fsync down) against the AWS SDK's plain client-only PutObject / GetObject of the
//   same bytes, in turn, each round;
// - the time to a first fork on a host that never held a 1 GiB compressed snapshot (dense guest, 70 % of its RAM in
//   use), its owner stopped, against the download of the same objects alone.
import { randomBytes } from "node:crypto";
import {
  createReadStream,
  createWriteStream,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { manifestSigningKey } from "../../shared/fleet-secret.ts";
import { ObjectStore, sha256File } from "../../shared/object-store.ts";
import { type CephCluster, s3ClientFor } from "../../test/helpers/ceph-cluster.ts";
import { waitForTick } from "../../test/helpers/console.ts";
import { startFleet } from "../../test/helpers/fleet.ts";
import { apiConsole, capturedBetween, consolePoint, waitForResume } from "../../test/helpers/resume.ts";
import { median } from "./median.ts";

// biome-ignore lint/suspicious/noExplicitAny: bench code reads the API's JSON loosely
type Json = any;

export interface ThroughputRound {
  bytes: number;
  oursUpMs: number;
  plainUpMs: number;
  oursDownMs: number;
  plainDownMs: number;
}

/** Upload and download of one file of `mib` MiB of incompressible bytes (what .sfc and .sqfs payloads are). */
export async function storeThroughput(
  cluster: CephCluster,
  work: string,
  mib: number,
  rounds: number,
): Promise<ThroughputRound[]> {
  const bucket = `bench-${Date.now().toString(36)}`;
  const client = s3ClientFor(cluster);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const store = new ObjectStore({ bucket, ...cluster, forcePathStyle: true, signingKey: randomBytes(32) });
  const file = path.join(work, "payload.bin");
  writeFileSync(file, Buffer.concat(Array.from({ length: Math.ceil(mib / 16) }, () => randomBytes(16 * 1024 ** 2))));
  const bytes = statSync(file).size;
  const sha256 = await sha256File(file);
  const results: ThroughputRound[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      const timed = async (work: () => Promise<unknown>) => {
        const started = performance.now();
        await work();
        return performance.now() - started;
      };
      const oursUp = () => store.putFile(`ours-${round}`, "payload.sfc", file);
      const plainUp = () =>
        client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: `plain-${round}/payload.sfc`,
            Body: createReadStream(file),
            ContentLength: bytes,
          }),
        );
      const oursDown = () =>
        store.download(`ours-${round}`, { name: "payload.sfc", size: bytes, sha256 }, path.join(work, "ours.out"));
      const plainDown = async () => {
        const answer = await client.send(new GetObjectCommand({ Bucket: bucket, Key: `plain-${round}/payload.sfc` }));
        await pipeline(answer.Body as Readable, createWriteStream(path.join(work, "plain.out")));
      };
      // In turn, the order swapped every round: neither side always runs on a warmer cache.
      const first = round % 2 === 0;
      const result = { bytes, oursUpMs: 0, plainUpMs: 0, oursDownMs: 0, plainDownMs: 0 };
      if (first) result.oursUpMs = await timed(oursUp);
      result.plainUpMs = await timed(plainUp);
      if (!first) result.oursUpMs = await timed(oursUp);
      if (first) result.oursDownMs = await timed(oursDown);
      result.plainDownMs = await timed(plainDown);
      if (!first) result.oursDownMs = await timed(oursDown);
      results.push(result);
      await store.deleteOthers(`ours-${round}`, new Set());
      await store.deleteOthers(`plain-${round}`, new Set()).catch(() => 0);
    }
  } finally {
    store.close();
    client.destroy();
    rmSync(file, { force: true });
  }
  return results;
}

export interface FirstForkResult {
  storedBytes: number;
  uploadMs: number;
  forkMs: number;
  downloadMs: number;
}

/** A dense 1 GiB guest's compressed snapshot, stored; its owner stopped; the other host's first fork of it. */
export async function firstForkFromStore(
  cluster: CephCluster,
  redisUrl: string,
  work: string,
): Promise<FirstForkResult> {
  const bucket = `bench-fork-${Date.now().toString(36)}`;
  const client = s3ClientFor(cluster);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const fleet = await startFleet(2, {
    redisUrl,
    env: {
      S3_ENDPOINT: cluster.endpoint,
      S3_REGION: cluster.region,
      S3_BUCKET: bucket,
      S3_ACCESS_KEY_ID: cluster.accessKeyId,
      S3_SECRET_ACCESS_KEY: cluster.secretAccessKey,
    },
  });
  // The fleet's own manifest key: the bench reads the manifests its hosts signed.
  const signingKey = manifestSigningKey(readFileSync(fleet.secretFile, "utf8").trim());
  const store = new ObjectStore({ bucket, ...cluster, forcePathStyle: true, signingKey });
  const api = (pathAndQuery: string) => fleet.api(pathAndQuery);
  const call = async (pathAndQuery: string, json?: unknown, expected = 0): Promise<Json> => {
    const response = await fleet.api(pathAndQuery, json === undefined ? {} : { json });
    const text = await response.text();
    if (expected && response.status !== expected) throw new Error(`${pathAndQuery}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  try {
    await call(
      "/instances",
      { name: "dense", size: "1GB", host_id: "fleet-a", memory_load: { fill_percent: 70 } },
      201,
    );
    await waitForTick(api, "dense", 2, 600_000);
    const before = await consolePoint(apiConsole(api, "dense"));
    const snapshot = await call(
      "/instances/dense/snapshots",
      { kind: "Standby", compression: { enabled: true, algorithm: "zstd", level: 1 } },
      201,
    );
    const captured = capturedBetween(before, await consolePoint(apiConsole(api, "dense")));
    const uploadStarted = performance.now();
    let stored: Json;
    for (const deadline = Date.now() + 1_200_000; ; ) {
      stored = await call(`/snapshots/${snapshot.id}`, undefined, 200);
      if (stored.storage === "stored" && stored.compression_state === "compressed") break;
      if (Date.now() > deadline) throw new Error(`snapshot not stored: ${JSON.stringify(stored)}`);
      await new Promise((resolve) => setTimeout(resolve, 250)); // no event to wait on from here: poll the API
    }
    const uploadMs = performance.now() - uploadStarted;
    await fleet.host("fleet-a").capture.stop("SIGTERM");
    await fleet.host("fleet-a").compression.stop("SIGTERM");
    for (;;) {
      const hosts: Json[] = await call("/hosts", undefined, 200);
      if (hosts.find((host) => host.id === "fleet-a")?.online === false) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const forkStarted = performance.now();
    await call(`/snapshots/${snapshot.id}/fork`, { name: "first", host_id: "fleet-b" }, 201);
    const forkMs = performance.now() - forkStarted;
    await waitForResume(apiConsole(api, "first"), captured); // a fork that rebooted would make the figure meaningless

    // The same objects, downloaded alone (our parallel ranged GETs with their sha256 check).
    const manifest = (await store.readManifest(snapshot.id))!;
    const target = mkdtempSync(path.join(work, "download-"));
    let storedBytes = 0;
    const downloadStarted = performance.now();
    for (const entry of manifest.entries) {
      storedBytes += await store.download(snapshot.id, entry, path.join(target, entry.name));
    }
    const downloadMs = performance.now() - downloadStarted;
    rmSync(target, { recursive: true, force: true });
    await fleet.host("fleet-a").restartCapture();
    await call(`/instances/first`, undefined, 200);
    await fleet.api("/instances/first", { method: "DELETE" });
    await fleet.api(`/snapshots/${snapshot.id}`, { method: "DELETE" });
    return { storedBytes, uploadMs, forkMs, downloadMs };
  } finally {
    store.close();
    client.destroy();
    await fleet.stop();
  }
}

export function printStoreFigures(rounds: ThroughputRound[], fork: FirstForkResult | undefined): void {
  const mibps = (bytes: number, ms: number) => bytes / 1024 ** 2 / (ms / 1000);
  console.log("\n### Object store (single-node Ceph radosgw on loopback)\n");
  console.log(
    "| round | MiB | ours up MiB/s | plain PutObject MiB/s | up ratio | ours down MiB/s | plain GetObject MiB/s | down ratio |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  const upRatios: number[] = [];
  const downRatios: number[] = [];
  for (const [index, round] of rounds.entries()) {
    const up = round.plainUpMs / round.oursUpMs;
    const down = round.plainDownMs / round.oursDownMs;
    upRatios.push(up);
    downRatios.push(down);
    const cells = [
      index + 1,
      (round.bytes / 1024 ** 2).toFixed(0),
      mibps(round.bytes, round.oursUpMs).toFixed(0),
      mibps(round.bytes, round.plainUpMs).toFixed(0),
      up.toFixed(2),
      mibps(round.bytes, round.oursDownMs).toFixed(0),
      mibps(round.bytes, round.plainDownMs).toFixed(0),
      down.toFixed(2),
    ];
    console.log(`| ${cells.join(" | ")} |`);
  }
  console.log(`\nstore upload ratio (ours / plain PutObject throughput, median): ${median(upRatios).toFixed(2)}`);
  console.log(`store download ratio (ours / plain GetObject throughput, median): ${median(downRatios).toFixed(2)}`);
  if (!fork) return;
  console.log(
    `\nfirst fork from the store, 1 GiB guest 70 % used, zstd-1 compressed (${(fork.storedBytes / 1024 ** 2).toFixed(0)} MiB stored): ` +
      `fork → 201 ${fork.forkMs.toFixed(0)} ms, download alone ${fork.downloadMs.toFixed(0)} ms ` +
      `(ratio ${(fork.forkMs / fork.downloadMs).toFixed(2)}); capture → stored compressed ${(fork.uploadMs / 1000).toFixed(1)} s`,
  );
}
