// A request under an Idempotency-Key outlives its client's wait: at the deadline the client gets a 504 and the
// request runs on to its own answer, which the key then replays to a retry.
import { AsyncLocalStorage } from "node:async_hooks";

interface RequestSlot {
  /** Answers the client now; the request's own answer, when it comes, goes only to the idempotency record. */
  answerEarly: (response: Response) => void;
  /** Set for a detachable request: how long its job and read-model waits may last. */
  detachedWaitMs?: number;
}

const requestSlots = new AsyncLocalStorage<RequestSlot>();

type Fetch<Rest extends unknown[]> = (request: Request, ...rest: Rest) => Response | Promise<Response>;

/** Wraps an app's fetch so that a request can hand its client an answer early and carry on. */
export function allowEarlyAnswers<Rest extends unknown[]>(fetch: Fetch<Rest>): Fetch<Rest> {
  return (request, ...rest) =>
    new Promise<Response>((resolve, reject) => {
      const slot: RequestSlot = { answerEarly: resolve };
      requestSlots.run(slot, () => Promise.resolve(fetch(request, ...rest))).then(resolve, reject);
    });
}

/**
 * Runs `work` for the current request; if it has not finished within `answerWithinMs`, answers the client with
 * `lateAnswer()` and lets `work` go on for up to `detachedWaitMs`. Resolves when `work` does.
 */
export async function runDetachable(
  work: () => Promise<void>,
  options: { answerWithinMs: number; detachedWaitMs: number; lateAnswer: () => Response },
): Promise<void> {
  const slot = requestSlots.getStore();
  if (!slot) return work();
  slot.detachedWaitMs = options.detachedWaitMs;
  const timer = setTimeout(() => slot.answerEarly(options.lateAnswer()), options.answerWithinMs);
  try {
    await work();
  } finally {
    clearTimeout(timer);
  }
}

/** How long the current request may wait for a job or the read model: its detached budget, or the client's. */
export function resultWaitMs(clientWaitMs: number): number {
  return requestSlots.getStore()?.detachedWaitMs ?? clientWaitMs;
}
