// Idempotency-Key on POST, with Stripe's semantics: the first answer to a key is stored (per API key) and replayed
// for the same request; the same key with another request, or while the first is still running, is a 409.
// A request still running at the client's deadline answers 504 and runs on; its own answer is stored when it comes,
// so a retry with the same key gets it (409 until then). Other 5xx answers are not stored: a 503 may be retried.
import { createHash } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { ApiError, conflict, invalidRequest } from "../../../shared/errors.ts";
import type { Db } from "../../db/database.ts";
import { withResourceSeed } from "../../resource-ids.ts";
import { runDetachable } from "./detach.ts";
import { claimKey, placementOf, recordPlacement, releaseKey, storeResponse } from "./store.ts";

export const IDEMPOTENCY_KEY_HEADER = "Idempotency-Key";
export const REPLAYED_HEADER = "Idempotent-Replayed";
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

export interface IdempotencyOptions {
  db: Db;
  /** How long a stored response is replayed (IDEMPOTENCY_KEY_TTL_MS). */
  ttlMs: number;
  /** The client's wait (JOB_RESULT_TIMEOUT_MS): a request still running then answers 504 and runs on. */
  answerWithinMs: number;
  /** How long a request runs on after its 504 (IDEMPOTENCY_DETACHED_WAIT_MS). */
  detachedWaitMs: number;
  /** This API process, named in the claims it takes (PROCESS_ID). */
  owner: string;
  /** Whether the API process named in a claim still runs (its heartbeat, api/process-alive.ts). */
  ownerAlive: (owner: string) => Promise<boolean>;
}

/** Tells SDKs that retry 409s not to: the answer comes from a later retry with the same key, or from a GET. */
export const SHOULD_RETRY_HEADER = "x-should-retry";

export function idempotency(options: IdempotencyOptions): MiddlewareHandler {
  return async (c, next) => {
    const key = c.req.header(IDEMPOTENCY_KEY_HEADER);
    const apiKeyHash = c.get("apiKeyHash");
    if (c.req.method !== "POST" || key === undefined || !apiKeyHash) return next();
    if (!KEY_PATTERN.test(key)) {
      throw invalidRequest(`${IDEMPOTENCY_KEY_HEADER}: 1-255 printable ASCII characters without spaces`);
    }
    const claim = await claimKey(options.db, {
      apiKeyHash,
      key,
      fingerprint: await fingerprint(c),
      now: new Date(),
      ttlMs: options.ttlMs,
      // Running on after its 504 waits at most twice (the job, then the read model): an older claim was abandoned.
      inFlightTimeoutMs: 2 * options.detachedWaitMs + 30_000,
      owner: options.owner,
      ownerAlive: options.ownerAlive,
    });
    if (claim.outcome === "mismatch") {
      throw conflict(`${IDEMPOTENCY_KEY_HEADER} ${key} was already used with a different request`);
    }
    if (claim.outcome === "in_flight") {
      const message = `a request with ${IDEMPOTENCY_KEY_HEADER} ${key} is still in progress: retry once it has finished`;
      return c.json(conflict(message).toEnvelope(), 409, { [SHOULD_RETRY_HEADER]: "false" });
    }
    if (claim.outcome === "replay") {
      const { status, contentType, body } = claim.response;
      const headers = new Headers({ [REPLAYED_HEADER]: "true" });
      if (contentType) headers.set("content-type", contentType);
      return new Response(status === 204 ? null : body, { status, headers });
    }
    await runDetachable(
      async () => {
        try {
          await withResourceSeed(claim.seed, next, {
            recorded: () => placementOf(options.db, apiKeyHash, key),
            record: (hostId) => recordPlacement(options.db, apiKeyHash, key, hostId),
          });
        } finally {
          await settle(c, options.db, apiKeyHash, key);
        }
      },
      { answerWithinMs: options.answerWithinMs, detachedWaitMs: options.detachedWaitMs, lateAnswer: () => late(key) },
    );
  };
}

/** The client's answer at its deadline; the request runs on and its answer waits under the key. */
function late(key: string): Response {
  const message =
    `the request is still running: a retry with ${IDEMPOTENCY_KEY_HEADER} ${key} answers its outcome once it ` +
    "has finished (409 until then)";
  const envelope = new ApiError("unavailable", message, { status: 504 }).toEnvelope();
  return Response.json(envelope, { status: 504 });
}

async function settle(c: Context, db: Db, apiKeyHash: string, key: string): Promise<void> {
  const response = c.res;
  if (!response || response.status >= 500) return releaseKey(db, apiKeyHash, key);
  await storeResponse(db, apiKeyHash, key, {
    status: response.status,
    contentType: response.headers.get("content-type"),
    body: await response.clone().text(),
  });
}

/** SHA-256 of method, path and body; a JSON body is canonicalised (keys sorted, no whitespace) first. */
async function fingerprint(c: Context): Promise<string> {
  const text = await c.req.text();
  return createHash("sha256")
    .update(`${c.req.method}\n${c.req.path}\n${canonicalBody(text)}`)
    .digest("hex");
}

export function canonicalBody(text: string): string {
  try {
    return JSON.stringify(sortKeys(JSON.parse(text)));
  } catch {
    return text;
  }
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((name) => [name, sortKeys((value as Record<string, unknown>)[name])]),
  );
}
