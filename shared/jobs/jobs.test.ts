import { afterEach, describe, expect, it } from "vitest";
import { testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { ApiError } from "../errors.ts";
import { createLogger } from "../logger.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../redis.ts";
import { type JobName, queueName } from "./catalog.ts";
import { JobProducer } from "./producer.ts";
import { type JobHandlers, startJobWorker } from "./worker.ts";

const log = createLogger("jobs-test", "silent");
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup<Names extends JobName>(handlers: JobHandlers<Names>, listenerIdleMs?: number) {
  const prefix = uniquePrefix("jobs");
  const hostId = "host-a";
  const producerConnection = connectRedis(testRedisUrl(), "producer", 1_000);
  await waitForRedisReady(producerConnection, 5_000);
  const producer = new JobProducer({
    redisUrl: testRedisUrl(),
    prefix,
    connection: producerConnection,
    commandTimeoutMs: 1_000,
    listenerIdleMs,
  });
  const workerConnection = connectRedis(testRedisUrl(), "worker", 1_000);
  const worker = startJobWorker({
    queue: queueName("host", hostId),
    prefix,
    connection: workerConnection,
    handlers,
    log,
  });
  cleanups.push(async () => {
    await worker.close(2_000);
    await closeRedis(workerConnection);
    await producer.close();
    await closeRedis(producerConnection);
  });
  return { producer, worker, hostId, prefix, workerConnection };
}

describe("job runtime", () => {
  it("runs a job on a host queue and returns the parsed result", async () => {
    const { producer, hostId } = await setup({
      "host.ping": async (payload) => ({ hostId: "host-a", receivedAt: payload.sentAt }),
    });
    const sentAt = new Date().toISOString();
    const result = await producer.run("host.ping", { sentAt }, { hostId, timeoutMs: 10_000 });
    expect(result).toEqual({ hostId: "host-a", receivedAt: sentAt });
  });

  it("closes a queue's result listener once no run has waited on it for a while, and opens it again when one does", async () => {
    const { producer, hostId } = await setup(
      { "host.ping": async (payload) => ({ hostId: "host-a", receivedAt: payload.sentAt }) },
      300,
    );
    const ping = () => producer.run("host.ping", { sentAt: new Date().toISOString() }, { hostId, timeoutMs: 10_000 });
    await Promise.all([ping(), ping()]);
    expect(producer.listening()).toEqual([queueName("host", hostId)]);
    const deadline = Date.now() + 10_000;
    while (producer.listening().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(producer.listening()).toEqual([]); // one blocking connection per queue ever used, kept for ever, before
    expect(await ping()).toMatchObject({ hostId: "host-a" });
    expect(producer.listening()).toEqual([queueName("host", hostId)]);
  });

  it("keeps every key of a queue in one Redis Cluster slot: the queue's name is their hash tag", async () => {
    const { producer, hostId, prefix, workerConnection } = await setup({
      "host.ping": async (payload) => ({ hostId: "host-a", receivedAt: payload.sentAt }),
    });
    await producer.run("host.ping", { sentAt: new Date().toISOString() }, { hostId, timeoutMs: 10_000 });
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, found] = await workerConnection.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
      keys.push(...found);
      cursor = next;
    } while (cursor !== "0");
    const queue = queueName("host", hostId);
    expect(keys.filter((key) => key.includes(queue)).length).toBeGreaterThan(2); // jobs, events, meta, …
    for (const key of keys) expect(key.startsWith(`${prefix}:{${queue}}:${queue}:`), key).toBe(true);
  });

  it("brings a handler's ApiError back to the caller unchanged and does not retry it", async () => {
    let calls = 0;
    const { producer, hostId } = await setup({
      "host.ping": async () => {
        calls++;
        throw new ApiError("conflict", "instance web-1 is already Running");
      },
    });
    const error = await producer
      .run("host.ping", { sentAt: new Date().toISOString() }, { hostId, timeoutMs: 10_000 })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ code: "conflict", status: 409, message: "instance web-1 is already Running" });
    expect(calls).toBe(1);
  });

  it("rejects an invalid payload at the producer before anything is queued", async () => {
    const { producer, hostId } = await setup({ "host.ping": async () => ({ hostId: "x", receivedAt: "" }) });
    await expect(producer.enqueue("host.ping", { sentAt: "yesterday" }, { hostId })).rejects.toThrow();
  });

  it("fails a job whose stored payload does not parse, without calling the handler", async () => {
    let called = false;
    const { producer, hostId } = await setup({
      "host.ping": async () => {
        called = true;
        return { hostId: "x", receivedAt: new Date().toISOString() };
      },
    });
    const queue = producer.queue(queueName("host", hostId));
    const job = await queue.add("host.ping", { payload: { sentAt: 42 } }, { attempts: 3 });
    const failed = await waitForState(queue, job.id!, "failed");
    expect(failed.failedReason).toContain("invalid payload for host.ping");
    expect(failed.attemptsMade).toBe(1);
    expect(called).toBe(false);
  });

  it("refuses a payload id that would lead out of the data dir, without calling the handler", async () => {
    const deleted: string[] = [];
    const { producer, hostId } = await setup({
      "snapshot.delete": async ({ snapshot_id }) => {
        deleted.push(snapshot_id);
        throw new Error("not reached");
      },
    });
    await expect(producer.enqueue("snapshot.delete", { snapshot_id: "../../x" }, { hostId })).rejects.toThrow();
    const queue = producer.queue(queueName("host", hostId));
    const job = await queue.add("snapshot.delete", { payload: { snapshot_id: "../../x" } });
    const failed = await waitForState(queue, job.id!, "failed");
    expect(failed.failedReason).toContain("invalid payload for snapshot.delete");
    expect(failed.failedReason).toContain("not a resource id");
    expect(deleted).toEqual([]);
  });

  it("answers 504 when the host does not finish in time", async () => {
    const { producer, hostId } = await setup({
      "host.ping": () => new Promise(() => {}),
    });
    const error = await producer
      .run("host.ping", { sentAt: new Date().toISOString() }, { hostId, timeoutMs: 300 })
      .catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: "unavailable", status: 504 });
  });

  it("closes with a deadline, aborting a job that does not finish, and quits its connection", async () => {
    const CLOSE_DEADLINE_MS = 500;
    let abortReason = "";
    let jobStarted: () => void = () => {};
    const running = new Promise<void>((resolve) => {
      jobStarted = resolve;
    });
    const { producer, hostId, worker, workerConnection } = await setup({
      "host.ping": (_payload, { signal }) =>
        new Promise((_, reject) => {
          jobStarted();
          signal.addEventListener("abort", () => {
            abortReason = (signal.reason as Error).message;
            reject(signal.reason);
          });
        }),
    });
    await producer.enqueue("host.ping", { sentAt: new Date().toISOString() }, { hostId });
    await running;
    await worker.close(CLOSE_DEADLINE_MS);
    // Aborted by the close's deadline, not by the job's own (longer) timeout: the deadline held, with no clock read.
    expect(abortReason).toBe("worker shutting down");
    await closeRedis(workerConnection);
    expect(workerConnection.status).toBe("end");
  });
});

async function waitForState(queue: ReturnType<JobProducer["queue"]>, jobId: string, state: string) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const job = await queue.getJob(jobId);
    if (job && (await job.getState()) === state) return job;
    await new Promise((resolve) => setTimeout(resolve, 50)); // the poll interval: BullMQ's state has no event here
  }
  throw new Error(`job ${jobId} never reached ${state}`);
}
