// A throwaway single-node Ceph cluster with its S3 gateway (radosgw) on loopback, for the tests' and benchmarks'
// object store: one monitor, one BlueStore OSD on a sparse file and one radosgw, each on its own free port, every
// file (config, data, pid files, sockets, logs) under one directory, cephx off, no manager (S3 works without it).
// The recipe and the settings it needs are in ../shared/reference/environment.md ("Ceph RGW as a test S3 store").
// The daemons detach: their PIDs are read from their pid files, recorded in `<dir>/pids.json`, and stop() ends them
// by those PIDs (gateway, OSD, monitor), so a crashed run's cluster can be stopped too (`stopCephCluster(dir)`).
//   node --import tsx test/helpers/ceph-cluster.ts start <dir>   prints the S3_* settings and leaves it running
//   node --import tsx test/helpers/ceph-cluster.ts stop <dir>
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { ListBucketsCommand, S3Client } from "@aws-sdk/client-s3";
import { freePort } from "./fixtures.ts";

const run = promisify(execFile);

export const CEPH_PACKAGES = "ceph-mon ceph-osd radosgw";
const BINARIES = ["monmaptool", "ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph"];
const DAEMONS = ["client.rgw.test", "osd.0", "mon.a"] as const; // in stopping order
const ACCESS_KEY = "SNAPFLEETTESTKEY00001";
const SECRET_KEY = "snapfleet-test-secret-key-0123456789abcd";

export interface CephCluster {
  /** The S3 gateway, `http://127.0.0.1:<port>`. */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  dir: string;
  pids: number[];
  /** Stops every daemon by its recorded PID and removes the directory. */
  stop(): Promise<void>;
}

/** Why no cluster can be started here ("" when the binaries are installed). */
export function cephMissingReason(): string {
  const dirs = (process.env.PATH ?? "").split(path.delimiter).concat(["/usr/bin", "/usr/sbin"]);
  const missing = BINARIES.filter((binary) => !dirs.some((dir) => existsSync(path.join(dir, binary))));
  return missing.length ? `${missing.join(", ")} not installed (Debian packages ${CEPH_PACKAGES})` : "";
}

/** An S3 client for the cluster, with the settings radosgw needs. */
export function s3ClientFor(cluster: Pick<CephCluster, "endpoint" | "region" | "accessKeyId" | "secretAccessKey">) {
  return new S3Client({
    endpoint: cluster.endpoint,
    region: cluster.region,
    credentials: { accessKeyId: cluster.accessKeyId, secretAccessKey: cluster.secretAccessKey },
    forcePathStyle: true,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

export async function startCephCluster(dir?: string): Promise<CephCluster> {
  const missing = cephMissingReason();
  if (missing) throw new Error(`cannot start a Ceph cluster: ${missing}`);
  const root = dir ?? (await mkdtemp(path.join(tmpdir(), "snapfleet-ceph-")));
  for (const sub of ["run", "log", "mon", "osd/ceph-0", "rgw"]) mkdirSync(path.join(root, sub), { recursive: true });
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const conf = path.join(root, "ceph.conf");
  const fsid = randomUUID();
  writeFileSync(conf, configText(root, fsid, monPort, rgwPort));
  const ceph = (command: string, args: string[], timeoutMs = 60_000) =>
    run(command, ["-c", conf, ...args], { timeout: timeoutMs });
  const cluster: CephCluster = {
    endpoint: `http://127.0.0.1:${rgwPort}`,
    region: "us-east-1",
    accessKeyId: ACCESS_KEY,
    secretAccessKey: SECRET_KEY,
    dir: root,
    pids: [],
    stop: () => stopCephCluster(root),
  };
  try {
    await run("monmaptool", ["--create", "--addv", "a", `[v2:127.0.0.1:${monPort}]`, "--fsid", fsid, monmap(root)]);
    await ceph("ceph-mon", ["--mkfs", "-i", "a", "--monmap", monmap(root)]);
    await ceph("ceph-mon", ["-i", "a"]);
    await recordPid(root, "mon.a");
    // The only call to the `ceph` tool: with cephx off the OSD does not register itself.
    const osdUuid = randomUUID();
    await ceph("ceph", ["osd", "new", osdUuid]);
    await ceph("ceph-osd", ["-i", "0", "--mkfs", "--osd-uuid", osdUuid]);
    await ceph("ceph-osd", ["-i", "0"]);
    await recordPid(root, "osd.0");
    await ceph("radosgw", ["-n", "client.rgw.test"]);
    await recordPid(root, "client.rgw.test");
    await waitForGateway(cluster);
    await ceph("radosgw-admin", [
      "user",
      "create",
      "--uid=snapfleet",
      "--display-name=snapfleet tests",
      `--access-key=${ACCESS_KEY}`,
      `--secret-key=${SECRET_KEY}`,
    ]);
    await waitForS3(cluster);
    cluster.pids = readPids(root);
    return cluster;
  } catch (error) {
    const logs = DAEMONS.map((name) => tail(path.join(root, "log", `${name}.log`))).join("\n");
    await stopCephCluster(root);
    throw new Error(`the Ceph cluster did not start: ${(error as Error).message}\n${logs}`);
  }
}

/** Stops the daemons recorded in `dir` (gateway, then OSD, then monitor) and removes the directory. */
export async function stopCephCluster(dir: string): Promise<void> {
  const pids = readPidsByName(dir);
  for (const name of DAEMONS) {
    const pid = pids[name];
    if (pid) await stopPid(pid);
  }
  rmSync(dir, { recursive: true, force: true });
}

function configText(root: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = [v2:127.0.0.1:${monPort}]
public addr = 127.0.0.1
ms bind msgr1 = false
ms mon client mode = crc
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
paxos propose interval = 0.1
mon data avail crit = 1
mon data avail warn = 1
run dir = ${root}/run
admin socket = ${root}/run/$name.asok
pid file = ${root}/run/$name.pid
log file = ${root}/log/$name.log
mon data = ${root}/mon/$cluster-$id
osd data = ${root}/osd/$cluster-$id
osd objectstore = bluestore
bluestore block size = ${32 * 1024 ** 3}
osd memory target = ${1024 ** 3}

[client.rgw.test]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${root}/rgw
`;
}

const monmap = (root: string) => path.join(root, "monmap");
const pidsFile = (root: string) => path.join(root, "pids.json");

function readPidsByName(root: string): Record<string, number> {
  try {
    return JSON.parse(readFileSync(pidsFile(root), "utf8")) as Record<string, number>;
  } catch {
    return {};
  }
}

function readPids(root: string): number[] {
  return Object.values(readPidsByName(root));
}

/** The daemon detached: its PID is in its pid file once it has started. */
async function recordPid(root: string, name: string): Promise<void> {
  const file = path.join(root, "run", `${name}.pid`);
  for (let attempt = 0; attempt < 200 && !existsSync(file); attempt++) await sleep(50);
  const pid = Number(readFileSync(file, "utf8").trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${name} wrote no pid`);
  writeFileSync(pidsFile(root), JSON.stringify({ ...readPidsByName(root), [name]: pid }));
}

/** A pid that is gone, or a zombie (re-parented and not yet reaped), is stopped. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** A recorded PID is ours only while it still runs a Ceph daemon: a stale file (after a reboot) names another process. */
function isCephDaemon(pid: number): boolean {
  try {
    const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] ?? "";
    return ["ceph-mon", "ceph-osd", "radosgw"].includes(path.basename(command));
  } catch {
    return false;
  }
}

async function stopPid(pid: number): Promise<void> {
  if (!alive(pid) || !isCephDaemon(pid)) return;
  process.kill(pid, "SIGTERM");
  for (let waited = 0; waited < 3_000 && alive(pid); waited += 50) await sleep(50);
  if (alive(pid)) process.kill(pid, "SIGKILL");
  for (let waited = 0; waited < 5_000 && alive(pid); waited += 50) await sleep(50);
}

async function waitForGateway(cluster: CephCluster): Promise<void> {
  for (let attempt = 0; attempt < 300; attempt++) {
    if (
      await fetch(cluster.endpoint).then(
        () => true,
        () => false,
      )
    )
      return;
    await sleep(100);
  }
  throw new Error(`radosgw did not open ${cluster.endpoint}`);
}

async function waitForS3(cluster: CephCluster): Promise<void> {
  const client = s3ClientFor(cluster);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await client.send(new ListBucketsCommand({}));
        return;
      } catch (error) {
        if (attempt >= 100) throw error;
        await sleep(100);
      }
    }
  } finally {
    client.destroy();
  }
}

function tail(file: string): string {
  try {
    return `--- ${path.basename(file)}\n${readFileSync(file, "utf8").split("\n").slice(-15).join("\n")}`;
  } catch {
    return "";
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [command, dir] = process.argv.slice(2);
  if (command === "start" && dir) {
    const cluster = await startCephCluster(path.resolve(dir));
    process.stdout.write(
      `S3_ENDPOINT=${cluster.endpoint} S3_REGION=${cluster.region} S3_ACCESS_KEY_ID=${cluster.accessKeyId} ` +
        `S3_SECRET_ACCESS_KEY=${cluster.secretAccessKey}\n`,
    );
  } else if (command === "stop" && dir) {
    await stopCephCluster(path.resolve(dir));
  } else {
    process.stderr.write("usage: ceph-cluster.ts start|stop <dir>\n");
    process.exit(64);
  }
}
