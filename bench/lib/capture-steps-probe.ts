// Probe: the capture's own step timings (`running guest captured`) through the real service, for a plain 256 MiB
// guest and a 256 MiB guest with a 4 GiB disk holding 1 GiB of data, set up and measured as bench/snapshots.ts does.
// node --import tsx bench/lib/capture-steps-probe.ts --rounds 5 [--plain-mib 256] [--big-disk false]
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { startService } from "../../test/helpers/service.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    "plain-mib": { type: "string", default: "256" },
    "big-disk": { type: "string", default: "true" },
  },
});
const service = await startService({ LOG_LEVEL: "info" });

// biome-ignore lint/suspicious/noExplicitAny: probe code reads the API's JSON loosely
async function call(pathAndQuery: string, init: { method?: string; json?: unknown } = {}): Promise<any> {
  const response = await service.api(pathAndQuery, init);
  const text = await response.text();
  if (!response.ok) throw new Error(`${pathAndQuery}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

async function boot(name: string, memoryMib: number, diskMib: number) {
  const instance = await call("/instances", {
    json: { name, size: `${memoryMib}MB`, overlay_size: `${diskMib}MB`, vcpus: 1 },
  });
  const log = path.join(service.dataDir, "instances", instance.id, "console.log");
  for (;;) {
    const text = (() => {
      try {
        return readFileSync(log, "utf8");
      } catch {
        return "";
      }
    })();
    if ([...text.matchAll(/^tick \d+/gm)].length >= 2) return instance;
    await sleep(50);
  }
}

async function measure(label: string, instance: { id: string; name: string }) {
  const memory = path.join(service.dataDir, "instances", instance.id, "memory.raw");
  const scratch = path.join(service.dataDir, "probe-cp-memory.raw");
  for (let round = 0; round < Number(flags.rounds); round++) {
    const snapshot = await call(`/instances/${instance.name}/snapshots`, { json: { kind: "Standby" } });
    await call(`/snapshots/${snapshot.id}`, { method: "DELETE" });
    const started = performance.now();
    execFileSync("cp", ["--sparse=always", memory, scratch]);
    const cpMs = Math.round(performance.now() - started);
    rmSync(scratch, { force: true });
    const line = service
      .output()
      .split("\n")
      .findLast((entry) => entry.includes('"running guest captured"') && entry.includes(instance.id));
    const { level, time, pid, hostname, msg, instanceId, ...steps } = JSON.parse(line ?? "{}");
    console.log(JSON.stringify({ label, round, cpMs, ...steps, load: loadavg()[0]?.toFixed(2) }));
    await sleep(500);
  }
}

try {
  const plainMib = Number(flags["plain-mib"]);
  const plain = await boot("probe-plain", plainMib, 256);
  await measure(`${plainMib} MiB`, plain);
  await call(`/instances/${plain.name}`, { method: "DELETE" });
  if (flags["big-disk"] !== "false") {
    const big = await boot("probe-big-disk", 256, 4096);
    const disk = path.join(service.dataDir, "instances", big.id, "disk.raw");
    execFileSync("dd", ["if=/dev/urandom", `of=${disk}`, "bs=1M", "count=1024", "seek=1024", "conv=notrunc"], {
      stdio: "ignore",
    });
    await measure("256 MiB, 4 GiB disk with 1 GiB of data", big);
    await call(`/instances/${big.name}`, { method: "DELETE" });
  }
} finally {
  await service.stop("SIGTERM").catch(() => {});
  service.remove();
}
