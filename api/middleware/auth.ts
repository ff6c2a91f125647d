// Bearer-token authentication against the configured keys, compared in constant time. Under `cookie.pathPrefix`
// a signed session cookie may stand in for the key (Bull Board's own page cannot send a bearer header).
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
  cookie?: { name: string; pathPrefix: string };
}

export function bearerAuth(apiKeys: readonly string[], options: AuthOptions): MiddlewareHandler {
  const keyDigests = apiKeys.map(digest);
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
    if (!accepted) throw new ApiError("unauthorized", "invalid api key");
    c.set("apiKeyHash", presented.toString("hex"));
    return next();
  };
}
