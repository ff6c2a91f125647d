// Bearer-token authentication against the configured keys, compared in constant time. Under `cookie.pathPrefix`
// a signed session cookie may stand in for the key (Bull Board's own page cannot send a bearer header). A read-only
// key (API_READ_KEYS) may read what a dashboard shows and nothing else: see `readOnlyAllows`.
import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { getCookie } from "hono/cookie";
import { bearerToken } from "../../shared/bearer.ts";
import { ApiError } from "../../shared/errors.ts";
import { verifyBoardSession } from "./board-session.ts";

declare module "hono" {
  interface ContextVariableMap {
    /** SHA-256 (hex) of the accepted bearer token: scopes per-key state such as Idempotency-Key records. */
    apiKeyHash: string;
  }
}

const digest = (value: string) => createHash("sha256").update(value).digest();

export interface AuthOptions {
  isPublic: (path: string) => boolean;
  /** Keys that may only make the requests `readOnlyAllows` lets through; any other is a 403 `forbidden`. */
  readOnlyKeys?: readonly string[];
  cookie?: { name: string; pathPrefix: string };
}

export function bearerAuth(apiKeys: readonly string[], options: AuthOptions): MiddlewareHandler {
  const keyDigests = apiKeys.map(digest);
  const readOnlyDigests = (options.readOnlyKeys ?? []).map(digest);
  return async (c, next) => {
    if (options.isPublic(c.req.path)) return next();
    const { cookie } = options;
    const session = cookie && c.req.path.startsWith(cookie.pathPrefix) ? getCookie(c, cookie.name) : undefined;
    const presentedKey =
      bearerToken(c.req.header("authorization")) ??
      (session === undefined ? undefined : verifyBoardSession(apiKeys, session));
    if (!presentedKey) {
      throw new ApiError(
        "unauthorized",
        session === undefined
          ? "missing bearer token: send Authorization: Bearer <api key>"
          : "board session expired or invalid: sign in on /ui again",
      );
    }
    const presented = digest(presentedKey);
    // Compare against every key so the time taken does not tell which one matched.
    let accepted = false;
    for (const key of keyDigests) accepted = timingSafeEqual(presented, key) || accepted;
    let readOnly = false;
    for (const key of readOnlyDigests) readOnly = timingSafeEqual(presented, key) || readOnly;
    if (!accepted && !readOnly) throw new ApiError("unauthorized", "invalid api key");
    if (!accepted && !readOnlyAllows(c.req.method, c.req.path)) {
      throw new ApiError(
        "forbidden",
        `this API key is read-only: ${c.req.method} ${c.req.path} needs a key from API_KEYS`,
      );
    }
    c.set("apiKeyHash", presented.toString("hex"));
    return next();
  };
}

/**
 * What a read-only key may do: GET and HEAD, except an export, which hands out a guest's memory and disk. A board
 * session is signed in with POST, so a read-only key never gets the writable Bull Board.
 */
export function readOnlyAllows(method: string, path: string): boolean {
  return (method === "GET" || method === "HEAD") && !/^\/snapshots\/[^/]+\/export$/.test(path);
}
