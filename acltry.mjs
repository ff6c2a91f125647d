import { Queue, QueueEvents, Worker } from "bullmq";
import { Redis } from "ioredis";

const admin = new Redis(6999);
await admin.call(
  "ACL",
  "SETUSER",
  "sf",
  "reset",
  "on",
  ">pw",
  "~pfx:*",
  "&pfx:*",
  "+@all",
  "-@admin",
  "-@dangerous",
  "+info",
  "-script|flush",
  "-function|flush",
);
await admin.call("ACL", "LOG", "RESET");
const url = "redis://sf:pw@127.0.0.1:6999";
const conn = () => new Redis(url, { maxRetriesPerRequest: null });
const q = new Queue("q1", { connection: conn(), prefix: "pfx" });
const ev = new QueueEvents("q1", { connection: conn(), prefix: "pfx" });
await ev.waitUntilReady();
const w = new Worker("q1", async (job) => ({ ok: job.data.n }), { connection: conn(), prefix: "pfx" });
const job = await q.add("j", { n: 1 });
console.log("result", await job.waitUntilFinished(ev, 10000));
console.log(await q.getJobCounts());
await w.close();
await ev.close();
await q.close();
console.log("acl log", JSON.stringify(await admin.call("ACL", "LOG")));
admin.disconnect();
