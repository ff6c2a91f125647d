// The read model converges to the hosts' truth with no manual step after the loss of events: Redis flushed, Redis
// replaced by an empty server, the read model's file deleted. Real guests, real Redis, the whole service.
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectConverged } from "./helpers/convergence.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { startTestRedis, type TestRedis } from "./helpers/redis-server.ts";
import { type RunningService, servicePid, startService } from "./helpers/service.ts";

let redis: TestRedis;
let service: RunningService;

beforeAll(async () => {
  redis = await startTestRedis();
  service = await startService({
    REDIS_URL: redis.url,
    ANNOUNCE_INTERVAL_MS: "3000",
    WORKER_RESTART_MAX_DELAY_MS: "1000",
  });
  const created = await service.api("/instances", { json: { name: "conv", size: "128MB" } });
  expect(created.status, await created.clone().text()).toBe(201);
}, 120_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
  await redis?.stop();
});

const converged = () => expectConverged((pathAndQuery) => service.api(pathAndQuery), [service.dataDir], 30_000);

async function snapshot(name: string) {
  const response = await service.api("/instances/conv/snapshots", { json: { kind: "Standby", name } });
  expect(response.status, await response.clone().text()).toBe(201);
  return jsonOf(response);
}

/** After Redis lost its data the host directory is empty until the next heartbeat: wait for the host to be back. */
async function hostOnline() {
  await waitFor(
    async () => {
      const hosts = await service.api("/hosts").then((response) => (response.ok ? jsonOf(response) : []));
      return hosts.some((host: { online: boolean }) => host.online) ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250, what: "the host to be online again" },
  );
}

describe("convergence after lost events", () => {
  it("Redis flushed mid-flow: later changes to earlier resources still show", async () => {
    const kept = await snapshot("kept");
    const doomed = await snapshot("doomed");
    const client = new Redis(redis.url);
    await client.flushall();
    client.disconnect();
    await hostOnline();
    expect((await service.api(`/snapshots/${doomed.id}`, { method: "DELETE" })).status).toBe(204);
    expect((await service.api("/instances/conv/stop", { method: "POST" })).status).toBe(200);
    await converged();
    expect((await service.api(`/snapshots/${doomed.id}`)).status).toBe(404);
    expect((await jsonOf(await service.api(`/snapshots/${kept.id}`))).id).toBe(kept.id);
    expect((await jsonOf(await service.api("/instances/conv"))).state).toBe("Stopped");
  });

  it("Redis replaced by an empty server: the hosts announce everything again on reconnect", async () => {
    await redis.kill();
    await redis.restartEmpty();
    await hostOnline();
    expect((await service.api("/instances/conv/start", { method: "POST" })).status).toBe(200);
    const after = await snapshot("after-replace");
    await converged();
    expect((await jsonOf(await service.api(`/snapshots/${after.id}`))).name).toBe("after-replace");
    expect((await jsonOf(await service.api("/instances/conv"))).state).toBe("Running");
  });

  it("Redis replaced while a standby's compression waits out its delay: the host queues it again", async () => {
    const standby = await service.api("/instances/conv/standby", {
      json: { compression: { enabled: true, algorithm: "zstd", level: 1 }, compression_delay: "8s" },
    });
    expect(standby.status, await standby.clone().text()).toBe(200);
    const memory = path.join(service.dataDir, "instances", (await jsonOf(standby)).id, "memory.raw");
    await redis.kill();
    // The delayed job was still waiting in the Redis that is now gone (else this case would prove nothing).
    expect(existsSync(`${memory}.sfc`)).toBe(false);
    await redis.restartEmpty();
    await hostOnline();
    await waitFor(() => existsSync(`${memory}.sfc`) && !existsSync(memory), {
      timeoutMs: 60_000,
      what: "the standby memory to be compressed by a job queued again from the host's record of the standby",
    });
    expect((await service.api("/instances/conv/restore", { method: "POST" })).status).toBe(200);
  });

  it("the read model's file deleted: the restarted API rebuilds it from the hosts", async () => {
    const apiPid = servicePid(service, "api");
    expect(apiPid).toBeDefined();
    process.kill(apiPid!, "SIGKILL");
    for (const suffix of ["", "-wal", "-shm"])
      rmSync(path.join(service.dataDir, `snapfleet.db${suffix}`), { force: true });
    await waitFor(
      async () => ((await fetch(`${service.baseUrl}/health`).catch(() => undefined))?.ok ? true : undefined),
      {
        timeoutMs: 30_000,
        what: "the API to come back",
      },
    );
    await converged();
    // Names are held again: a second instance named like a live one is refused.
    const duplicate = await service.api("/instances", { json: { name: "conv", size: "128MB" } });
    expect(duplicate.status).toBe(409);
  });
});
