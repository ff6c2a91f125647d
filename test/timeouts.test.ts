// A 504 is not a failure: the host finishes (or rolls back) what it started, the name stays held until the outcome
// is known, and the 504 says where to look.
import { writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { expectConverged } from "./helpers/convergence.ts";
import { jsonOf, tempDir, waitFor } from "./helpers/fixtures.ts";
import { type RunningService, startService } from "./helpers/service.ts";

let service: RunningService;
const armed = tempDir("timeouts");
const armedFile = path.join(armed.dir, "armed");

beforeAll(async () => {
  writeFileSync(armedFile, "");
  service = await startService({
    JOB_RESULT_TIMEOUT_MS: "2500",
    HOST_JOB_LOCK_MS: "3000",
    ANNOUNCE_INTERVAL_MS: "3000",
    WORKER_RESTART_MAX_DELAY_MS: "1000",
    CRASH_POINTS_FILE: armedFile,
  });
  // On a loaded machine even this may outlast the short wait: then it shows up a little later.
  const created = await service.api("/instances", { json: { name: "slow", size: "128MB" } });
  expect([201, 504], await created.clone().text()).toContain(created.status);
  await waitFor(async () => ((await service.api("/instances/slow")).status === 200 ? true : undefined), {
    timeoutMs: 30_000,
    what: "the instance",
  });
}, 120_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
  armed.remove();
});

it("a capture the API stopped waiting for completes, keeps its name held meanwhile, and shows up", async () => {
  // The worker dies after writing the snapshot's record: the API gives up before the restarted worker re-runs it.
  writeFileSync(armedFile, "snapshot-capture.after-record\n");
  const first = await service.api("/instances/slow/snapshots", { json: { kind: "Standby", name: "nightly" } });
  expect(first.status).toBe(504);
  const { code, message } = await jsonOf(first);
  expect(code).toBe("unavailable");
  const id = /GET \/snapshots\/([a-z0-9]+)/.exec(message)?.[1];
  expect(id, message).toBeDefined();
  // A client retrying at once does not get a second snapshot of that name.
  const retry = await service.api("/instances/slow/snapshots", { json: { kind: "Standby", name: "nightly" } });
  expect(retry.status).toBe(409);
  const snapshot = await waitFor(
    async () => {
      const response = await service.api(`/snapshots/${id}`);
      return response.status === 200 ? jsonOf(response) : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250, what: "the snapshot to show up" },
  );
  expect(snapshot.name).toBe("nightly");
  await expectConverged((pathAndQuery) => service.api(pathAndQuery), [service.dataDir]);
}, 120_000);
