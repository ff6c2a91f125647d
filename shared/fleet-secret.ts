// The secret the API and every host share to authenticate calls to hosts' payload servers, and the request tokens
// made from it. The secret comes from FLEET_SECRET (or FLEET_SECRET_FILE), or on a one-host fleet from a file
// generated into the data dir; never from Redis, so nothing a Redis reader sees opens a payload server.
// A token is bound to one host, one method, one path and an expiry a minute away: a token seen in a log or
// captured on the wire opens that one request on that one host, briefly.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import path from "node:path";
import type { Redis } from "ioredis";
import { readOrCreateSecretFile } from "./secret-file.ts";

export const FLEET_SECRET_FILE_NAME = "fleet-secret";
/** How long a token signed now stays valid. */
export const PAYLOAD_TOKEN_TTL_SECONDS = 60;
/** Hosts' clocks may disagree by this much: a token further ahead than TTL + skew was not signed by us. */
const MAX_CLOCK_SKEW_SECONDS = 30;
const TOKEN_VERSION = "v1";

export interface FleetSecret {
  secret: string;
  /** configured: FLEET_SECRET or FLEET_SECRET_FILE; generated: this data dir's file (a one-host fleet). */
  source: "configured" | "generated";
}

/** The configured secret, or the data dir's generated one (created once, mode 0600). */
export function loadFleetSecret(configured: string | undefined, dataDir: string): FleetSecret {
  if (configured) return { secret: configured, source: "configured" };
  const file = path.join(dataDir, FLEET_SECRET_FILE_NAME);
  return { secret: readOrCreateSecretFile(file, () => randomBytes(32).toString("base64url")), source: "generated" };
}

/** Where releases before request-bound tokens kept the secret in plain text. */
export const legacyFleetSecretKey = (prefix: string) => `${prefix}:fleet-secret`;

/** Deletes the plain secret older releases left in Redis; true if there was one. */
export async function removeLegacyFleetSecret(redis: Redis, prefix: string): Promise<boolean> {
  return (await redis.del(legacyFleetSecretKey(prefix))) > 0;
}

/** One host's signing key: a key leaked from one host's process opens that host only. */
export function hostPayloadKey(secret: string, hostId: string): Buffer {
  return createHmac("sha256", secret).update(`snapfleet payload-server ${TOKEN_VERSION}\n${hostId}`).digest();
}

/** The key object-store manifests are signed with: only the fleet's hosts can write a manifest they will trust. */
export function manifestSigningKey(secret: string): Buffer {
  return createHmac("sha256", secret).update("snapfleet object-store manifest v1").digest();
}

export interface PayloadRequest {
  method: string;
  /** The request target as sent: path and query. */
  path: string;
}

/** `v1.<expiry, unix seconds>.<HMAC-SHA256 of method \n path \n expiry>` */
export function signPayloadRequest(key: Buffer, request: PayloadRequest, nowMs = Date.now()): string {
  const expiry = Math.floor(nowMs / 1000) + PAYLOAD_TOKEN_TTL_SECONDS;
  return `${TOKEN_VERSION}.${expiry}.${requestMac(key, request, expiry).toString("base64url")}`;
}

export type TokenCheck = { ok: true } | { ok: false; reason: string };

export function verifyPayloadRequest(
  key: Buffer,
  request: PayloadRequest,
  token: string | undefined,
  nowMs = Date.now(),
): TokenCheck {
  if (!token) return { ok: false, reason: "missing payload token" };
  const match = /^v1\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token);
  if (!match) return { ok: false, reason: "malformed payload token" };
  const expiry = Number(match[1]);
  const expected = requestMac(key, request, expiry);
  const presented = Buffer.from(match[2]!, "base64url");
  // The MAC first: an expiry is only worth reporting on a token we signed.
  if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
    return { ok: false, reason: "payload token does not match this host, method and path" };
  }
  const now = Math.floor(nowMs / 1000);
  if (expiry < now) return { ok: false, reason: "payload token expired" };
  if (expiry > now + PAYLOAD_TOKEN_TTL_SECONDS + MAX_CLOCK_SKEW_SECONDS) {
    return { ok: false, reason: "payload token expires too far ahead (clocks apart?)" };
  }
  return { ok: true };
}

function requestMac(key: Buffer, request: PayloadRequest, expiry: number): Buffer {
  return createHmac("sha256", key).update(`${request.method}\n${request.path}\n${expiry}`).digest();
}
