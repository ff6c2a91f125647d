// The test guest prints "tick N" every second on its serial console: read those numbers through the API.
import { waitFor } from "./fixtures.ts";
import type { RunningService } from "./service.ts";

export async function guestTicks(service: RunningService, name: string): Promise<number[]> {
  const response = await service.api(`/instances/${name}/logs?tail=2000`);
  return (await response.text())
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .flatMap((line) => /^tick (\d+)$/.exec((JSON.parse(line.slice(6)) as string).trim())?.[1] ?? [])
    .map(Number);
}

/** The latest tick once it is at least `atLeast`. */
export function waitForTick(service: RunningService, name: string, atLeast: number): Promise<number> {
  return waitFor(
    async () => {
      const latest = Math.max(-1, ...(await guestTicks(service, name)));
      return latest >= atLeast ? latest : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250, what: `${name} to reach tick ${atLeast}` },
  );
}
