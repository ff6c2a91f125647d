import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import type { Db } from "./db/database.ts";
import { PRUNE_BATCH, pruneByAge } from "./retention.ts";

const DAY = 86_400_000;
const NOW = Date.parse("2026-11-25T12:00:00.000Z");
const daysAgo = (days: number) => new Date(NOW - days * DAY).toISOString();
const POLICY = { processedEventsMs: 7 * DAY, deletedResourcesMs: 3 * DAY, webhookDeliveriesMs: 7 * DAY };

let database: TestDatabase;
let db: Db;
beforeAll(async () => {
  database = await openTestDatabase("retention");
  db = database.db;
});
afterAll(() => database.close());

const resource = { resource: "{}", version: 1, host_id: "h", created_at: daysAgo(30) };

async function seed() {
  // More old ids than one batch holds, so pruning takes several.
  const old = Array.from({ length: PRUNE_BATCH * 2 + 7 }, (_, index) => ({
    event_id: `old-${index}`,
    stream_id: `1-${index}`,
    applied_at: daysAgo(8),
  }));
  for (let index = 0; index < old.length; index += 200) {
    await db
      .insertInto("processed_events")
      .values(old.slice(index, index + 200))
      .execute();
  }
  await db
    .insertInto("processed_events")
    .values({ event_id: "new", stream_id: "2-0", applied_at: daysAgo(1) })
    .execute();

  await db
    .insertInto("instances")
    .values([
      { id: "i-gone", name: "a", state: "Stopped", deleted_at: daysAgo(4), ...resource },
      { id: "i-recent", name: "b", state: "Stopped", deleted_at: daysAgo(2), ...resource },
      { id: "i-live", name: "c", state: "Running", deleted_at: null, ...resource },
    ])
    .execute();
  const snapshot = { kind: "Standby", source_instance_id: "i-live", compression_state: "none", name: null };
  await db
    .insertInto("snapshots")
    .values([
      { id: "s-gone", deleted_at: daysAgo(5), ...snapshot, ...resource },
      { id: "s-live", deleted_at: null, ...snapshot, ...resource },
    ])
    .execute();
  await db.insertInto("snapshot_tags").values({ snapshot_id: "s-gone", key: "k", value: "v" }).execute();

  const at = daysAgo(30);
  await db
    .insertInto("webhook_endpoints")
    .values({
      id: "e",
      url: "https://example.com",
      description: "",
      event_types: '["*"]',
      enabled: 1,
      disabled_reason: null,
      sealed_secrets: "x",
      created_at: at,
      updated_at: at,
      last_success_at: null,
      failing_since: null,
    })
    .execute();
  const delivery = (id: string, status: "pending" | "succeeded" | "failed", updatedAt: string) => ({
    id,
    endpoint_id: "e",
    event_id: `evt-${id}`,
    event_type: "snapshot.created",
    stream_id: "1-0",
    body: "{}",
    status,
    attempts: 1,
    manual_retries: 0,
    last_status_code: null,
    last_duration_ms: null,
    last_error: null,
    next_attempt_at: null,
    created_at: at,
    updated_at: updatedAt,
    delivered_at: null,
  });
  await db
    .insertInto("webhook_deliveries")
    .values([
      delivery("d-succeeded-old", "succeeded", daysAgo(8)),
      delivery("d-failed-old", "failed", daysAgo(9)),
      delivery("d-pending-old", "pending", daysAgo(9)),
      delivery("d-succeeded-new", "succeeded", daysAgo(1)),
    ])
    .execute();
  await db
    .insertInto("webhook_delivery_attempts")
    .values({
      outcome_id: "o-1",
      delivery_id: "d-succeeded-old",
      attempted_at: daysAgo(8),
      succeeded: 1,
      status_code: 200,
      duration_ms: 5,
      error: null,
    })
    .execute();
}

const ids = async (table: "instances" | "snapshots" | "webhook_deliveries") =>
  (await db.selectFrom(table).select("id").orderBy("id").execute()).map((row) => row.id);

describe("pruneByAge", () => {
  it("deletes only what is final and older than its retention, in batches, and is a no-op when run again", async () => {
    await seed();
    // A name held for a create whose outcome never came (its deadline passed, no resource), and one still held.
    await db
      .insertInto("name_reservations")
      .values([
        { scope: "instance", name: "lost", resource_id: "i-lost", pending_until: new Date(NOW - 1_000).toISOString() },
        {
          scope: "instance",
          name: "maybe",
          resource_id: "i-maybe",
          pending_until: new Date(NOW + 60_000).toISOString(),
        },
      ])
      .execute();
    const report = await pruneByAge(db, POLICY, NOW);
    expect(report).toEqual({
      processed_events: PRUNE_BATCH * 2 + 7,
      instances: 1,
      snapshots: 1,
      webhook_deliveries: 2,
      idempotency_keys: 0,
      name_reservations: 1,
    });
    expect((await db.selectFrom("name_reservations").select("name").execute()).map((row) => row.name)).toEqual([
      "maybe",
    ]);
    expect(await db.selectFrom("processed_events").select("event_id").execute()).toEqual([{ event_id: "new" }]);
    expect(await ids("instances")).toEqual(["i-live", "i-recent"]);
    expect(await ids("snapshots")).toEqual(["s-live"]);
    expect(await db.selectFrom("snapshot_tags").selectAll().execute()).toEqual([]);
    expect(await ids("webhook_deliveries")).toEqual(["d-pending-old", "d-succeeded-new"]);
    expect(await db.selectFrom("webhook_delivery_attempts").selectAll().execute()).toEqual([]);

    expect(await pruneByAge(db, POLICY, NOW)).toEqual({
      processed_events: 0,
      instances: 0,
      snapshots: 0,
      webhook_deliveries: 0,
      idempotency_keys: 0,
      name_reservations: 0,
    });
  });
});
