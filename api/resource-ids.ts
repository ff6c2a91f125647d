// Ids of the resources a request makes. A request with an Idempotency-Key runs with its claim's seed, and its ids
// derive from it in the order it asks for them: a retry that takes over the key of a request whose API process died
// makes the same ids, so it adopts that request's name reservation and its hosts answer with what it made already.
// Without a key (or outside a request: a schedule run) ids are random. Likewise the host such a request places its
// resource on is recorded in its claim, and a retry that takes it over places it there again.
import { AsyncLocalStorage } from "node:async_hooks";
import { idFrom, newId } from "../shared/ids.ts";

/** The claim's record of where its request placed its resource. */
export interface Placement {
  recorded(): Promise<string | undefined>;
  /** Records `hostId` unless a host is recorded already; returns the recorded one. */
  record(hostId: string): Promise<string>;
}

const seeds = new AsyncLocalStorage<{ seed: string; next: number; placement?: Placement }>();

/** Runs `work` with ids derived from `seed`, and the host choice kept in `placement`. */
export function withResourceSeed<T>(seed: string, work: () => T, placement?: Placement): T {
  return seeds.run({ seed, next: 0, placement }, work);
}

/**
 * The host for this request's resource: `choose(recorded)` gets the host a request this one took over chose (to
 * check it is still usable) or undefined, and its answer is recorded for a later takeover.
 */
export async function placeOnce(choose: (recorded: string | undefined) => Promise<string>): Promise<string> {
  const placement = seeds.getStore()?.placement;
  if (!placement) return choose(undefined);
  const recorded = await placement.recorded();
  const chosen = await choose(recorded);
  return recorded ?? placement.record(chosen);
}

/** The next resource id of this request. */
export function newResourceId(): string {
  const current = seeds.getStore();
  if (!current) return newId();
  return idFrom(`${current.seed}:${current.next++}`);
}
