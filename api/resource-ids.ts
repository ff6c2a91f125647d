// Ids of the resources a request makes. A request with an Idempotency-Key runs with its claim's seed, and its ids
// derive from it in the order it asks for them: a retry that takes over the key of a request whose API process died
// makes the same ids, so it adopts that request's name reservation and its hosts answer with what it made already.
// Without a key (or outside a request: a schedule run) ids are random.
import { AsyncLocalStorage } from "node:async_hooks";
import { idFrom, newId } from "../shared/ids.ts";

const seeds = new AsyncLocalStorage<{ seed: string; next: number }>();

/** Runs `work` with ids derived from `seed`. */
export function withResourceSeed<T>(seed: string, work: () => T): T {
  return seeds.run({ seed, next: 0 }, work);
}

/** The next resource id of this request. */
export function newResourceId(): string {
  const current = seeds.getStore();
  if (!current) return newId();
  return idFrom(`${current.seed}:${current.next++}`);
}
