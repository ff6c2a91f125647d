// Bounded parallelism for chunk work: an ordered window (compression) and a worker pool (decompression).

/** Limits how many tasks run at once. */
export class Semaphore {
  private readonly waiting: (() => void)[] = [];

  constructor(private available: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.available > 0) this.available--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      const wake = this.waiting.shift();
      if (wake) wake();
      else this.available++;
    }
  }
}

/**
 * Produces results for items 0..count-1 with at most `window` in flight and consumes them in order; on failure
 * or abort it waits for the items in flight before rethrowing, so nothing touches the files afterwards.
 */
export async function runInOrder<T>(
  count: number,
  window: number,
  produce: (item: number) => Promise<T>,
  consume: (item: number, result: T) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  const inFlight: Promise<T>[] = [];
  let next = 0;
  try {
    for (let item = 0; item < count; item++) {
      while (next < count && next - item < window) {
        signal?.throwIfAborted();
        const result = produce(next++);
        result.catch(() => {}); // awaited below, in order; this only keeps an early failure from being "unhandled"
        inFlight.push(result);
      }
      const result = await inFlight.shift()!;
      signal?.throwIfAborted();
      await consume(item, result);
    }
  } finally {
    await Promise.allSettled(inFlight);
  }
}

/** Runs `work` for items 0..count-1 on `workers` concurrent loops; the first failure stops the others. */
export async function runWorkers(
  count: number,
  workers: number,
  work: (item: number) => Promise<void>,
  signal?: AbortSignal,
): Promise<void> {
  let next = 0;
  let failed = false;
  const loop = async () => {
    while (!failed && next < count) {
      signal?.throwIfAborted();
      const item = next++;
      try {
        await work(item);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(workers, count) }, loop));
  const failure = results.find((result) => result.status === "rejected");
  if (failure) throw failure.reason;
}
