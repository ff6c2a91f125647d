// Bull Board's session cookie: the board's own page cannot send a bearer header, so signing in to the dashboard
// sets a cookie instead. It holds an expiry and an HMAC keyed by the API key that signed in, never the key: a
// leaked cookie opens the board for a few hours only, and revoking the key ends its sessions.
import { createHmac, timingSafeEqual } from "node:crypto";

export const BOARD_SESSION_TTL_SECONDS = 8 * 3_600;

const sessionKey = (apiKey: string) => createHmac("sha256", apiKey).update("snapfleet bull-board session v1").digest();

const sessionMac = (apiKey: string, expiry: number) =>
  createHmac("sha256", sessionKey(apiKey)).update(String(expiry)).digest();

/** `v1.<expiry, unix seconds>.<HMAC>` for the API key that signed in. */
export function issueBoardSession(apiKey: string, nowMs = Date.now()): string {
  const expiry = Math.floor(nowMs / 1000) + BOARD_SESSION_TTL_SECONDS;
  return `v1.${expiry}.${sessionMac(apiKey, expiry).toString("base64url")}`;
}

/** The configured key a session was issued for; undefined for a tampered, expired or revoked one. */
export function verifyBoardSession(
  apiKeys: readonly string[],
  session: string | undefined,
  nowMs = Date.now(),
): string | undefined {
  const match = /^v1\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(session ?? "");
  if (!match) return undefined;
  const expiry = Number(match[1]);
  const presented = Buffer.from(match[2]!, "base64url");
  // Every key is tried, so the time taken does not tell which one matched.
  let matched: string | undefined;
  for (const key of apiKeys) if (timingSafeEqual(presented, sessionMac(key, expiry))) matched ??= key;
  const now = Math.floor(nowMs / 1000);
  return matched && expiry >= now && expiry <= now + BOARD_SESSION_TTL_SECONDS ? matched : undefined;
}
