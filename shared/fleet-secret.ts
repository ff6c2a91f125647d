// The secret the API and every host share to authenticate calls to hosts' payload servers: FLEET_SECRET, or one
// generated once and kept in Redis (whoever can read Redis can already put work on any host's queue).
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Redis } from "ioredis";

const secretKey = (prefix: string) => `${prefix}:fleet-secret`;

export async function resolveFleetSecret(
  redis: Redis,
  prefix: string,
  configured: string | undefined,
): Promise<string> {
  if (configured) return configured;
  await redis.set(secretKey(prefix), randomBytes(32).toString("base64url"), "NX");
  const stored = await redis.get(secretKey(prefix));
  if (!stored) throw new Error("the fleet secret vanished from redis");
  return stored;
}

/** The bearer token of one host's payload server: a leaked token opens that host only. */
export function payloadToken(secret: string, hostId: string): string {
  return createHmac("sha256", secret).update(`payload-server:${hostId}`).digest("base64url");
}

export function tokenMatches(expected: string, presented: string | undefined): boolean {
  if (!presented) return false;
  const left = Buffer.from(expected);
  const right = Buffer.from(presented);
  return left.length === right.length && timingSafeEqual(left, right);
}
