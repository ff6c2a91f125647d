// Compression work must never be lost: any snapshot that wants compression and is not done, and any Standby
// instance whose standby asked for compression and whose RAM is still raw, gets a job again (after a crash, a lost
// enqueue, a job that stalled out, or Redis losing its data). Job ids are per snapshot and per instance, so this
// never duplicates.
import { type StandbyMemory, standbyCompressionJobId } from "../../shared/instances/standby-memory.ts";
import { compressionJobId } from "../../shared/jobs/compression-jobs.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { Logger } from "../../shared/logger.ts";
import type { SnapshotStore } from "../../shared/snapshots/store.ts";
import { needsCompression } from "./compress-snapshot.ts";

export async function requeueUnfinishedCompressions(
  store: SnapshotStore,
  jobs: JobProducer,
  queueName: string,
  hostId: string,
  log: Logger,
): Promise<string[]> {
  const requeued: string[] = [];
  for (const record of await store.list()) {
    if (!needsCompression(record)) continue;
    const id = record.snapshot.id;
    if (await jobPending(jobs, queueName, compressionJobId(id))) continue;
    await jobs.enqueue("snapshot.compress", { snapshot_id: id }, { hostId, jobId: compressionJobId(id) });
    requeued.push(id);
  }
  if (requeued.length) log.warn({ snapshots: requeued }, "requeued compressions whose job had vanished");
  return requeued;
}

export async function requeueStandbyCompressions(
  standbyMemory: StandbyMemory,
  jobs: JobProducer,
  queueName: string,
  hostId: string,
  log: Logger,
  now = Date.now(),
): Promise<string[]> {
  const requeued: string[] = [];
  for (const { instanceId, intent } of await standbyMemory.pendingCompressions()) {
    const jobId = standbyCompressionJobId(instanceId);
    if (await jobPending(jobs, queueName, jobId)) continue;
    const { algorithm, level } = intent;
    const delayMs = Math.max(0, Date.parse(intent.not_before) - now);
    await jobs.enqueue(
      "instance.standby.compress",
      { instance_id: instanceId, algorithm, level },
      { hostId, jobId, delayMs },
    );
    requeued.push(instanceId);
  }
  if (requeued.length) log.warn({ instances: requeued }, "requeued standby compressions whose job had vanished");
  // Packed, but the host never heard (its job lost with Redis's data): it is told again.
  const untold = await standbyMemory.unannouncedCompressions();
  for (const instanceId of untold) {
    await jobs.enqueue("instance.standby.compression.changed", { instance_id: instanceId, error: null }, { hostId });
  }
  if (untold.length) log.warn({ instances: untold }, "told the host again of standby compressions it had not shown");
  return requeued;
}

/** True while a job of that id waits or runs; a finished or failed one is removed so that its id can be used again. */
async function jobPending(jobs: JobProducer, queueName: string, jobId: string): Promise<boolean> {
  const existing = await jobs.queue(queueName).getJob(jobId);
  const state = existing ? await existing.getState() : undefined;
  if (state && state !== "completed" && state !== "failed" && state !== "unknown") return true;
  await existing?.remove().catch(() => {});
  return false;
}
