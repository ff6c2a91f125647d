// Compression work must never be lost: any snapshot that wants compression and is not done, and any Standby
// instance whose standby asked for compression and whose RAM is still raw, gets a job again (after a crash, a lost
// enqueue, a job that stalled out, or Redis losing its data). Job ids are per snapshot and per instance, so this
// never duplicates.
import { type StandbyMemory, standbyCompressionJobId } from "../../shared/instances/standby-memory.ts";
import { compressionJobId, uploadJobId } from "../../shared/jobs/compression-jobs.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { Logger } from "../../shared/logger.ts";
import { needsUpload } from "../../shared/snapshots/storage.ts";
import { needsCompression, type SnapshotStore } from "../../shared/snapshots/store.ts";

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
    if (await jobs.pending(queueName, compressionJobId(id))) continue;
    await jobs.enqueue("snapshot.compress", { snapshot_id: id }, { hostId, jobId: compressionJobId(id) });
    requeued.push(id);
  }
  if (requeued.length) log.warn({ snapshots: requeued }, "requeued compressions whose job had vanished");
  return requeued;
}

/**
 * With an object store, every snapshot this host owns that the store does not hold as it is now gets an upload job
 * again: after a crash, a lost enqueue, an upload that used up its attempts, Redis losing its data, or a store that
 * was configured after the snapshot was taken.
 */
export async function requeueUploads(store: SnapshotStore, jobs: JobProducer, hostId: string, log: Logger) {
  const requeued: string[] = [];
  for (const record of await store.list()) {
    if (!needsUpload(record)) continue;
    const id = record.snapshot.id;
    if (await jobs.enqueueOnce("snapshot.upload", { snapshot_id: id }, { hostId, jobId: uploadJobId(id) })) {
      requeued.push(id);
    }
  }
  if (requeued.length) log.info({ snapshots: requeued }, "queued uploads of snapshots the object store lacks");
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
    if (await jobs.pending(queueName, jobId)) continue;
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
