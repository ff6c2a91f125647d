// Snapshot schedule CRUD through the official SDK against the in-process app: validation, the BullMQ scheduler's
// next run, an update that keeps the cadence, delete. Runs themselves are tested end to end (test/surface.test.ts).
import type Hypeman from "@onkernel/hypeman";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subjectOf } from "../../shared/events/catalog.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { queuePrefix } from "../../shared/jobs/catalog.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../../shared/redis.ts";
import { createTestApp, sdkClient, type TestApp } from "../../test/helpers/app.ts";
import { jsonOf } from "../../test/helpers/fixtures.ts";
import { forgetPrefix } from "../../test/helpers/redis-loss.ts";
import { sampleInstance } from "../../test/helpers/resources.ts";
import { reconcileSchedules } from "../schedules/reconcile.ts";
import { SCHEDULE_QUEUE, schedulerId, upsertScheduler } from "../schedules/scheduler.ts";

let t: TestApp;
let client: Hypeman;
const instance = sampleInstance({ name: "scheduled-vm" });

beforeAll(async () => {
  t = await createTestApp();
  client = sdkClient(t);
  const redis = connectRedis(t.redisUrl, "producer", 1_000);
  await waitForRedisReady(redis, 5_000);
  const { event } = await new EventStream(redis, t.prefix).append(
    "instance.created",
    subjectOf.instance(instance.id),
    {
      instance,
    },
    { version: 1 },
  );
  await t.projector.waitFor(event.id, 5_000);
  redis.disconnect();
});
afterAll(() => t.close());

describe("snapshot schedules", () => {
  it.each([
    [{ interval: "30s", retention: { max_count: 1 } }, "interval"],
    [{ interval: "1h", retention: {} }, "at least one of max_count or max_age"],
    [{ interval: "1h", retention: { max_count: 1 }, name_prefix: "p".repeat(48) }, "name_prefix"],
    [{ interval: "daily", retention: { max_count: 1 } }, "not a duration"],
  ])("refuses %j", async (body, message) => {
    const response = await t.request(`/instances/${instance.id}/snapshot-schedule`, { method: "PUT", json: body });
    expect(response.status).toBe(400);
    expect(await jsonOf(response)).toMatchObject({
      code: "invalid_request",
      message: expect.stringContaining(message),
    });
  });

  it("creates a schedule on a BullMQ job scheduler, keeps its cadence on a retention change, and deletes it", async () => {
    const before = Date.now();
    const created = await client.instances.snapshotSchedule.update("scheduled-vm", {
      interval: "1h",
      retention: { max_count: 3 },
      metadata: { team: "backend" },
      name_prefix: "hourly",
    });
    expect(created).toMatchObject({
      instance_id: instance.id,
      interval: "1h",
      retention: { max_count: 3 },
      metadata: { team: "backend" },
      name_prefix: "hourly",
      last_run_at: null,
      last_snapshot_id: null,
      last_error: null,
    });
    const next = Date.parse(created.next_run_at);
    expect(next).toBeGreaterThan(before);
    expect(next).toBeLessThanOrEqual(Date.now() + 3_600_000);

    const queue = new Queue(SCHEDULE_QUEUE, {
      connection: { url: t.redisUrl },
      prefix: queuePrefix(t.prefix, SCHEDULE_QUEUE),
    });
    expect((await queue.getJobScheduler(schedulerId(instance.id)))?.every).toBe(3_600_000);

    const updated = await client.instances.snapshotSchedule.update(instance.id, {
      interval: "1h",
      retention: { max_age: "24h" },
    });
    expect(updated).toMatchObject({ retention: { max_age: "24h" }, next_run_at: created.next_run_at });
    expect(await client.instances.snapshotSchedule.get(instance.id)).toEqual(updated);

    await client.instances.snapshotSchedule.delete(instance.id);
    expect((await queue.getJobSchedulers()).map((scheduler) => scheduler.key)).not.toContain(schedulerId(instance.id));
    await queue.close();
    expect((await t.request(`/instances/${instance.id}/snapshot-schedule`)).status).toBe(404);
    expect((await t.request(`/instances/${instance.id}/snapshot-schedule`, { method: "DELETE" })).status).toBe(404);
  });

  it("comes back after Redis lost its scheduler: by a PUT, a GET, and the periodic reconciliation", async () => {
    const redis = connectRedis(t.redisUrl, "worker", 1_000);
    const queue = new Queue(SCHEDULE_QUEUE, {
      connection: { url: t.redisUrl },
      prefix: queuePrefix(t.prefix, SCHEDULE_QUEUE),
    });
    const scheduler = () => queue.getJobScheduler(schedulerId(instance.id));
    const path = `/instances/${instance.id}/snapshot-schedule`;
    const body = { interval: "1h", retention: { max_count: 2 } };
    const created = await jsonOf(await t.request(path, { method: "PUT", json: body }));

    await forgetPrefix(redis, t.prefix);
    expect((await scheduler())?.next ?? undefined).toBeUndefined(); // BullMQ answers a bare key for a lost one
    const again = await jsonOf(await t.request(path, { method: "PUT", json: body })); // the same interval
    expect((await scheduler())?.every).toBe(3_600_000);
    expect(again.next_run_at).toBe(created.next_run_at);

    await forgetPrefix(redis, t.prefix);
    const shown = await jsonOf(await t.request(path));
    expect(shown.next_run_at).toBe(new Date((await scheduler())!.next!).toISOString());

    await forgetPrefix(redis, t.prefix);
    await upsertScheduler(t.deps, "no-such-instance", 3_600_000); // a scheduler whose schedule row is gone
    expect(await reconcileSchedules(t.deps, t.deps.log)).toEqual({ restored: 1, removed: 1 });
    expect((await scheduler())?.every).toBe(3_600_000);
    expect((await queue.getJobSchedulers()).map((found) => found.key)).toEqual([schedulerId(instance.id)]);
    // It fires again: its next run waits on the queue.
    const delayed = await queue.getDelayed();
    expect(delayed.map((job) => job.name)).toEqual(["snapshot.schedule.run"]);
    expect(await reconcileSchedules(t.deps, t.deps.log)).toEqual({ restored: 0, removed: 0 });

    await client.instances.snapshotSchedule.delete(instance.id);
    await queue.close();
    await closeRedis(redis);
  });
});
