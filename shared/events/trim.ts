// Bounds a consumer-group stream: entries every group has acknowledged go (XTRIM MINID), and a hard cap on the
// length bounds a stream whose slowest group is stuck for good (with a warning naming what it cut).
import type { Redis } from "ioredis";
import type { Logger } from "../logger.ts";

/** A stream position as a comparable pair: milliseconds and sequence. */
type Position = readonly [bigint, bigint];

export function parsePosition(id: string): Position {
  const [ms, seq] = id.split("-");
  return [BigInt(ms ?? "0"), BigInt(seq ?? "0")];
}

export function comparePositions(a: string, b: string): number {
  const [left, right] = [parsePosition(a), parsePosition(b)];
  if (left[0] !== right[0]) return left[0] < right[0] ? -1 : 1;
  return left[1] === right[1] ? 0 : left[1] < right[1] ? -1 : 1;
}

/** The position right after `id`: XTRIM MINID keeps entries at or after it. */
function nextPosition(id: string): string {
  const [ms, seq] = parsePosition(id);
  return `${ms}-${seq + 1n}`;
}

export interface TrimOutcome {
  /** The oldest position some group still needs (undefined: the stream has no groups or does not exist). */
  oldestNeeded?: string;
  /** Entries removed by this pass. */
  removed: number;
  /** Groups whose unacknowledged or undelivered entries the length cap removed. */
  cutGroups: string[];
}

/** The oldest entry `group` still needs: its oldest pending entry, else the one after its last delivered. */
async function oldestNeededBy(redis: Redis, key: string, group: GroupInfo): Promise<string> {
  if (group.pending > 0) {
    const [, minPending] = (await redis.xpending(key, group.name)) as [number, string | null, string | null, unknown];
    if (minPending) return minPending;
  }
  return nextPosition(group.lastDeliveredId);
}

interface GroupInfo {
  name: string;
  pending: number;
  lastDeliveredId: string;
}

async function groupsOf(redis: Redis, key: string): Promise<GroupInfo[] | undefined> {
  let reply: unknown[][];
  try {
    reply = (await redis.xinfo("GROUPS", key)) as unknown[][];
  } catch (error) {
    if (/no such key/i.test((error as Error).message)) return undefined;
    throw error;
  }
  return reply.map((fields) => {
    const values = new Map<string, unknown>();
    for (let index = 0; index + 1 < fields.length; index += 2) values.set(String(fields[index]), fields[index + 1]);
    return {
      name: String(values.get("name")),
      pending: Number(values.get("pending")),
      lastDeliveredId: String(values.get("last-delivered-id")),
    };
  });
}

/** Where the trimmer keeps the newest position it removed from `key`: readers at an older one missed entries. */
export const trimmedThroughKey = (key: string) => `${key}:trimmed-through`;

// Exact trims, so the newest removed position is known: the entry just before MINID, then the last one the cap cuts.
// (Redis 7.0's max-deleted-entry-id counts XDEL only, not trims.) Cost is proportional to what is removed.
const TRIM_SCRIPT = `
local removed = 0
local last = false
if ARGV[1] ~= '' then
  local before = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1], '-', 'COUNT', 1)
  if #before > 0 then last = before[1][1] end
  removed = removed + redis.call('XTRIM', KEYS[1], 'MINID', '=', ARGV[1])
end
local excess = redis.call('XLEN', KEYS[1]) - tonumber(ARGV[2])
local capped = 0
if excess > 0 then
  local cut = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  last = cut[#cut][1]
  capped = redis.call('XTRIM', KEYS[1], 'MAXLEN', '=', ARGV[2])
  removed = removed + capped
end
if last and removed > 0 then redis.call('SET', KEYS[2], last) end
return {removed, capped, last or ''}
`;

/** The newest position trimmed away from the stream ("0-0" if none). */
export async function trimmedThrough(redis: Redis, key: string): Promise<string> {
  return (await redis.get(trimmedThroughKey(key))) ?? "0-0";
}

/** One trimming pass over `key`: drops what every consumer group has acknowledged, then caps the length. */
export async function trimStream(redis: Redis, key: string, maxLength: number, log: Logger): Promise<TrimOutcome> {
  const groups = await groupsOf(redis, key);
  if (!groups) return { removed: 0, cutGroups: [] };
  const needs = await Promise.all(
    groups.map(async (group) => ({ group: group.name, oldest: await oldestNeededBy(redis, key, group) })),
  );
  const oldestNeeded = needs.map((need) => need.oldest).sort(comparePositions)[0];
  const [removed, capped, last] = (await redis.eval(
    TRIM_SCRIPT,
    2,
    key,
    trimmedThroughKey(key),
    oldestNeeded ?? "", // without groups nothing is known to be consumed: only the cap applies
    String(maxLength),
  )) as [number, number, string];
  const cutGroups = capped > 0 ? needs.filter((need) => comparePositions(need.oldest, last) <= 0) : [];
  if (cutGroups.length > 0) {
    log.warn(
      { stream: key, groups: cutGroups.map((need) => need.group), maxLength, removed: capped },
      "stream length cap removed entries a consumer group had not acknowledged",
    );
  }
  return { oldestNeeded, removed, cutGroups: cutGroups.map((need) => need.group) };
}
