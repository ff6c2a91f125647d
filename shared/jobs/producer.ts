// Puts catalog jobs on their queues and, for request/response jobs, awaits their result with a deadline.
import { randomBytes } from "node:crypto";
import { Queue, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import { ApiError, ERROR_CODES, type ErrorCode, unavailable } from "../errors.ts";
import { connectRedis, DeadlineError, redisCall } from "../redis.ts";
import { JOB_CATALOG, type JobName, type JobPayload, type JobResult, queueName, queuePrefix } from "./catalog.ts";

export interface JobEnvelope {
  payload: unknown;
  /** ISO time after which a worker must not start the job (the caller stopped waiting). */
  expiresAt?: string;
}

export interface JobProducerOptions {
  redisUrl: string;
  prefix: string;
  /** The producer connection: created with enableOfflineQueue false so commands fail at once when Redis is down. */
  connection: Redis;
  commandTimeoutMs: number;
  /** A queue's listener (QueueEvents on a blocking connection) closes once no run has waited on it this long. */
  listenerIdleMs?: number;
}

/**
 * A run's wait for its result: a QueueEvents reader on a blocking connection of its own, per queue. Shared by the runs
 * on that queue; closed once none has used it for a while, so that a replica that ran jobs on 1,000 hosts' queues does
 * not keep 1,000 connections (bench:fleet found them growing as replicas × hosts).
 */
interface Listener {
  events: Promise<QueueEvents>;
  connection: Redis;
  users: number;
  idle?: NodeJS.Timeout;
}

const LISTENER_IDLE_MS = 60_000;

export class JobProducer {
  private readonly queues = new Map<string, Queue>();
  private readonly listeners = new Map<string, Listener>();

  constructor(private readonly options: JobProducerOptions) {}

  /** Adds a job and returns its id; fails within the command timeout when Redis is unreachable. */
  async enqueue<Name extends JobName>(
    name: Name,
    payload: JobPayload<Name>,
    target: { hostId?: string; jobId?: string; expiresAt?: Date; delayMs?: number } = {},
  ): Promise<string> {
    const definition = JOB_CATALOG[name];
    const parsed = definition.payload.parse(payload);
    this.assertConnected(`enqueue ${name}`);
    const queue = this.queue(queueName(definition.queue, target.hostId));
    const data: JobEnvelope = { payload: parsed, expiresAt: target.expiresAt?.toISOString() };
    const job = await this.redisCall(
      queue.add(name, data, {
        // Our own random ids: BullMQ's counter starts again at 1 in a Redis that lost its data, and host handlers
        // recognise a re-run of a job by its id.
        jobId: target.jobId ?? `job_${randomBytes(12).toString("hex")}`,
        delay: target.delayMs,
        attempts: definition.attempts,
        backoff: { type: definition.backoff.type, delay: definition.backoff.delayMs },
        removeOnComplete: { age: 3_600, count: 1_000 },
        removeOnFail: { age: 24 * 3_600 },
      }),
      `enqueue ${name}`,
    );
    return job.id!;
  }

  /**
   * True while a job of that id waits or runs on the queue; a finished or failed one is removed so that its id can be
   * used again (ids make a job once per subject: one compression per snapshot, one upload at a time).
   */
  async pending(queue: string, jobId: string): Promise<boolean> {
    const existing = await this.queue(queue).getJob(jobId);
    const state = existing ? await existing.getState() : undefined;
    if (state && state !== "completed" && state !== "failed" && state !== "unknown") return true;
    await existing?.remove().catch(() => {});
    return false;
  }

  /** Adds the job under `jobId` unless one with that id waits or runs; returns whether it was added. */
  async enqueueOnce<Name extends JobName>(
    name: Name,
    payload: JobPayload<Name>,
    target: { hostId?: string; jobId: string; delayMs?: number },
  ): Promise<boolean> {
    if (await this.pending(queueName(JOB_CATALOG[name].queue, target.hostId), target.jobId)) return false;
    await this.enqueue(name, payload, target);
    return true;
  }

  /** Runs a job on a host and returns its parsed result; ApiErrors thrown by the handler come back as they were. */
  async run<Name extends JobName>(
    name: Name,
    payload: JobPayload<Name>,
    target: { hostId?: string; timeoutMs: number },
  ): Promise<JobResult<Name>> {
    const definition = JOB_CATALOG[name];
    this.assertConnected(`run ${name}`);
    const queue = queueName(definition.queue, target.hostId);
    const listener = this.listen(queue);
    try {
      const events = await this.redisCall(listener.events, `listen on ${queue}`);
      const expiresAt = new Date(Date.now() + target.timeoutMs);
      const jobId = await this.enqueue(name, payload, { hostId: target.hostId, expiresAt });
      const job = await this.queue(queue).getJob(jobId);
      if (!job) throw new ApiError("internal_error", `job ${jobId} vanished`);
      try {
        const result = await job.waitUntilFinished(events, target.timeoutMs);
        return definition.result.parse(result) as JobResult<Name>;
      } catch (error) {
        throw toApiError(error, name, target.timeoutMs);
      }
    } finally {
      this.release(queue, listener);
    }
  }

  /** The queues whose listener is open now. */
  listening(): string[] {
    return [...this.listeners.keys()];
  }

  async close(): Promise<void> {
    const listeners = [...this.listeners.values()];
    this.listeners.clear();
    await Promise.allSettled(listeners.map((listener) => closeListener(listener)));
    await Promise.allSettled([...this.queues.values()].map((queue) => queue.close()));
  }

  queue(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.options.connection, prefix: queuePrefix(this.options.prefix, name) });
      queue.on("error", () => {}); // surfaced through the failing call instead
      this.queues.set(name, queue);
    }
    return queue;
  }

  /** The queue's listener, opened if none is, counted as used until release(). */
  private listen(name: string): Listener {
    let listener = this.listeners.get(name);
    if (!listener) {
      const connection = connectRedis(this.options.redisUrl, "worker", this.options.commandTimeoutMs);
      connection.on("error", () => {});
      const queueEvents = new QueueEvents(name, {
        connection,
        prefix: queuePrefix(this.options.prefix, name),
        autorun: true,
      });
      queueEvents.on("error", () => {});
      const opened: Listener = { events: queueEvents.waitUntilReady().then(() => queueEvents), connection, users: 0 };
      opened.events.catch(() => {
        if (this.listeners.get(name) === opened) this.listeners.delete(name);
        void closeListener(opened);
      });
      this.listeners.set(name, opened);
      listener = opened;
    }
    clearTimeout(listener.idle);
    listener.users++;
    return listener;
  }

  /** A run is done with the listener; the last one out leaves it to close after the idle time. */
  private release(name: string, listener: Listener): void {
    listener.users--;
    if (listener.users > 0 || this.listeners.get(name) !== listener) return;
    listener.idle = setTimeout(() => {
      if (listener.users > 0 || this.listeners.get(name) !== listener) return;
      this.listeners.delete(name);
      void closeListener(listener);
    }, this.options.listenerIdleMs ?? LISTENER_IDLE_MS);
    listener.idle.unref();
  }

  /**
   * Fails at once while the producer connection is down. Also keeps BullMQ from starting a queue on a connection
   * that is still connecting: closing such a queue leaves a late rejection nobody listens to.
   */
  private assertConnected(what: string): void {
    if (this.options.connection.status !== "ready") {
      throw unavailable(`queue unavailable (${what}): redis is ${this.options.connection.status}`);
    }
  }

  private redisCall<T>(promise: Promise<T>, what: string): Promise<T> {
    return redisCall(promise, this.options.commandTimeoutMs, `queue: ${what}`);
  }
}

/** Handlers throw ApiErrors; the worker runtime serialises them into the failed reason as JSON. */
export function toApiError(error: unknown, jobName: string, timeoutMs: number): ApiError {
  if (error instanceof ApiError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof DeadlineError || /timed out before finishing/.test(message)) {
    return new ApiError("unavailable", `${jobName} did not finish within ${timeoutMs} ms`, {
      status: 504,
      cause: error,
    });
  }
  const envelope = parseErrorEnvelope(message);
  if (envelope) return new ApiError(envelope.code, envelope.message, { cause: error });
  return new ApiError("internal_error", `${jobName} failed: ${message}`, { cause: error });
}

export function parseErrorEnvelope(text: string): { code: ErrorCode; message: string } | undefined {
  try {
    const value = JSON.parse(text) as { code?: unknown; message?: unknown };
    if (ERROR_CODES.includes(value.code as ErrorCode) && typeof value.message === "string") {
      return { code: value.code as ErrorCode, message: value.message };
    }
  } catch {}
  return undefined;
}

async function closeListener(listener: Listener): Promise<void> {
  clearTimeout(listener.idle);
  const events = await listener.events.catch(() => undefined);
  await events?.close().catch(() => {});
  listener.connection.disconnect();
}
