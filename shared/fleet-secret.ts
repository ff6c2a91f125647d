// The secret the API and every host share to authenticate calls to hosts' payload servers: FLEET_SECRET, or one
// generated once by the first host and kept in Redis (whoever can read Redis can already put work on any host's
// queue). Hosts write theirs back with every heartbeat, so a Redis that lost its data gets the same one again; set
// FLEET_SECRET where hosts may all restart against an emptied Redis.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Redis } from "ioredis";

const secretKey = (prefix: string) => `${prefix}:fleet-secret`;

/** A host's view: the configured secret, or the shared one, generated if no host has yet. */
export async function resolveFleetSecret(
  redis: Redis,
  prefix: string,
  configured: string | undefined,
): Promise<string> {
  if (configured) return configured;
  await keepFleetSecret(redis, prefix, randomBytes(32).toString("base64url"));
  const stored = await redis.get(secretKey(prefix));
  if (!stored) throw new Error("the fleet secret vanished from redis");
  return stored;
}

/** The API's view: the configured secret, or the one hosts shared (undefined until a host has). */
export async function readFleetSecret(
  redis: Redis,
  prefix: string,
  configured: string | undefined,
): Promise<string | undefined> {
  return configured ?? (await redis.get(secretKey(prefix))) ?? undefined;
}

/** Puts the secret back if Redis lost it (never replaces another). */
export async function keepFleetSecret(redis: Redis, prefix: string, secret: string): Promise<void> {
  await redis.set(secretKey(prefix), secret, "NX");
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
