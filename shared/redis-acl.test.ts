import { readFileSync } from "node:fs";
import { Queue, QueueEvents, Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestRedis, type TestRedis } from "../test/helpers/redis-server.ts";
import { listHosts, renewHostLease } from "./hosts.ts";
import { queuePrefix } from "./jobs/catalog.ts";
import { snapfleetAclRule } from "./redis-acl.ts";

const PREFIX = "acl-test";
let server: TestRedis;
let admin: Redis;
const connections: Redis[] = [];
const asUser = () => {
  const connection = new Redis(`redis://snapfleet:pw-for-the-test@127.0.0.1:${server.port}`, {
    maxRetriesPerRequest: null,
  });
  connections.push(connection);
  return connection;
};

beforeAll(async () => {
  server = await startTestRedis();
  admin = new Redis(server.url);
  await admin.call("ACL", "SETUSER", ...snapfleetAclRule("snapfleet", "pw-for-the-test", PREFIX));
  await admin.call("ACL", "LOG", "RESET");
});

afterAll(async () => {
  for (const connection of connections) connection.disconnect();
  admin?.disconnect();
  await server?.stop();
});

describe("the least-privilege Redis user", () => {
  it("is the one docs/security.md ships", () => {
    const line = ["ACL SETUSER", ...snapfleetAclRule("snapfleet", "<password>", "snapfleet")].join(" ");
    expect(readFileSync("docs/security.md", "utf8")).toContain(line);
  });

  it("runs BullMQ jobs and host presence without one denial", async () => {
    // The queue's keys as the service names them: the prefix, then the queue as a Cluster hash tag.
    const prefix = queuePrefix(PREFIX, "q");
    const queue = new Queue("q", { connection: asUser(), prefix });
    const events = new QueueEvents("q", { connection: asUser(), prefix });
    const worker = new Worker("q", async (job) => ({ doubled: job.data.n * 2 }), { connection: asUser(), prefix });
    try {
      await events.waitUntilReady();
      const job = await queue.add("double", { n: 21 });
      expect(await job.waitUntilFinished(events, 20_000)).toEqual({ doubled: 42 });
      expect((await queue.getJobCounts("completed")).completed).toBe(1);
    } finally {
      await worker.close();
      await events.close();
      await queue.close();
    }
    const user = asUser();
    await renewHostLease(user, PREFIX, "h1");
    expect(await listHosts(user, PREFIX)).toEqual([]); // no record announced: the lease alone lists nothing
    expect(await admin.call("ACL", "LOG")).toEqual([]);
  });

  it.each([
    ["CLIENT", "LIST"],
    ["CONFIG", "GET", "*"],
    ["KEYS", "*"],
    ["FLUSHALL"],
    ["ACL", "LIST"],
    ["GET", "elsewhere:key"],
  ])("is refused %s", async (command, ...args) => {
    await expect(asUser().call(command, ...args)).rejects.toThrow(/NOPERM/);
  });
});
