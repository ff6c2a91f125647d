// Never delete what cannot be understood: snapshot and instance records made unreadable while the capture worker is
// down (garbled JSON, a record the schema refuses, a record that cannot be read at all) survive its restart, moved
// whole to the quarantine with every payload byte, listed on the host and counted in /metrics; a running VM whose
// record is unreadable runs on.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { isAlive, type RunningService, servicePid, startService } from "./helpers/service.ts";

let service: RunningService;

beforeAll(async () => {
  service = await startService({ WORKER_RESTART_MAX_DELAY_MS: "1000" }, { readyTimeoutMs: 120_000 });
}, 180_000);

afterAll(async () => {
  if (process.env.QUARANTINE_TEST_LOG) writeFileSync(process.env.QUARANTINE_TEST_LOG, service?.output() ?? "");
  await service?.stop("SIGTERM");
  service?.remove();
});

/** Every file of a directory with its sha256, by name. */
function fingerprint(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir, { withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map(({ name }) => [
        name,
        createHash("sha256")
          .update(readFileSync(path.join(dir, name)))
          .digest("hex"),
      ]),
  );
}

const BREAK = {
  garbled: (file: string) => writeFileSync(file, '{"snapshot": {"id": '),
  "refused by the schema": (file: string) =>
    writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, "utf8")), version: "seven" })),
  // Reading it fails with EISDIR: as root, the closest to an EACCES or EIO this test can make.
  unreadable: (file: string) => {
    rmSync(file);
    mkdirSync(file);
  },
} as const;

describe("start-up sweeps and unreadable records", () => {
  it("quarantine snapshots and instances whose records cannot be understood, with their payloads, and leave a VM running", async () => {
    const created = await service.api("/instances", { json: { name: "q-run", size: "128MB" } });
    expect(created.status, await created.clone().text()).toBe(201);
    const instance = await jsonOf(created);
    const snapshotIds: string[] = [];
    for (const name of Object.keys(BREAK)) {
      const taken = await service.api(`/instances/q-run/snapshots`, {
        json: { kind: "Standby", name: name.replaceAll(" ", "-") },
      });
      expect(taken.status, await taken.clone().text()).toBe(201);
      snapshotIds.push((await jsonOf(taken)).id);
    }
    const snapshotDir = (id: string) => path.join(service.dataDir, "snapshots", id);
    const instanceDir = path.join(service.dataDir, "instances", instance.id);
    const before = new Map(snapshotIds.map((id) => [id, fingerprint(snapshotDir(id))]));
    const qemu = Number(readFileSync(path.join(instanceDir, "qemu.pid"), "utf8"));

    // The capture worker goes down, the records go bad meanwhile, the supervisor starts it again.
    const worker = servicePid(service, "capture-worker")!;
    process.kill(worker, "SIGSTOP");
    for (const [index, breakRecord] of Object.values(BREAK).entries()) {
      breakRecord(path.join(snapshotDir(snapshotIds[index]!), "snapshot.json"));
    }
    BREAK.garbled(path.join(instanceDir, "instance.json"));
    process.kill(worker, "SIGKILL");

    const host = await waitFor(
      async () => {
        const response = await service.api("/hosts").catch(() => undefined); // the API may be restarting
        const hosts = response?.ok ? await jsonOf(response) : [];
        return hosts[0]?.online && hosts[0].quarantined?.length === 4 ? hosts[0] : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500, what: "the restarted host to list its quarantine" },
    );
    const listed = host.quarantined as Array<{ kind: string; id: string; path: string; reason: string }>;
    expect(listed.map((entry) => `${entry.kind}:${entry.id}`).sort()).toEqual(
      [...snapshotIds.map((id) => `snapshot:${id}`), `instance:${instance.id}`].sort(),
    );
    for (const entry of listed) expect(entry.reason).toMatch(/its record (cannot be read|does not match the schema)/);

    // Every payload byte is there, moved aside; nothing is left where it was.
    for (const id of snapshotIds) {
      const entry = listed.find((candidate) => candidate.id === id)!;
      expect(existsSync(snapshotDir(id))).toBe(false);
      const kept = fingerprint(entry.path);
      for (const [name, hash] of Object.entries(before.get(id)!)) {
        if (name !== "snapshot.json") expect(kept[name], `${id}/${name}`).toBe(hash);
      }
    }
    const instanceEntry = listed.find((entry) => entry.kind === "instance")!;
    expect(existsSync(path.join(instanceEntry.path, "disk.raw"))).toBe(true);
    expect(isAlive(qemu)).toBe(true); // the VM was not stopped for its record

    const metrics = await (await service.api("/metrics")).text();
    expect(metrics).toMatch(new RegExp(`snapfleet_host_quarantined_records\\{host="${host.id}",kind="snapshot"\\} 3`));
    expect(metrics).toMatch(new RegExp(`snapfleet_host_quarantined_records\\{host="${host.id}",kind="instance"\\} 1`));
    expect(service.output()).toMatch(/"level":50.*snapshot with an unreadable record quarantined/);
  }, 300_000);
});
