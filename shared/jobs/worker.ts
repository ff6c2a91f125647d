// Consumes a queue with handlers keyed by job name: parse the payload, run under a deadline, check the result.
import { type BackoffStrategy, type Job, UnrecoverableError, Worker } from "bullmq";
import type { Redis } from "ioredis";
import { ApiError } from "../errors.ts";
import type { Logger } from "../logger.ts";
import { JOB_CATALOG, type JobName, type JobResult, type ParsedJobPayload, queuePrefix } from "./catalog.ts";
import type { JobEnvelope } from "./producer.ts";

export interface JobContext {
  job: Job<JobEnvelope>;
  /** Aborted when the job's deadline passes or the worker shuts down hard. */
  signal: AbortSignal;
  log: Logger;
}

export type JobHandlers<Names extends JobName> = {
  [Name in Names]: (payload: ParsedJobPayload<Name>, context: JobContext) => Promise<JobResult<Name>>;
};

export interface JobWorkerOptions<Names extends JobName> {
  queue: string;
  prefix: string;
  /** A connection made with the "worker" role; the caller closes it after `close()`. */
  connection: Redis;
  handlers: JobHandlers<Names>;
  concurrency?: number;
  log: Logger;
  /** How long a job may go without a lock renewal before another worker takes it over. */
  lockDurationMs?: number;
  /** Delays for jobs whose catalog backoff is "custom". */
  backoffStrategy?: BackoffStrategy;
}

export interface JobWorker {
  worker: Worker<JobEnvelope>;
  /** Stops taking jobs, lets running ones finish until the deadline, then aborts them. */
  close(deadlineMs: number): Promise<void>;
}

export function startJobWorker<Names extends JobName>(options: JobWorkerOptions<Names>): JobWorker {
  const running = new Set<AbortController>();
  const handlers = options.handlers as Record<string, (payload: unknown, context: JobContext) => Promise<unknown>>;

  const processJob = async (job: Job<JobEnvelope>) => {
    const definition = JOB_CATALOG[job.name as JobName];
    const handler = handlers[job.name];
    if (!definition || !handler) throw new UnrecoverableError(`no handler for job ${job.name} on ${options.queue}`);
    const parsed = definition.payload.safeParse(job.data?.payload);
    if (!parsed.success) throw new UnrecoverableError(`invalid payload for ${job.name}: ${parsed.error.message}`);
    // A job that never started after its caller stopped waiting is dropped (rolled back); one that started and
    // stalled (its worker died) is run again to the end: its handler is idempotent and finishes what it began.
    if (job.data.expiresAt && Date.parse(job.data.expiresAt) < Date.now() && (job.stalledCounter ?? 0) === 0) {
      throw new UnrecoverableError(`${job.name} expired before it started: the caller stopped waiting`);
    }
    const controller = new AbortController();
    running.add(controller);
    const timer = setTimeout(
      () => controller.abort(new Error(`${job.name} timed out after ${definition.timeoutMs} ms`)),
      definition.timeoutMs,
    );
    const log = options.log.child({ job: job.name, jobId: job.id, attempt: job.attemptsMade + 1 });
    try {
      const result = await raceAbort(handler(parsed.data, { job, signal: controller.signal, log }), controller.signal);
      return definition.result.parse(result);
    } catch (error) {
      if (error instanceof ApiError) {
        // Contract errors are answers, not failures worth retrying.
        throw new UnrecoverableError(JSON.stringify(error.toEnvelope()));
      }
      throw error;
    } finally {
      clearTimeout(timer);
      running.delete(controller);
    }
  };

  const worker = new Worker<JobEnvelope>(options.queue, processJob, {
    connection: options.connection,
    prefix: queuePrefix(options.prefix, options.queue),
    concurrency: options.concurrency ?? 1,
    lockDuration: options.lockDurationMs ?? 30_000,
    stalledInterval: Math.max(5_000, Math.floor((options.lockDurationMs ?? 30_000) / 2)),
    maxStalledCount: 3,
    settings: options.backoffStrategy ? { backoffStrategy: options.backoffStrategy } : undefined,
    autorun: true,
  });
  worker.on("failed", (job, error) =>
    options.log.warn({ job: job?.name, jobId: job?.id, err: error.message }, "job failed"),
  );
  worker.on("error", (error) => options.log.error({ err: error.message }, "worker error"));

  return {
    worker,
    async close(deadlineMs: number) {
      const graceful = worker.close();
      const timedOut = await Promise.race([
        graceful.then(() => false),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(true), deadlineMs).unref()),
      ]);
      if (timedOut) {
        for (const controller of running) controller.abort(new Error("worker shutting down"));
        await worker.close(true);
      }
    },
  };
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
