// The `snapfleet` binary against the whole service on one real QEMU guest: create, list, logs, a compressed snapshot
// with its progress bars, watch, fork, events tail and deletes; then the service's /metrics after all that.
import { execFile } from "node:child_process";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForTick } from "./helpers/console.ts";
import { promtoolProblems, sampleValue } from "./helpers/prometheus.ts";
import { BOOT_LINE } from "./helpers/resume.ts";
import { type RunningService, startService } from "./helpers/service.ts";

const BIN = path.resolve("cli/bin.mjs");

let service: RunningService;

beforeAll(async () => {
  service = await startService();
}, 60_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real binary; the key comes from SNAPFLEET_API_KEY unless `env` says otherwise. */
function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env,
      SNAPFLEET_URL: service.baseUrl,
      SNAPFLEET_API_KEY: service.apiKey(),
      ...env,
    };
    for (const [key, value] of Object.entries(env)) if (value === undefined) delete childEnv[key];
    execFile(process.execPath, [BIN, ...args], { env: childEnv, timeout: 120_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const json = (run: Run) => {
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout);
};

describe("snapfleet CLI", () => {
  let snapshotId: string;

  it("lists hosts with the key from DATA_DIR/api-key when no flag or env gives one", async () => {
    const hosts = json(
      await cli(["hosts", "ls", "--json"], { SNAPFLEET_API_KEY: undefined, DATA_DIR: service.dataDir }),
    );
    expect(hosts).toEqual([expect.objectContaining({ id: service.hostId(), online: true })]);
  });

  it("takes the URL and key from flags, and fails with one line and exit 1 on a bad key", async () => {
    const flags = ["--url", service.baseUrl, "--api-key", service.apiKey()];
    const ok = await cli([...flags, "hosts", "ls"], { SNAPFLEET_URL: "http://127.0.0.1:1", SNAPFLEET_API_KEY: "x" });
    expect(ok.stdout).toMatch(new RegExp(`^ID +ONLINE +HYPERVISORS +LAST_SEEN\\n${service.hostId()} +yes +qemu`));
    const bad = await cli(["hosts", "ls"], { SNAPFLEET_API_KEY: "wrong-key-0123456789" });
    expect(bad).toEqual({ code: 1, stdout: "", stderr: "error: 401 unauthorized: invalid api key\n" });
  });

  it("creates an instance, lists it and reads its console", async () => {
    const created = json(await cli(["instances", "create", "cli-src", "--size", "256MB", "--json"]));
    expect(created).toEqual(expect.objectContaining({ name: "cli-src", state: "Running", size: "256MB" }));
    const table = await cli(["instances", "ls"]);
    expect(table.stdout).toMatch(/^ID +NAME +STATE +SIZE +HOST +CREATED\n\S+ +cli-src +Running +256MB /);
    // The guest's own lines: its boot line and its first tick.
    await waitForTick(service.api, "cli-src", 1);
    const lines = json(await cli(["instances", "logs", "cli-src", "--tail", "1000", "--json"]));
    expect(lines).toEqual(expect.arrayContaining([BOOT_LINE, "tick 1"]));
    // Without --json: the console as it is, one guest line per line.
    const plain = await cli(["instances", "logs", "cli-src", "--tail", "1000"]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout.split("\n")).toEqual(expect.arrayContaining([BOOT_LINE, "tick 1"]));
  });

  it("snapshots with progress bars for capture and compression, fed by the event stream", async () => {
    const run = await cli(["snapshots", "create", "cli-src", "--name", "base", "--compression", "zstd:1"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/capture +\|.*\| 100% \w+, paused [\d.]+ ms/);
    expect(run.stderr).toMatch(/compress +\|.*\| 100% compressed [\d.]+ MiB \([\d.]+% of [\d.]+ MiB\)/);
    expect(run.stdout).toMatch(/^COMPRESSION +compressed$/m);
    snapshotId = /^ID +(\w+)$/m.exec(run.stdout)![1]!;
    const listed = json(await cli(["snapshots", "ls", "--json"]));
    expect(listed).toEqual([
      expect.objectContaining({ id: snapshotId, name: "base", compression_state: "compressed" }),
    ]);
  });

  it("watches a compressed snapshot (returns at once) and tails its events from a position", async () => {
    const watched = json(await cli(["snapshots", "watch", snapshotId, "--json"]));
    expect(watched.compression_state).toBe("compressed");
    const tail = await cli([
      "events",
      "tail",
      "--after",
      "0",
      "--snapshot",
      snapshotId,
      "--types",
      "snapshot.compression.*",
      "--count",
      "2",
      "--json",
    ]);
    const events = tail.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events.map((event) => event.type)).toEqual(["snapshot.compression.started", expect.any(String)]);
    expect(events.every((event) => event.subject === `snapshot:${snapshotId}`)).toBe(true);
  });

  it("forks with a progress bar, then removes what it made", async () => {
    const fork = await cli(["snapshots", "fork", snapshotId, "--name", "cli-fork"]);
    expect(fork.code, fork.stderr).toBe(0);
    expect(fork.stderr).toMatch(/fork +\|.*\| 100% \w+ Running/);
    expect(fork.stdout).toMatch(/^NAME +cli-fork$/m);
    const missing = await cli(["snapshots", "fork", "no-such-snapshot", "--name", "x"]);
    expect([missing.code, missing.stderr]).toEqual([1, expect.stringMatching(/^error: 404 not_found: /)]);
    expect(json(await cli(["instances", "rm", "cli-fork", "--json"]))).toEqual({ deleted: ["cli-fork"] });
    const removed = await cli(["snapshots", "rm", snapshotId]);
    expect(removed.stdout).toBe(`deleted ${snapshotId}\n`);
  });

  it("leaves its traces in /metrics (checked by promtool) and one request log line per call", async () => {
    const text = await (await service.api("/metrics")).text();
    expect(promtoolProblems(text)).toEqual([]);
    expect(sampleValue(text, "snapfleet_snapshot_capture_downtime_seconds_count")).toBe(1);
    const compression = { algorithm: "zstd", level: "1", result: "success" };
    expect(sampleValue(text, "snapfleet_snapshot_compression_jobs_total", compression)).toBe(1);
    expect(sampleValue(text, "snapfleet_snapshot_compression_ratio_count", { algorithm: "zstd" })).toBe(1);
    const fork = { target_state: "Running", compression_state: "compressed", status: "ok" };
    expect(sampleValue(text, "snapfleet_snapshot_fork_duration_seconds_count", fork)).toBe(1);
    const forkRoute = { method: "POST", route: "/snapshots/:snapshotId/fork" };
    expect(sampleValue(text, "snapfleet_http_requests_total", { ...forkRoute, status: "201" })).toBe(1);
    expect(sampleValue(text, "snapfleet_http_requests_total", { ...forkRoute, status: "404" })).toBe(1);
    expect(sampleValue(text, "snapfleet_queue_jobs", { queue: `host-${service.hostId()}`, state: "active" })).toBe(0);
    const requestLines = service
      .output()
      .split("\n")
      .filter((line) => line.includes('"msg":"request"') && line.includes('"route":"/snapshots/:snapshotId/fork"'));
    expect(requestLines).toHaveLength(2);
    expect(JSON.parse(requestLines[0]!)).toEqual(expect.objectContaining({ name: "api", req_id: expect.any(String) }));
  });
});
