// The test guest prints "tick N" every second on its serial console: read the counter through the logs endpoint.
import { waitFor } from "./fixtures.ts";

export type ApiCall = (pathAndQuery: string) => Promise<Response>;

export async function consoleTicks(api: ApiCall, instance: string): Promise<number[]> {
  const response = await api(`/instances/${instance}/logs?tail=2000`);
  if (response.status !== 200) return [];
  return (await response.text())
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .flatMap((line) => /^tick (\d+)$/.exec((JSON.parse(line.slice(6)) as string).trim())?.[1] ?? [])
    .map(Number);
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
