// Compression work must never be lost: any snapshot that wants compression and is not done gets a job again
// (after a crash, a lost enqueue, or a job that stalled out). Job ids are per snapshot, so this never duplicates.
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
    const existing = await jobs.queue(queueName).getJob(compressionJobId(id));
    const state = existing ? await existing.getState() : undefined;
    if (state && state !== "completed" && state !== "failed" && state !== "unknown") continue;
    await existing?.remove().catch(() => {});
    await jobs.enqueue("snapshot.compress", { snapshot_id: id }, { hostId, jobId: compressionJobId(id) });
    requeued.push(id);
  }
  if (requeued.length) log.warn({ snapshots: requeued }, "requeued compressions whose job had vanished");
  return requeued;
}
