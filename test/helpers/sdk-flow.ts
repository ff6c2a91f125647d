// The SDK flow of the snapshots contract (@onkernel/hypeman, unchanged): snapshot a running guest, compress it,
// find it by every filter, fork it, delete it. Run against one service, or with commands and reads on two replicas.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type Hypeman from "@onkernel/hypeman";
import { expect } from "vitest";
import { type ApiCall, waitForTick as waitForConsoleTick } from "./console.ts";
import { waitFor } from "./fixtures.ts";
import { apiConsole, capturedBetween, consolePoint, waitForResume } from "./resume.ts";

const waitForTick = (api: ApiCall, name: string, atLeast: number) => waitForConsoleTick(api, name, atLeast, 60_000);

export interface SdkFlowTarget {
  client: Hypeman;
  /** An authenticated GET on the API: for the guest's console log. */
  api: ApiCall;
  /** The worker host's data dir, where snapshots are stored and forked (it holds the image mounts). */
  dataDir: string;
}

/** Whether the snapshot's compressed image is mounted (a capture worker's one shared mount per snapshot). */
export function isMounted(dataDir: string, snapshotId: string): boolean {
  return readFileSync("/proc/mounts", "utf8").includes(` ${path.join(dataDir, "mounts", snapshotId)} `);
}

export async function statusOf(error: Promise<unknown>): Promise<{ status: number; code: string; message: string }> {
  const caught = (await error.then(
    () => undefined,
    (reason: unknown) => reason,
  )) as { status?: number; error?: { code: string; message: string } } | undefined;
  expect(caught, "the call should have failed").toBeDefined();
  return { status: caught!.status!, code: caught!.error!.code, message: caught!.error!.message };
}

/** Snapshots a running guest, compresses it, finds it, forks it, and deletes it. */
export async function runSdkFlow(target: SdkFlowTarget): Promise<void> {
  const source = await target.client.instances.create({ name: "sdk-src", image: "busybox", size: "256MB" });
  expect(source.state).toBe("Running");
  await waitForTick(target.api, "sdk-src", 2);
  const sourceConsole = apiConsole(target.api, "sdk-src");

  const beforeSnapshot = await consolePoint(sourceConsole);
  const snapshot = await target.client.instances.snapshots.create(source.id, {
    kind: "Standby",
    name: "pre-upgrade",
    tags: { team: "backend", env: "staging" },
    compression: { enabled: true, algorithm: "zstd", level: 3 },
  });
  const afterSnapshot = await consolePoint(sourceConsole);
  expect(snapshot).toMatchObject({
    kind: "Standby",
    name: "pre-upgrade",
    source_instance_id: source.id,
    source_instance_name: "sdk-src",
    source_hypervisor: "qemu",
    tags: { team: "backend", env: "staging" },
    compression: { enabled: true, algorithm: "zstd", level: 3 },
  });
  expect(snapshot.id).toMatch(/^[a-z][a-z0-9]{23}$/);
  expect(snapshot.size_bytes).toBeGreaterThan(0);
  expect(["none", "compressing", "compressed"]).toContain(snapshot.compression_state);
  expect((snapshot as { capture_downtime_ms?: number }).capture_downtime_ms).toBeGreaterThan(0);

  const compressed = await waitFor(
    async () => {
      const current = await target.client.snapshots.get(snapshot.id);
      return current.compression_state === "compressed" ? current : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200, what: "compression to finish" },
  );
  expect(compressed.compressed_size_bytes).toBeGreaterThan(0);
  expect(compressed.uncompressed_size_bytes).toBe(256 * 1024 * 1024);
  expect(compressed.compressed_size_bytes!).toBeLessThan(compressed.uncompressed_size_bytes!);
  expect(compressed.size_bytes).toBeLessThan(snapshot.size_bytes);
  expect(compressed.compression_error).toBeNull();

  for (const filter of <Hypeman.SnapshotListParams[]>[
    { kind: "Standby" },
    { name: "pre-upgrade" },
    { source_instance_id: source.id },
    { tags: { team: "backend" } },
    { tags: { team: "backend", env: "staging" } },
  ]) {
    const found = await target.client.snapshots.list(filter);
    expect(
      found.map((item) => item.id),
      JSON.stringify(filter),
    ).toContain(snapshot.id);
  }
  for (const filter of <Hypeman.SnapshotListParams[]>[
    { kind: "Stopped" },
    { name: "other" },
    { tags: { team: "Backend" } },
    { tags: { team: "backend", env: "prod" } },
  ]) {
    const found = await target.client.snapshots.list(filter);
    expect(
      found.map((item) => item.id),
      JSON.stringify(filter),
    ).not.toContain(snapshot.id);
  }

  const fork = await target.client.snapshots.fork(snapshot.id, { name: "sdk-fork" });
  expect(fork).toMatchObject({ name: "sdk-fork", state: "Running", hypervisor: "qemu" });
  // The fork resumes the guest from the snapshot moment: no boot, and its count goes on from the capture.
  const forkConsole = apiConsole(target.api, "sdk-fork");
  await waitForResume(forkConsole, capturedBetween(beforeSnapshot, afterSnapshot));
  // The stored snapshot stays compressed and its record true; the fork maps the image's file through one
  // read-only mount, and no raw copy is made anywhere.
  expect((await target.client.snapshots.get(snapshot.id)).compression_state).toBe("compressed");
  expect(existsSync(path.join(target.dataDir, "snapshots", snapshot.id, "memory.raw"))).toBe(false);
  expect(isMounted(target.dataDir, snapshot.id)).toBe(true);
  expect(existsSync(path.join(target.dataDir, "cache", snapshot.id))).toBe(false);

  await target.client.snapshots.delete(snapshot.id);
  expect((await statusOf(target.client.snapshots.get(snapshot.id))).status).toBe(404);
  expect(existsSync(path.join(target.dataDir, "snapshots", snapshot.id))).toBe(false);
  // Forks made from it keep running.
  await waitForResume(forkConsole, await consolePoint(forkConsole), { ticks: 1 });
  expect((await target.client.instances.get("sdk-fork")).state).toBe("Running");
  // The image stays mounted while the fork maps it, and goes with the last VM that did.
  expect(isMounted(target.dataDir, snapshot.id)).toBe(true);
  await target.client.instances.delete("sdk-fork");
  expect(isMounted(target.dataDir, snapshot.id)).toBe(false);
}
