// Idempotency-Key on POST, with Stripe's semantics: the first answer to a key is stored (per API key) and replayed
// for the same request; the same key with another request, or while the first is still running, is a 409.
// 5xx answers are not stored, so a client may retry a 503 or 504 with the same key.
import { createHash } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { conflict, invalidRequest } from "../../../shared/errors.ts";
import type { Db } from "../../db/database.ts";
import { claimKey, releaseKey, storeResponse } from "./store.ts";

export const IDEMPOTENCY_KEY_HEADER = "Idempotency-Key";
export const REPLAYED_HEADER = "Idempotent-Replayed";
const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;

export interface IdempotencyOptions {
  db: Db;
  /** How long a stored response is replayed (IDEMPOTENCY_KEY_TTL_MS). */
  ttlMs: number;
  /** A claim unanswered for this long belongs to a request that died with its process. */
  inFlightTimeoutMs: number;
}

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
      inFlightTimeoutMs: options.inFlightTimeoutMs,
    });
    if (claim.outcome === "mismatch") {
      throw conflict(`${IDEMPOTENCY_KEY_HEADER} ${key} was already used with a different request`);
    }
    if (claim.outcome === "in_flight") {
      throw conflict(
        `a request with ${IDEMPOTENCY_KEY_HEADER} ${key} is still in progress: retry once it has finished`,
      );
    }
    if (claim.outcome === "replay") {
      const { status, contentType, body } = claim.response;
      const headers = new Headers({ [REPLAYED_HEADER]: "true" });
      if (contentType) headers.set("content-type", contentType);
      return new Response(status === 204 ? null : body, { status, headers });
    }
    try {
      await next();
    } finally {
      await settle(c, options.db, apiKeyHash, key);
    }
  };
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
