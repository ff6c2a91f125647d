// Handlers of a host's compression queue, keyed by job name.
import type { StandbyMemory } from "../../shared/instances/standby-memory.ts";
import { uploadJobId } from "../../shared/jobs/compression-jobs.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import { type CompressSnapshotDeps, compressSnapshot } from "./compress-snapshot.ts";
import { type UploadSnapshotDeps, uploadSnapshot } from "./upload-snapshot.ts";

export function createCompressionHandlers(
  deps: CompressSnapshotDeps & {
    standbyMemory: StandbyMemory;
    jobs: JobProducer;
    hostId: string;
  } & Pick<UploadSnapshotDeps, "redis" | "prefix">,
): JobHandlers<"snapshot.compress" | "instance.standby.compress" | "snapshot.upload"> {
  const queueUpload = (snapshotId: string) =>
    deps.jobs.enqueueOnce(
      "snapshot.upload",
      { snapshot_id: snapshotId },
      { hostId: deps.hostId, jobId: uploadJobId(snapshotId) },
    );
  /** The host agent owns the instance's record: it is told, and reads where the compression stands itself. */
  const tellHost = (instanceId: string, error: string | null) =>
    deps.jobs.enqueue(
      "instance.standby.compression.changed",
      { instance_id: instanceId, error },
      { hostId: deps.hostId },
    );
  return {
    "instance.standby.compress": async ({ instance_id, algorithm, level }, { signal, job }) => {
      try {
        const outcome = await deps.standbyMemory.compress(instance_id, { algorithm, level }, signal);
        if (outcome === "compressed") await tellHost(instance_id, null);
        return { outcome };
      } catch (error) {
        const isLastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
        if (isLastAttempt && !signal.aborted) await tellHost(instance_id, (error as Error).message).catch(() => {});
        throw error;
      }
    },
    "snapshot.compress": async ({ snapshot_id }, { signal, job }) => {
      const isLastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const outcome = await compressSnapshot(deps, snapshot_id, { signal, isLastAttempt });
      // The payload changed: the store gets the image (the record says uploading already; reconcile queues it too).
      if (outcome === "compressed" && deps.objects) await queueUpload(snapshot_id);
      return { compression_state: outcome };
    },
    "snapshot.upload": async ({ snapshot_id }, { signal }) => {
      // Queued only with an object store; a job left from a run that had one has nothing to do without it.
      if (!deps.objects) return { storage: "skipped" as const };
      return { storage: await uploadSnapshot({ ...deps, objects: deps.objects }, snapshot_id, signal) };
    },
  };
}
