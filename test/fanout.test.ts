// Fan-out on real QEMU guests: concurrent forks of one compressed snapshot of a dense guest map the snapshot's RAM
// from its mounted image, lazily and shared: each fork holds of the guest's RAM only the pages it touched (not the
// filled RAM it never read again), and those pages are shared with the other forks through the page cache. Behaviour,
// not timings: `npm run bench:snapshots` prints the fan-out's figures.
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { consoleTicks, waitForTick } from "./helpers/console.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { type RunningService, startService } from "./helpers/service.ts";

const FORKS = 4;
const RAM_MIB = 256;
const FILL_PERCENT = 80;

let service: RunningService;

beforeAll(async () => {
  service = await startService();
}, 120_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
});

/** Kilobyte fields of the mapping of `file` in a QEMU's smaps, summed over its entries. */
function mappingOf(instanceId: string, file: string): { rss: number; pss: number; sharedClean: number } {
  const pid = readFileSync(path.join(service.dataDir, "instances", instanceId, "qemu.pid"), "utf8").trim();
  const totals = { rss: 0, pss: 0, sharedClean: 0 };
  let inside = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inside = line.trimEnd().endsWith(file);
    else if (inside) {
      const [, field, kib] = /^(\w+):\s+(\d+) kB/.exec(line) ?? [];
      if (field === "Rss") totals.rss += Number(kib);
      if (field === "Pss") totals.pss += Number(kib);
      if (field === "Shared_Clean") totals.sharedClean += Number(kib);
    }
  }
  return totals;
}

it("forks of a dense guest's compressed snapshot boot side by side, map its RAM lazily and share the pages they read", async () => {
  const source = await jsonOf(
    await service.api("/instances", {
      json: { name: "fan-src", size: `${RAM_MIB}MB`, memory_load: { fill_percent: FILL_PERCENT } },
    }),
  );
  // The guest counts only once its RAM is filled.
  const before = await waitForTick(service.api, "fan-src", 1, 300_000);
  const created = await service.api("/instances/fan-src/snapshots", {
    json: { kind: "Standby", compression: { enabled: true, algorithm: "zstd", level: 1 } },
  });
  expect(created.status, await created.clone().text()).toBe(201);
  const snapshot = await jsonOf(created);
  await waitFor(
    async () =>
      (await jsonOf(await service.api(`/snapshots/${snapshot.id}`))).compression_state === "compressed" || undefined,
    { timeoutMs: 300_000, what: "compression" },
  );
  await service.api(`/instances/${source.id}`, { method: "DELETE" });

  const forks = await Promise.all(
    Array.from({ length: FORKS }, async (_, index) => {
      const response = await service.api(`/snapshots/${snapshot.id}/fork`, { json: { name: `fan-${index}` } });
      expect(response.status, await response.clone().text()).toBe(201);
      return jsonOf(response);
    }),
  );
  // Each resumed the guest where it was captured: it counts on from there.
  for (const fork of forks) await waitForTick(service.api, fork.name, before + 1, 120_000);
  expect((await consoleTicks(service.api, forks[0].name)).length).toBeGreaterThan(0);

  const image = path.join("mounts", snapshot.id, "memory.raw");
  const filledKib = (RAM_MIB * 1024 * FILL_PERCENT) / 100;
  for (const fork of forks) {
    const mapping = mappingOf(fork.id, image);
    // Mapped from the image (the mapping exists and holds pages), lazily: well under the RAM the guest filled.
    expect(mapping.rss, `${fork.name}: ${JSON.stringify(mapping)}`).toBeGreaterThan(0);
    expect(mapping.rss, `${fork.name}: ${JSON.stringify(mapping)}`).toBeLessThan(filledKib / 2);
    // Shared with the other forks: clean page-cache pages, each counted in part (PSS) rather than whole.
    expect(mapping.sharedClean, `${fork.name}: ${JSON.stringify(mapping)}`).toBeGreaterThan(0);
    expect(mapping.pss, `${fork.name}: ${JSON.stringify(mapping)}`).toBeLessThan(mapping.rss);
  }
  // They booted side by side: a QEMU was started while another was still starting or loading its state, not one
  // after the other behind the snapshot's lock.
  const intervals = forks.map((fork) => bootInterval(fork.id)).sort((left, right) => left.started - right.started);
  const overlapping = intervals.slice(1).filter((interval, index) => interval.started < intervals[index]!.loaded);
  expect(overlapping.length, JSON.stringify(intervals)).toBeGreaterThan(0);
  for (const fork of forks) await service.api(`/instances/${fork.id}`, { method: "DELETE" });
}, 900_000);

/** When the capture worker started the fork's QEMU and when that QEMU was running the guest's loaded state. */
function bootInterval(instanceId: string): { started: number; loaded: number } {
  const line = service
    .output()
    .split("\n")
    .filter((entry) => entry.includes('"qemu started"') && entry.includes(instanceId))
    .map((entry) => JSON.parse(entry) as { time: string; incoming?: boolean; bootMs: number })
    .find((entry) => entry.incoming);
  if (!line) throw new Error(`no "qemu started" line for ${instanceId}`);
  const loaded = Date.parse(line.time);
  return { started: loaded - line.bootMs, loaded };
}
