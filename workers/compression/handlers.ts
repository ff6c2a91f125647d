// Handlers of a host's compression queue, keyed by job name.
import type { JobHandlers } from "../../shared/jobs/worker.ts";
import { type CompressSnapshotDeps, compressSnapshot } from "./compress-snapshot.ts";

export function createCompressionHandlers(deps: CompressSnapshotDeps): JobHandlers<"snapshot.compress"> {
  return {
    "snapshot.compress": async ({ snapshot_id }, { signal, job }) => {
      const isLastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      const outcome = await compressSnapshot(deps, snapshot_id, { signal, isLastAttempt });
      return { compression_state: outcome };
    },
  };
}
