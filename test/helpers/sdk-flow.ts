// The SDK flow of the snapshots contract (@onkernel/hypeman, unchanged): snapshot a running guest, compress it,
// find it by every filter, fork it, delete it. Run against one service, or with commands and reads on two replicas.
import { existsSync } from "node:fs";
import path from "node:path";
import type Hypeman from "@onkernel/hypeman";
import { expect } from "vitest";
import { waitFor } from "./fixtures.ts";

export type ApiCall = (pathAndQuery: string) => Promise<Response>;

export interface SdkFlowTarget {
  client: Hypeman;
  /** An authenticated GET on the API: for the guest's console log. */
  api: ApiCall;
  /** The worker host's data dir, where snapshots are stored. */
  dataDir: string;
}

/** The `tick N` lines a guest printed so far. */
export async function ticks(api: ApiCall, name: string): Promise<number[]> {
  const response = await api(`/instances/${name}/logs?tail=2000`);
  return (await response.text())
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .flatMap((line) => /^tick (\d+)$/.exec((JSON.parse(line.slice(6)) as string).trim())?.[1] ?? [])
    .map(Number);
}

export async function waitForTick(api: ApiCall, name: string, atLeast: number): Promise<number> {
  return waitFor(
    async () => {
      const latest = Math.max(-1, ...(await ticks(api, name)));
      return latest >= atLeast ? latest : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250, what: `${name} to reach tick ${atLeast}` },
  );
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

  const snapshot = await target.client.instances.snapshots.create(source.id, {
    kind: "Standby",
    name: "pre-upgrade",
    tags: { team: "backend", env: "staging" },
    compression: { enabled: true, algorithm: "zstd", level: 3 },
  });
  const ticksAtSnapshot = await ticks(target.api, "sdk-src");
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
  // The fork resumes the guest from the snapshot moment: its first tick follows the ones logged by then.
  const forkTicks = await waitFor(
    async () => {
      const seen = await ticks(target.api, "sdk-fork");
      return seen.length >= 2 ? seen : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250, what: "the fork to tick" },
  );
  const lastAtSnapshot = Math.max(...ticksAtSnapshot);
  expect(forkTicks[0]).toBeGreaterThanOrEqual(lastAtSnapshot);
  expect(forkTicks[0]).toBeLessThanOrEqual(lastAtSnapshot + 2);
  // The stored snapshot stays compressed and its record true.
  expect((await target.client.snapshots.get(snapshot.id)).compression_state).toBe("compressed");
  expect(existsSync(path.join(target.dataDir, "snapshots", snapshot.id, "memory.raw"))).toBe(false);

  await target.client.snapshots.delete(snapshot.id);
  expect((await statusOf(target.client.snapshots.get(snapshot.id))).status).toBe(404);
  expect(existsSync(path.join(target.dataDir, "snapshots", snapshot.id))).toBe(false);
  // Forks made from it keep running.
  const before = Math.max(...(await ticks(target.api, "sdk-fork")));
  await waitForTick(target.api, "sdk-fork", before + 1);
  expect((await target.client.instances.get("sdk-fork")).state).toBe("Running");
}
