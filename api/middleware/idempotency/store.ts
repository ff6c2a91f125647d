// Idempotency-Key records in the read model: claim a key for a request, store its response, prune old ones.
import { randomBytes } from "node:crypto";
import type { Db } from "../../db/database.ts";

export interface StoredResponse {
  status: number;
  contentType: string | null;
  body: string;
}

export type Claim =
  | { outcome: "claimed"; seed: string }
  | { outcome: "replay"; response: StoredResponse }
  | { outcome: "in_flight" }
  | { outcome: "mismatch" };

export interface ClaimRequest {
  apiKeyHash: string;
  key: string;
  fingerprint: string;
  now: Date;
  ttlMs: number;
  /** An unanswered claim older than this was abandoned (its process died): the next request may take it over. */
  inFlightTimeoutMs: number;
  /** This API process (PROCESS_ID): the claim's owner while it runs. */
  owner: string;
  /** Whether the process that owns an unanswered claim still runs; a claim of a dead one is taken over at once. */
  ownerAlive: (owner: string) => Promise<boolean>;
}

/** Claims the key for this request, or says why not: a stored response, a request still running, another body. */
export async function claimKey(db: Db, request: ClaimRequest): Promise<Claim> {
  const { apiKeyHash, key, fingerprint, now } = request;
  const seed = randomBytes(16).toString("hex");
  const thisKey = db
    .deleteFrom("idempotency_keys")
    .where("api_key_hash", "=", apiKeyHash)
    .where("idempotency_key", "=", key);
  await thisKey.where("expires_at", "<=", now.toISOString()).execute();
  const inserted = await db
    .insertInto("idempotency_keys")
    .values({
      api_key_hash: apiKeyHash,
      idempotency_key: key,
      fingerprint,
      response_status: null,
      response_content_type: null,
      response_body: null,
      created_at: now.toISOString(),
      expires_at: new Date(now.getTime() + request.ttlMs).toISOString(),
      owner: request.owner,
      seed,
    })
    .onConflict((conflicting) => conflicting.columns(["api_key_hash", "idempotency_key"]).doNothing())
    .executeTakeFirst();
  if (Number(inserted.numInsertedOrUpdatedRows ?? 0) === 1) return { outcome: "claimed", seed };

  const row = await db
    .selectFrom("idempotency_keys")
    .selectAll()
    .where("api_key_hash", "=", apiKeyHash)
    .where("idempotency_key", "=", key)
    .executeTakeFirst();
  if (!row) return claimKey(db, request); // pruned in between
  if (row.fingerprint !== fingerprint) return { outcome: "mismatch" };
  if (row.response_status !== null) {
    return {
      outcome: "replay",
      response: { status: row.response_status, contentType: row.response_content_type, body: row.response_body ?? "" },
    };
  }
  // Abandoned: its process is gone (a crash, a kill), or, for an owner that cannot be told, it is older than the
  // longest a request runs. The update is conditional on the row as read, so only one retry takes it over.
  const abandonedBefore = new Date(now.getTime() - request.inFlightTimeoutMs).toISOString();
  const ownerGone = row.owner !== null && row.owner !== request.owner && !(await request.ownerAlive(row.owner));
  if (!ownerGone && row.created_at >= abandonedBefore) return { outcome: "in_flight" };
  // The seed stays: the retry makes the same resources as the request it takes over (adopting its name reservation;
  // hosts answer a job for a resource id they made already with that resource).
  const kept = row.seed ?? seed;
  const takenOver = await db
    .updateTable("idempotency_keys")
    .set({ created_at: now.toISOString(), owner: request.owner, seed: kept })
    .where("api_key_hash", "=", apiKeyHash)
    .where("idempotency_key", "=", key)
    .where("response_status", "is", null)
    .where("created_at", "=", row.created_at)
    .executeTakeFirst();
  return Number(takenOver.numUpdatedRows) === 1 ? { outcome: "claimed", seed: kept } : { outcome: "in_flight" };
}

export async function storeResponse(db: Db, apiKeyHash: string, key: string, response: StoredResponse): Promise<void> {
  await db
    .updateTable("idempotency_keys")
    .set({
      response_status: response.status,
      response_content_type: response.contentType,
      response_body: response.body,
    })
    .where("api_key_hash", "=", apiKeyHash)
    .where("idempotency_key", "=", key)
    .execute();
}

/**
 * The host a keyed request places its resource on: the one recorded in its claim (by the request it took over), or
 * `hostId`, which is then recorded. Returns the recorded one.
 */
export async function recordPlacement(db: Db, apiKeyHash: string, key: string, hostId: string): Promise<string> {
  await db
    .updateTable("idempotency_keys")
    .set({ host_id: hostId })
    .where("api_key_hash", "=", apiKeyHash)
    .where("idempotency_key", "=", key)
    .where("host_id", "is", null)
    .execute();
  return (await placementOf(db, apiKeyHash, key)) ?? hostId;
}

export async function placementOf(db: Db, apiKeyHash: string, key: string): Promise<string | undefined> {
  const row = await db
    .selectFrom("idempotency_keys")
    .select("host_id")
    .where("api_key_hash", "=", apiKeyHash)
    .where("idempotency_key", "=", key)
    .executeTakeFirst();
  return row?.host_id ?? undefined;
}

/** Forgets a claim whose request got no storable answer, so the client can retry with the same key. */
export async function releaseKey(db: Db, apiKeyHash: string, key: string): Promise<void> {
  await db
    .deleteFrom("idempotency_keys")
    .where("api_key_hash", "=", apiKeyHash)
    .where("idempotency_key", "=", key)
    .where("response_status", "is", null)
    .execute();
}

export async function pruneExpiredKeys(db: Db, now = new Date()): Promise<number> {
  const result = await db
    .deleteFrom("idempotency_keys")
    .where("expires_at", "<=", now.toISOString())
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
