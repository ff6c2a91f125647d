// Waits for an instance to reach a state, woken as that instance's events are applied to the read model: by this
// replica's projector, or by another's (seen on the event stream, then awaited in the database).
import { notFound } from "../../shared/errors.ts";
import { subjectOf } from "../../shared/events/catalog.ts";
import type { StreamEntry } from "../../shared/events/stream.ts";
import type { Instance, InstanceState } from "../../shared/schemas/instance.ts";
import type { Db } from "../db/database.ts";
import type { EventFeed } from "../routes/events-feed.ts";
import type { Projector } from "./projector.ts";
import { findInstance } from "./queries.ts";

/** How long an event seen on the stream is awaited in the read model: any replica applies it within milliseconds. */
const APPLY_WAIT_MS = 10_000;

export interface WaitOutcome {
  state: InstanceState;
  state_error?: string | null;
  timed_out: boolean;
}

/** A state the instance cannot leave on its own: waiting on for another one would only run into the timeout. */
const ERROR_STATE: InstanceState = "Unknown";

/**
 * Resolves as soon as the read model shows `instance` in `target` (or in the error state), or with its current
 * state and `timed_out` after `timeoutMs` or when `signal` aborts. Rejects with 404 if the instance is deleted.
 */
export function waitForInstanceState(
  deps: { db: Db; projector: Projector; eventFeed: EventFeed },
  instance: Instance,
  target: InstanceState,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<WaitOutcome> {
  return new Promise((resolve, reject) => {
    let latest = instance;
    let checks = Promise.resolve();
    const outcome = (timedOut: boolean): WaitOutcome => ({
      state: latest.state,
      ...(latest.state === ERROR_STATE ? { state_error: latest.state_error } : {}),
      timed_out: timedOut,
    });
    let settled = false;
    const settle = (finish: () => void) => {
      settled = true;
      clearTimeout(timer);
      unsubscribe();
      unfollow();
      signal.removeEventListener("abort", onAbort);
      finish();
    };
    const check = async () => {
      const current = await findInstance(deps.db, instance.id);
      if (!current) return settle(() => reject(notFound("instance", instance.id)));
      latest = current;
      if (current.state === target || current.state === ERROR_STATE) settle(() => resolve(outcome(false)));
    };
    // Checks run one after another, so a slow read never overwrites a newer one.
    const enqueueCheck = () => {
      checks = checks.then(check).catch((error: unknown) => settle(() => reject(error)));
    };
    const onAbort = () => settle(() => resolve(outcome(true)));
    // An announcement may carry any instance's state: look again after each one too (a digest changes no state).
    const concerns = (entry: StreamEntry) =>
      entry.kind === "announcement" ||
      (entry.kind === "event" && entry.event.subject === subjectOf.instance(instance.id));
    const unsubscribe = deps.projector.onApplied((entry) => {
      if (concerns(entry)) enqueueCheck();
    });
    // Another replica may be the one applying it: wait for its row in the database, then look.
    const unfollow = deps.eventFeed.onEntry((entry) => {
      if (!concerns(entry)) return;
      if (entry.kind !== "event") return enqueueCheck();
      deps.projector.waitFor(entry.event.id, APPLY_WAIT_MS).then(
        () => settled || enqueueCheck(),
        () => {}, // not applied in time: the timeout answers
      );
    });
    const timer = setTimeout(onAbort, timeoutMs);
    signal.addEventListener("abort", onAbort);
    if (signal.aborted) return onAbort();
    // It may have got there between the caller's read and subscribing, or before the stream tail was live: look now
    // and once the tail is.
    enqueueCheck();
    deps.eventFeed.tailing.then(() => settled || enqueueCheck());
  });
}
