// The test guest prints "tick N" every second on its serial console: read the counter through the logs endpoint.
import { waitFor } from "./fixtures.ts";

export type ApiCall = (pathAndQuery: string) => Promise<Response>;

/** The most lines the logs endpoint answers with: a console longer than this is read as its last lines only. */
export const CONSOLE_TAIL = 10_000;

/** The tick numbers of `tick N` lines, in order. */
export const ticksIn = (lines: string[]): number[] =>
  lines.flatMap((line) => /^tick (\d+)$/.exec(line.trim())?.[1] ?? []).map(Number);

/** The logs endpoint did not answer: the instance is not there yet, or its host is away. */
export class ConsoleUnreadable extends Error {}

/** The guest's console lines (up to the last `tail`). */
export async function consoleLines(api: ApiCall, instance: string, tail = CONSOLE_TAIL): Promise<string[]> {
  const response = await api(`/instances/${instance}/logs?tail=${tail}`);
  if (response.status !== 200) {
    throw new ConsoleUnreadable(`${instance}'s console: ${response.status} ${await response.text()}`);
  }
  return (await response.text())
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .map((line) => JSON.parse(line.slice(6)) as string);
}

/** The ticks so far; none while the console cannot be read. */
export async function consoleTicks(api: ApiCall, instance: string): Promise<number[]> {
  const lines = await consoleLines(api, instance, 2000).catch((error: unknown) => {
    if (error instanceof ConsoleUnreadable) return [];
    throw error;
  });
  return ticksIn(lines);
}

/** The latest tick once it is at least `atLeast`. */
export function waitForTick(api: ApiCall, instance: string, atLeast: number, timeoutMs = 90_000): Promise<number> {
  return waitFor(
    async () => {
      const latest = Math.max(-1, ...(await consoleTicks(api, instance)));
      return latest >= atLeast ? latest : undefined;
    },
    { timeoutMs, intervalMs: 250, what: `${instance} to reach tick ${atLeast}` },
  );
}
