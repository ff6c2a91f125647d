// A Standby capture on a host whose snapshots directory is a full file system (a 40 MiB tmpfs): 507
// insufficient_storage naming the host, no partial files, and the source keeps running.
import { mkdirSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { run } from "../shared/hypervisor/exec.ts";
import { waitForTick } from "./helpers/console.ts";
import { jsonOf } from "./helpers/fixtures.ts";
import { describeWith } from "./helpers/needs.ts";
import { apiConsole, consolePoint, waitForResume } from "./helpers/resume.ts";
import { type RunningService, startService } from "./helpers/service.ts";

describeWith("root", "capture on a full disk", () => {
  let service: RunningService;
  let snapshotsDir: string;
  let mounted = false;

  beforeAll(async () => {
    service = await startService();
    snapshotsDir = path.join(service.dataDir, "snapshots");
    mkdirSync(snapshotsDir, { recursive: true });
    await run("mount", ["-t", "tmpfs", "-o", "size=40m", "tmpfs", snapshotsDir]);
    mounted = true;
  }, 60_000);

  afterAll(async () => {
    await service?.stop("SIGTERM");
    if (mounted) await run("umount", ["--lazy", snapshotsDir]);
    service?.remove();
  });

  it("answers 507 insufficient_storage naming the host, leaves no files, and keeps the source running", async () => {
    const created = await service.api("/instances", { json: { name: "full-src", size: "256MB" } });
    expect(created.status).toBe(201);
    await waitForTick(service.api, "full-src", 1, 60_000);
    const source = apiConsole(service.api, "full-src");
    const beforeSnapshot = await consolePoint(source);

    const response = await service.api("/instances/full-src/snapshots", { json: { kind: "Standby", name: "big" } });
    expect(response.status).toBe(507);
    const body = await jsonOf(response);
    expect(body.code).toBe("insufficient_storage");
    expect(body.message).toContain(`host ${service.hostId()}`);
    expect(body.message).toContain("no space left on device");

    expect(readdirSync(snapshotsDir)).toEqual([]);
    expect(await jsonOf(await service.api("/snapshots"))).toEqual([]);
    expect((await jsonOf(await service.api("/instances/full-src"))).state).toBe("Running");
    // The source ran on through the failed capture: no reboot, no gap in its count.
    await waitForResume(source, beforeSnapshot);
  });
});
