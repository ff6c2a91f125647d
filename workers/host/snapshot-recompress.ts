// POST /snapshots/{id}/compress on the host: a snapshot in `none` or `error` gets a new compression run, optionally
// with a new policy. Never while one is queued or running: that is a 409.
import { ApiError, notFound } from "../../shared/errors.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { madeBy, nextStamp } from "../../shared/host-records.ts";
import { queueName } from "../../shared/jobs/catalog.ts";
import { compressionJobId } from "../../shared/jobs/compression-jobs.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import { publishSnapshotRecord, type SnapshotStore } from "../../shared/snapshots/store.ts";
import type { SnapshotManager } from "./snapshots.ts";

/** BullMQ job states in which the compression job will still run (or runs now). */
const PENDING_JOB_STATES = new Set(["waiting", "active", "delayed", "prioritized", "waiting-children"]);

export interface SnapshotRecompressorOptions {
  hostId: string;
  store: SnapshotStore;
  events: EventStream;
  jobs: JobProducer;
  snapshots: SnapshotManager;
}

export class SnapshotRecompressor {
  constructor(private readonly options: SnapshotRecompressorOptions) {}

  async recompress(
    snapshotId: string,
    compression: Snapshot["compression"],
    jobId?: string,
  ): Promise<{ snapshot: Snapshot; event_id: string }> {
    const { store, events, jobs, hostId, snapshots } = this.options;
    const queue = jobs.queue(queueName("compression", hostId));
    const queued = await store.withLock(snapshotId, async () => {
      const record = await store.read(snapshotId);
      if (!record) throw notFound("snapshot", snapshotId);
      if (!record.memory_payload) {
        throw new ApiError(
          "invalid_request",
          `snapshot ${snapshotId} is a Stopped snapshot: it has no memory to compress`,
        );
      }
      // A re-run of the same job answers what the first run did.
      if (madeBy(record, jobId))
        return { snapshot: record.snapshot, event_id: await publishSnapshotRecord(events, record) };
      const state = record.snapshot.compression_state;
      const job = await queue.getJob(compressionJobId(snapshotId));
      const jobState = job ? await job.getState() : undefined;
      if (state === "compressing" || state === "compressed" || (jobState && PENDING_JOB_STATES.has(jobState))) {
        const what = state === "none" ? "queued for compression" : state;
        throw new ApiError(
          "invalid_state",
          `snapshot ${snapshotId} is ${what}: only none or error can be compressed again`,
        );
      }
      await job?.remove(); // a finished job keeps its id: the new run needs it
      const snapshot: Snapshot = {
        ...record.snapshot,
        compression,
        compression_state: "none",
        compression_error: null,
      };
      const next = { ...record, snapshot, ...nextStamp(record, "snapshot.compression.queued", jobId) };
      await store.write(next);
      return { snapshot, event_id: await publishSnapshotRecord(events, next) };
    });
    // A failed enqueue is not lost: the compression worker's reconcile queues every snapshot that wants compression.
    await snapshots.queueCompression(snapshotId).catch(() => {});
    return queued;
  }
}
