// Bearer-token authentication against the configured keys, compared in constant time.
import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "../../shared/errors.ts";

declare module "hono" {
  interface ContextVariableMap {
    /** SHA-256 (hex) of the accepted bearer token: scopes per-key state such as Idempotency-Key records. */
    apiKeyHash: string;
  }
}

const digest = (value: string) => createHash("sha256").update(value).digest();

export function bearerAuth(apiKeys: readonly string[], publicPaths: ReadonlySet<string>): MiddlewareHandler {
  const keyDigests = apiKeys.map(digest);
  return async (c, next) => {
    if (publicPaths.has(c.req.path)) return next();
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) throw new ApiError("unauthorized", "missing bearer token: send Authorization: Bearer <api key>");
    const presented = digest(match[1]!);
    // Compare against every key so the time taken does not tell which one matched.
    let accepted = false;
    for (const key of keyDigests) accepted = timingSafeEqual(presented, key) || accepted;
    if (!accepted) throw new ApiError("unauthorized", "invalid api key");
    c.set("apiKeyHash", presented.toString("hex"));
    return next();
  };
}
