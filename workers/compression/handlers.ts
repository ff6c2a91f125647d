// Handlers of a host's compression queue, keyed by job name.
import type { StandbyMemory } from "../../shared/instances/standby-memory.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import { type CompressSnapshotDeps, compressSnapshot } from "./compress-snapshot.ts";

export function createCompressionHandlers(
  deps: CompressSnapshotDeps & { standbyMemory: StandbyMemory; jobs: JobProducer; hostId: string },
): JobHandlers<"snapshot.compress" | "instance.standby.compress"> {
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
      return { compression_state: outcome };
    },
  };
}
