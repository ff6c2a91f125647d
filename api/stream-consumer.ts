// A consumer-group reader of one Redis stream (the read model and webhooks each run one): pending entries first
// (after a restart), then new ones; API replicas share a group under distinct consumer names, and each takes over
// what a dead one left unacknowledged. A batch is acknowledged only after its handler returned, so a crash
// replays it (handlers are idempotent).
import type { Redis } from "ioredis";
import type { Logger } from "../shared/logger.ts";

export type StreamEntries = Array<[streamId: string, fields: string[]]>;

export interface StreamConsumerOptions {
  /** A worker-role connection owned by this consumer (it blocks on XREADGROUP). */
  redis: Redis;
  key: string;
  group: string;
  consumer: string;
  /** Where a new group starts: "$" (only what comes next) or "0" (the whole stream). */
  startAt: "$" | "0";
  handle: (entries: StreamEntries) => Promise<void>;
  log: Logger;
  batchSize?: number;
  blockMs?: number;
  /**
   * Entries another consumer of the group read and left unacknowledged this long (it died) are taken over
   * (XAUTOCLAIM); unset: never. Consumers of one group must have distinct names for this to mean anything.
   */
  claimIdleMs?: number;
}

export interface StreamConsumer {
  /** Stops after the batch in hand; what was not acknowledged is read again at the next start. */
  stop(): Promise<void>;
}

const RETRY_DELAY_MS = 500;

export async function startStreamConsumer(options: StreamConsumerOptions): Promise<StreamConsumer> {
  const { redis, key, group, consumer, log } = options;
  const ensureGroup = async () => {
    try {
      await redis.xgroup("CREATE", key, group, options.startAt, "MKSTREAM");
    } catch (error) {
      if (!String((error as Error).message).includes("BUSYGROUP")) throw error;
    }
  };
  await ensureGroup();

  let running = true;
  const read = async (cursor: string): Promise<StreamEntries> => {
    const args: Array<string | number> = ["GROUP", group, consumer, "COUNT", options.batchSize ?? 200];
    if (cursor === ">") args.push("BLOCK", options.blockMs ?? 1_000);
    args.push("STREAMS", key, cursor);
    const reply = (await redis.call("XREADGROUP", ...args)) as Array<[string, StreamEntries]> | null;
    return reply?.[0]?.[1] ?? [];
  };

  let nextClaimAt = 0;
  /** Takes over entries idle for claimIdleMs; true when some became ours (they are then read as our pending). */
  const claimAbandoned = async (): Promise<boolean> => {
    const idleMs = options.claimIdleMs;
    if (idleMs === undefined || Date.now() < nextClaimAt) return false;
    nextClaimAt = Date.now() + Math.max(idleMs / 2, 100);
    let start = "0-0";
    let claimed = 0;
    do {
      const reply = (await redis.call("XAUTOCLAIM", key, group, consumer, idleMs, start, "COUNT", 100, "JUSTID")) as [
        string,
        string[],
      ];
      [start] = reply;
      claimed += reply[1].length;
    } while (start !== "0-0" && running);
    if (claimed > 0) log.info({ stream: key, group, consumer, claimed }, "took over entries of a stopped consumer");
    return claimed > 0;
  };

  const loop = (async () => {
    let cursor = "0"; // our own unacknowledged entries first
    while (running) {
      try {
        if (cursor === ">" && (await claimAbandoned())) cursor = "0";
        const entries = await read(cursor);
        if (cursor !== ">" && entries.length === 0) {
          cursor = ">";
          continue;
        }
        // A pending entry whose data was trimmed away comes back with no fields: acknowledge it and move on.
        await options.handle(entries.filter(([, fields]) => fields !== null));
        if (entries.length > 0) await redis.xack(key, group, ...entries.map(([streamId]) => streamId));
        if (cursor !== ">" && entries.length > 0) cursor = entries.at(-1)![0];
      } catch (error) {
        if (!running) break;
        cursor = "0"; // what failed is still pending: retry it before anything newer
        log.warn({ stream: key, group, err: (error as Error).message }, "stream consumer failed; retrying");
        if (String((error as Error).message).includes("NOGROUP")) await ensureGroup().catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
      }
    }
  })();

  return {
    async stop() {
      running = false;
      await loop;
    },
  };
}
