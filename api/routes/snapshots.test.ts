import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subjectOf } from "../../shared/events/catalog.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import { createTestApp, type TestApp } from "../../test/helpers/app.ts";
import { jsonOf } from "../../test/helpers/fixtures.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";

describe("target_hypervisor on fork and restore", () => {
  let t: TestApp;
  const source = sampleInstance({ state: "Stopped" });
  let standby: Snapshot;
  let stopped: Snapshot;

  beforeAll(async () => {
    t = await createTestApp();
    standby = sampleSnapshot(source, { kind: "Standby" });
    stopped = sampleSnapshot(source, { kind: "Stopped" });
    const writer = connectRedis(t.redisUrl, "worker", 1_000);
    const events = new EventStream(writer, t.prefix);
    await events.append("instance.created", subjectOf.instance(source.id), { instance: source }, { version: 1 });
    await events.append("snapshot.created", subjectOf.snapshot(standby.id), { snapshot: standby }, { version: 1 });
    const last = await events.append(
      "snapshot.created",
      subjectOf.snapshot(stopped.id),
      { snapshot: stopped },
      { version: 1 },
    );
    await closeRedis(writer);
    await t.projector.waitFor(last.event.id, 10_000);
  });
  afterAll(() => t.close());

  it("refuses it on a Standby snapshot even when it names the source's own hypervisor", async () => {
    const fork = await t.request(`/snapshots/${standby.id}/fork`, {
      method: "POST",
      json: { name: "fork-1", target_hypervisor: standby.source_hypervisor },
    });
    expect(fork.status).toBe(400);
    expect(await jsonOf(fork)).toEqual({ code: "invalid_request", message: expect.stringContaining("Stopped") });

    const restore = await t.request(`/instances/${source.id}/snapshots/${standby.id}/restore`, {
      method: "POST",
      json: { target_hypervisor: standby.source_hypervisor },
    });
    expect(restore.status).toBe(400);
    expect((await jsonOf(restore)).code).toBe("invalid_request");
  });

  it("accepts the source's own hypervisor on a Stopped snapshot (then needs its host: 503 here)", async () => {
    const fork = await t.request(`/snapshots/${stopped.id}/fork`, {
      method: "POST",
      json: { name: "fork-2", target_hypervisor: stopped.source_hypervisor },
    });
    expect(fork.status).toBe(503);
    expect(await jsonOf(fork)).toEqual({ code: "unavailable", message: expect.stringContaining("offline") });
  });
});
