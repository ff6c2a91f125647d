// Entries the read model cannot apply, set aside in a stream of their own (kept for an operator, listed by
// GET /events/dead-letters) so that one poison entry does not stall every replica's read model.
import type { Redis } from "ioredis";
import { z } from "../../shared/zod.ts";

export const deadLetterStreamKey = (prefix: string) => `${prefix}:events:dead-letters`;
/** The newest this many dead letters are kept (a flood of them must not fill Redis). */
const DEAD_LETTERS_KEPT = 10_000;

export const DEAD_LETTER_SCHEMA = z
  .object({
    id: z.string().openapi({ description: "Position in the dead-letter stream" }),
    stream_id: z.string().openapi({ description: "Position of the entry in the event stream" }),
    failed_at: z.string(),
    attempts: z.number().int(),
    error: z.string(),
    fields: z.array(z.string()).openapi({ description: "The entry's fields as read from the event stream" }),
  })
  .openapi("DeadLetter");

export type DeadLetter = z.infer<typeof DEAD_LETTER_SCHEMA>;

export async function recordDeadLetter(redis: Redis, prefix: string, letter: Omit<DeadLetter, "id">): Promise<void> {
  await redis.xadd(
    deadLetterStreamKey(prefix),
    "MAXLEN",
    "~",
    DEAD_LETTERS_KEPT,
    "*",
    "letter",
    JSON.stringify(letter),
  );
}

/** The newest dead letters first. */
export async function listDeadLetters(redis: Redis, prefix: string, limit: number): Promise<DeadLetter[]> {
  const entries = await redis.xrevrange(deadLetterStreamKey(prefix), "+", "-", "COUNT", limit);
  return entries.map(([id, fields]) => ({ id, ...(JSON.parse(fields[1] ?? "{}") as Omit<DeadLetter, "id">) }));
}
