// The delivery log in the read model: one row per (endpoint, event), attempts applied from the worker's outcomes.
import { type Selectable, sql } from "kysely";
import { conflict, invalidState, notFound } from "../../shared/errors.ts";
import type { TypedEvent } from "../../shared/events/catalog.ts";
import { newId } from "../../shared/ids.ts";
import type { DeliveryOutcome } from "../../shared/webhooks/mirror.ts";
import type { Db } from "../db/database.ts";
import { needsRowLocks } from "../db/dialect.ts";
import type { WebhookDeliveriesTable } from "../db/schema.ts";
import type { WebhookDelivery } from "./schemas.ts";

type DeliveryRow = Selectable<WebhookDeliveriesTable>;
export type Transaction = Parameters<Parameters<ReturnType<Db["transaction"]>["execute"]>[0]>[0];

/** What goes on the wire: Standard Webhooks' {type, timestamp, data}, data being the event's (the full resource). */
export function deliveryBody(event: TypedEvent): string {
  return JSON.stringify({ type: event.type, timestamp: event.occurred_at, data: event.data });
}

export interface DeliveryToSend {
  deliveryId: string;
  endpointId: string;
  eventId: string;
  body: string;
}

/**
 * Records a delivery per endpoint for the event; returns those that still need a job. A delivery already
 * recorded (the dispatcher replaying after a crash) is returned only if no attempt was ever reported for it.
 */
export async function recordDeliveries(
  trx: Transaction,
  endpointIds: readonly string[],
  event: TypedEvent,
  streamId: string,
): Promise<DeliveryToSend[]> {
  const body = deliveryBody(event);
  const now = new Date().toISOString();
  const toSend: DeliveryToSend[] = [];
  for (const endpointId of endpointIds) {
    await trx
      .insertInto("webhook_deliveries")
      .values({
        id: newId(),
        endpoint_id: endpointId,
        event_id: event.id,
        event_type: event.type,
        stream_id: streamId,
        body,
        status: "pending",
        attempts: 0,
        manual_retries: 0,
        last_status_code: null,
        last_duration_ms: null,
        last_error: null,
        next_attempt_at: now,
        created_at: now,
        updated_at: now,
        delivered_at: null,
      })
      .onConflict((conflicting) => conflicting.columns(["endpoint_id", "event_id"]).doNothing())
      .execute();
    const row = await trx
      .selectFrom("webhook_deliveries")
      .select(["id", "status", "attempts"])
      .where("endpoint_id", "=", endpointId)
      .where("event_id", "=", event.id)
      .executeTakeFirstOrThrow();
    if (row.status === "pending" && row.attempts === 0) {
      toSend.push({ deliveryId: row.id, endpointId, eventId: event.id, body });
    }
  }
  return toSend;
}

export async function listDeliveries(
  db: Db,
  endpointId: string,
  filter: { status?: WebhookDelivery["status"]; limit: number },
): Promise<WebhookDelivery[]> {
  let query = db
    .selectFrom("webhook_deliveries")
    .selectAll()
    .where("endpoint_id", "=", endpointId)
    .orderBy("created_at", "desc")
    .orderBy("stream_id", "desc")
    .limit(filter.limit);
  if (filter.status) query = query.where("status", "=", filter.status);
  return (await query.execute()).map(toResource);
}

/** Puts a finished delivery back to pending for a manual retry; the caller then enqueues it. */
export async function reopenDelivery(trx: Transaction, endpointId: string, deliveryId: string) {
  const endpoint = await trx
    .selectFrom("webhook_endpoints")
    .select(["enabled"])
    .where("id", "=", endpointId)
    .executeTakeFirst();
  if (!endpoint) throw notFound("webhook endpoint", endpointId);
  const row = await trx
    .selectFrom("webhook_deliveries")
    .selectAll()
    .where("id", "=", deliveryId)
    .where("endpoint_id", "=", endpointId)
    .$if(needsRowLocks(trx), (query) => query.forUpdate())
    .executeTakeFirst();
  if (!row) throw notFound("delivery", deliveryId);
  if (endpoint.enabled !== 1) throw invalidState(`webhook endpoint ${endpointId} is disabled: enable it first`);
  if (row.status === "pending") throw conflict(`delivery ${deliveryId} is still being attempted`);
  const now = new Date().toISOString();
  const reopened: DeliveryRow = {
    ...row,
    status: "pending",
    manual_retries: row.manual_retries + 1,
    next_attempt_at: now,
    updated_at: now,
  };
  await trx.updateTable("webhook_deliveries").set(reopened).where("id", "=", deliveryId).execute();
  return {
    delivery: toResource(reopened),
    jobId: `${deliveryId}-retry-${reopened.manual_retries}`,
    body: row.body,
    previous: row,
  };
}

/** Undoes a reopen whose job could not be queued, unless something changed the delivery since. */
export async function restoreDelivery(db: Db, previous: DeliveryRow): Promise<void> {
  await db
    .updateTable("webhook_deliveries")
    .set(previous)
    .where("id", "=", previous.id)
    .where("status", "=", "pending")
    .where("manual_retries", "=", previous.manual_retries + 1)
    .execute();
}

/**
 * Applies one attempt outcome (idempotent by its outcome id) to the delivery and its endpoint's health.
 * Returns why the endpoint must now be disabled, if it must.
 */
export async function applyOutcome(
  trx: Transaction,
  outcomeId: string,
  outcome: DeliveryOutcome,
  disableAfterMs: number,
): Promise<string | undefined> {
  // Inserted only while the delivery exists (its endpoint may have been deleted meanwhile): a failed statement would
  // abort the whole transaction on PostgreSQL, so no foreign-key error is provoked and caught.
  const inserted = await trx
    .insertInto("webhook_delivery_attempts")
    .columns(["outcome_id", "delivery_id", "attempted_at", "succeeded", "status_code", "duration_ms", "error"])
    .expression(
      trx
        .selectFrom("webhook_deliveries")
        .select([
          typed(outcomeId, "text").as("outcome_id"),
          "id",
          typed(outcome.attempted_at, "text").as("attempted_at"),
          typed(outcome.succeeded ? 1 : 0, "integer").as("succeeded"),
          typed(outcome.status_code, "integer").as("status_code"),
          typed(outcome.duration_ms, "integer").as("duration_ms"),
          typed(outcome.error, "text").as("error"),
        ])
        .where("id", "=", outcome.delivery_id),
    )
    .onConflict((conflicting) => conflicting.column("outcome_id").doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 0) return undefined;

  const delivery = await trx
    .selectFrom("webhook_deliveries")
    .selectAll()
    .where("id", "=", outcome.delivery_id)
    .$if(needsRowLocks(trx), (query) => query.forUpdate())
    .executeTakeFirstOrThrow();
  await trx
    .updateTable("webhook_deliveries")
    .set({
      status: outcome.succeeded ? "succeeded" : outcome.next_attempt_at ? "pending" : "failed",
      attempts: delivery.attempts + (outcome.sent ? 1 : 0),
      last_status_code: outcome.sent ? outcome.status_code : delivery.last_status_code,
      last_duration_ms: outcome.sent ? outcome.duration_ms : delivery.last_duration_ms,
      last_error: outcome.error,
      next_attempt_at: outcome.next_attempt_at,
      delivered_at: outcome.succeeded ? outcome.attempted_at : delivery.delivered_at,
      updated_at: new Date().toISOString(),
    })
    .where("id", "=", delivery.id)
    .execute();

  if (!outcome.sent) return undefined;
  const endpoint = await trx
    .selectFrom("webhook_endpoints")
    .select(["enabled", "failing_since"])
    .where("id", "=", outcome.endpoint_id)
    .$if(needsRowLocks(trx), (query) => query.forUpdate())
    .executeTakeFirstOrThrow();
  if (outcome.succeeded) {
    await trx
      .updateTable("webhook_endpoints")
      .set({ last_success_at: outcome.attempted_at, failing_since: null })
      .where("id", "=", outcome.endpoint_id)
      .execute();
    return undefined;
  }
  const failingSince = endpoint.failing_since ?? outcome.attempted_at;
  if (!endpoint.failing_since) {
    await trx
      .updateTable("webhook_endpoints")
      .set({ failing_since: failingSince })
      .where("id", "=", outcome.endpoint_id)
      .execute();
  }
  if (endpoint.enabled !== 1) return undefined;
  if (outcome.gone) return `the receiver answered 410 Gone at ${outcome.attempted_at}`;
  if (Date.parse(outcome.attempted_at) - Date.parse(failingSince) >= disableAfterMs) {
    return `no successful delivery since ${failingSince} (WEBHOOK_DISABLE_AFTER_MS is ${disableAfterMs})`;
  }
  return undefined;
}

/** A parameter with its column's type: PostgreSQL does not infer one for a value in a select list. */
function typed<T extends string | number | null>(value: T, type: "text" | "integer") {
  return sql<T>`cast(${value} as ${sql.raw(type)})`;
}

function toResource(row: DeliveryRow): WebhookDelivery {
  return {
    id: row.id,
    endpoint_id: row.endpoint_id,
    event_id: row.event_id,
    event_type: row.event_type,
    status: row.status,
    attempts: row.attempts,
    last_status_code: row.last_status_code,
    last_duration_ms: row.last_duration_ms,
    last_error: row.last_error,
    next_attempt_at: row.next_attempt_at,
    created_at: row.created_at,
    updated_at: row.updated_at,
    delivered_at: row.delivered_at,
  };
}
