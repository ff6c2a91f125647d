// npm run test:power: the durable-write rule, checked on the real service. This kernel has no device-mapper
// (dm-flakey, dm-log-writes), so instead of cutting power the whole service runs under `strace -f -y`, which records
// every fsync/fdatasync/rename/link with the file each one is about, while a capture, a standby, a fork, an import
// and a compression run. What a power cut can lose is exactly what was not flushed before it was named, so checking
// the order is checking every cut point at once:
//   1. every temporary or staging name renamed (or linked) into the data dir was fsynced before, and its directory
//      after (strace names libuv pool threads by their own ids, so not per process);
//   2. every payload file in a snapshot directory was flushed (under any of its names) before the last record write
//      of that snapshot;
//   3. an instance's device state and shared memory.raw were flushed before its record said Standby.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { isLeftoverName } from "../../shared/temp-names.ts";
import { freePort, tempDir, waitFor } from "../helpers/fixtures.ts";
import { killProcessesUsing, TEST_IMAGES_DIR, unmountUnder } from "../helpers/service.ts";

const TRACED = "fsync,fdatasync,msync,rename,renameat,renameat2,link,linkat";
const data = tempDir("power");
const trace = path.join(data.dir, "strace.log");
const dataDir = path.join(data.dir, "data");
const port = await freePort();
const baseUrl = `http://127.0.0.1:${port}`;
let output = "";

const supervisor: ChildProcess = spawn(
  "strace",
  ["-f", "-y", "-qq", "-e", `trace=${TRACED}`, "-e", "signal=none", "-o", trace, process.execPath].concat([
    "--import",
    "tsx",
    "supervisor/main.ts",
  ]),
  {
    env: {
      ...process.env,
      REDIS_URL: "",
      API_KEYS: "",
      DATA_DIR: dataDir,
      IMAGES_DIR: TEST_IMAGES_DIR,
      QEMU_ACCEL: "tcg",
      PORT: String(port),
    },
    stdio: ["ignore", "pipe", "pipe"],
  },
);
supervisor.stdout!.on("data", (chunk: Buffer) => (output += chunk.toString()));
supervisor.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));

async function api(method: string, pathAndQuery: string, body?: unknown, raw?: Buffer): Promise<Response> {
  const key = readFileSync(path.join(dataDir, "api-key"), "utf8").trim();
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (raw) headers["content-type"] = "application/x-tar";
  return fetch(`${baseUrl}${pathAndQuery}`, {
    method,
    headers,
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
}

async function expectStatus(response: Promise<Response>, status: number, what: string) {
  const answered = await response;
  const text = await answered.text();
  if (answered.status !== status) throw new Error(`${what}: ${answered.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

process.exitCode = 1; // until every check has passed
const steps: string[] = [];
let failures: string[] = [];
try {
  await waitFor(
    async () => ((await fetch(`${baseUrl}/health`).catch(() => undefined))?.status === 200 ? true : undefined),
    {
      timeoutMs: 180_000,
      intervalMs: 500,
      what: "the traced service to be healthy",
    },
  );
  const source = await expectStatus(api("POST", "/instances", { name: "power", size: "128MB" }), 201, "create");
  steps.push("create");
  const compression = { enabled: true, algorithm: "zstd", level: 1 };
  const captured = await expectStatus(
    api("POST", "/instances/power/snapshots", { kind: "Standby", compression }),
    201,
    "capture",
  );
  steps.push("capture of a running guest");
  await waitFor(
    async () => {
      const snapshot = await expectStatus(api("GET", `/snapshots/${captured.id}`), 200, "get");
      return snapshot.compression_state === "compressed" ? true : undefined;
    },
    { timeoutMs: 300_000, intervalMs: 1_000, what: "compression" },
  );
  steps.push("compression");
  await expectStatus(api("POST", `/snapshots/${captured.id}/fork`, { name: "power-fork" }), 201, "fork");
  steps.push("fork");
  await expectStatus(api("POST", "/instances/power/standby", { compression: { enabled: false } }), 200, "standby");
  steps.push("standby");
  const archive = Buffer.from(await (await api("GET", `/snapshots/${captured.id}/export`)).arrayBuffer());
  await expectStatus(api("POST", "/snapshots/import", undefined, archive), 201, "import");
  steps.push("import");
  failures = checkTrace(readFileSync(trace, "utf8"), source.id);
} catch (error) {
  failures.push(`run failed: ${(error as Error).message}\n${output.slice(-4000)}`);
} finally {
  // The supervisor (or strace) may be gone already: then no exit event comes, and waiting would end the run silently.
  // The service is strace's child: a signal to strace only detaches it, and the service ran on (found after a run).
  // So the service is stopped, strace ends with it, and whatever is left of either is killed.
  if (supervisor.exitCode === null && supervisor.signalCode === null) {
    const exited = new Promise((resolve) => supervisor.once("exit", resolve));
    const service = childrenOf(supervisor.pid!);
    for (const pid of service) signal(pid, "SIGTERM");
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 30_000))]);
    for (const pid of service.flatMap((parent) => [parent, ...childrenOf(parent)])) signal(pid, "SIGKILL");
    signal(supervisor.pid!, "SIGKILL");
  }
  killProcessesUsing(data.dir);
  unmountUnder(data.dir); // a fork's image mount outlives the service with its VM
}

/** The pids whose parent is `pid` (none once it is gone). */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(pid)], { encoding: "utf8" })
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {}
}

console.log(`traced: ${steps.join(", ")}`);
if (failures.length === 0) console.log("durable-write rule: every check passed");
for (const failure of failures) console.log(`FAILED: ${failure}`);
if (process.env.KEEP_POWER_TRACE) console.log(`trace kept: ${trace}`);
else rmSync(data.dir, { recursive: true, force: true });
process.exit(failures.length === 0 ? 0 : 1);

interface Call {
  index: number;
  pid: number;
  name: string;
  /** fsync family: the file; rename/link: [from, to]. */
  paths: string[];
}

/**
 * The calls that succeeded, each at the line where it returned. A call another thread interrupts is written in two
 * lines, `pid fsync(25</file> <unfinished ...>` and later `pid <... fsync resumed>) = 0`, joined here: missing them
 * made a loaded run report flushes that happened as missing.
 */
function parse(text: string): Call[] {
  const calls: Call[] = [];
  const unfinished = new Map<string, string>(); // pid → the call's first half
  for (const [index, raw] of text.split("\n").entries()) {
    let line = raw;
    const started = /^(\d+)\s+(.*) <unfinished \.\.\.>$/.exec(line);
    if (started) {
      unfinished.set(started[1]!, started[2]!);
      continue;
    }
    const resumed = /^(\d+)\s+<\.\.\. \w+ resumed>(.*)$/.exec(line);
    if (resumed) {
      const head = unfinished.get(resumed[1]!);
      unfinished.delete(resumed[1]!);
      if (head === undefined) continue;
      line = `${resumed[1]} ${head}${resumed[2]}`;
    }
    const match = /^(\d+)\s+(\w+)\((.*)\)\s+=\s+0/.exec(line);
    if (!match) continue;
    const [, pid, name, args] = match;
    const paths =
      name!.startsWith("rename") || name!.startsWith("link")
        ? [...args!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((quoted) => quoted[1]!)
        : [/<([^>]*)>/.exec(args!)?.[1] ?? ""];
    calls.push({ index, pid: Number(pid), name: name!, paths });
  }
  return calls;
}

function checkTrace(text: string, sourceInstanceId: string): string[] {
  const calls = parse(text);
  const inData = (file: string) => file.startsWith(dataDir);
  const flushes = calls.filter((call) => /^f(data)?sync$|^msync$/.test(call.name) && inData(call.paths[0]!));
  const moves = calls.filter((call) => call.paths.length === 2 && inData(call.paths[1]!));
  const problems: string[] = [];
  const flushedBefore = (file: string, index: number) =>
    flushes.some((call) => call.paths[0] === file && call.index < index);
  let checked = 0;

  // 1. temp and staging names: data fsynced before the move, the directory after it.
  for (const move of moves) {
    const [from, to] = move.paths as [string, string];
    if (!isLeftoverName(path.basename(from))) continue;
    checked++;
    if (!flushedBefore(from, move.index)) problems.push(`${from} renamed to ${to} unflushed`);
    const dirFlushed = flushes.some((call) => call.paths[0] === path.dirname(to) && call.index > move.index);
    if (!dirFlushed) problems.push(`directory of ${to} not flushed after the rename`);
  }

  // 2. payloads a snapshot record names: flushed (as themselves, or under a name they were renamed from) before the
  // last write of the record.
  const namesOf = (file: string): string[] => {
    const names = [file];
    for (const move of moves) {
      const [from, to] = move.paths as [string, string];
      if (to === file) names.push(...namesOf(from));
      else if (file.startsWith(`${to}/`)) names.push(...namesOf(path.join(from, path.relative(to, file))));
    }
    return names;
  };
  const snapshotsRoot = path.join(dataDir, "snapshots");
  for (const id of readdirSync(snapshotsRoot).filter((name) => !name.startsWith("."))) {
    const dir = path.join(snapshotsRoot, id);
    const record = path.join(dir, "snapshot.json");
    const lastRecordWrite = moves.filter((move) => move.paths[1] === record).at(-1);
    if (!lastRecordWrite) {
      problems.push(`snapshot ${id}: no durable record write seen`);
      continue;
    }
    for (const name of readdirSync(dir).filter((entry) => entry !== "snapshot.json")) {
      checked++;
      const flushed = namesOf(path.join(dir, name)).some((alias) => flushedBefore(alias, lastRecordWrite.index));
      if (!flushed) problems.push(`snapshot ${id}: ${name} not flushed before its record`);
    }
  }

  // 3. Standby: device state and shared RAM flushed before the record that says so (the last record write).
  const instanceDir = path.join(dataDir, "instances", sourceInstanceId);
  const lastInstanceWrite = moves.filter((move) => move.paths[1] === path.join(instanceDir, "instance.json")).at(-1);
  for (const name of ["standby-device-state", "memory.raw"]) {
    checked++;
    const file = path.join(instanceDir, name);
    if (!existsSync(file)) problems.push(`standby: ${name} missing`);
    else if (!lastInstanceWrite || !flushedBefore(file, lastInstanceWrite.index))
      problems.push(`standby: ${name} not flushed before the record said Standby`);
  }
  console.log(
    `trace: ${calls.length} calls, ${flushes.length} flushes, ${moves.length} renames/links in the data dir; ${checked} checks`,
  );
  return problems;
}
