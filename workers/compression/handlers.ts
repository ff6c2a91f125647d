// Handlers of a host's compression queue, keyed by job name.
import type { StandbyMemory } from "../../shared/instances/standby-memory.ts";
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import { type CompressSnapshotDeps, compressSnapshot } from "./compress-snapshot.ts";

export function createCompressionHandlers(
  deps: CompressSnapshotDeps & { standbyMemory: StandbyMemory },
): JobHandlers<"snapshot.compress" | "instance.standby.compress"> {
  return {
    "instance.standby.compress": async ({ instance_id, algorithm, level }, { signal }) => ({
      outcome: await deps.standbyMemory.compress(instance_id, { algorithm, level }, signal),
    }),
    "snapshot.compress": async ({ snapshot_id }, { signal, job }) => {
      const isLastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const outcome = await compressSnapshot(deps, snapshot_id, { signal, isLastAttempt });
      return { compression_state: outcome };
    },
  };
}
