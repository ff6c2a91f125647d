// Forks an instance on its host through the snapshot path: capture into a transient snapshot, fork a new instance
// from it, delete the snapshot. From Running the source is paused only for the capture and runs on afterwards.
import { ApiError } from "../../shared/errors.ts";
import type { ParsedJobPayload } from "../../shared/jobs/catalog.ts";
import type { Logger } from "../../shared/logger.ts";
import type { CommandResult, InstanceManager } from "./instances.ts";
import type { SnapshotManager } from "./snapshots.ts";

export interface InstanceForkerOptions {
  instances: InstanceManager;
  snapshots: SnapshotManager;
  log: Logger;
}

export class InstanceForker {
  constructor(private readonly options: InstanceForkerOptions) {}

  /** `jobId` makes each step idempotent as the host jobs are: a re-run of the job answers what its first run did. */
  async fork(job: ParsedJobPayload<"instance.fork">, jobId?: string): Promise<CommandResult> {
    const { instances, snapshots } = this.options;
    const step = (name: string) => (jobId ? `${jobId}:${name}` : undefined);
    // The fork exists: an earlier job for this id (a retry of a request whose API died) made it, and may have deleted
    // its transient snapshot since, so capturing again would fail. Its answer is the fork.
    const made = await instances.findRecord(job.instance.id);
    if (made) return instances.publish(made);
    const source = await instances.read(job.instance_id);
    if (source.state === "Running" && !job.from_running) {
      throw new ApiError("invalid_state", `instance ${source.name} is Running: pass from_running: true to fork it`);
    }
    await snapshots.capture(job.instance_id, job.snapshot, step("capture"));
    let forked: CommandResult;
    try {
      forked = await snapshots.fork(job.snapshot.id, job.instance, job.target_state, step("fork"));
    } catch (error) {
      await this.discard(job.snapshot.id, step("delete"));
      throw error;
    }
    const deleted = await this.discard(job.snapshot.id, step("delete"));
    // Answer with the last event appended, so the API's read-after-write wait covers the deletion too.
    return deleted ? { instance: forked.instance, event_id: deleted.event_id } : forked;
  }

  /** The fork maps what it needs (its disk is a copy, its RAM a private mapping): the snapshot can go. */
  private discard(snapshotId: string, jobId: string | undefined) {
    return this.options.snapshots.delete(snapshotId, jobId).catch((error: Error) => {
      this.options.log.warn({ snapshotId, err: error.message }, "transient fork snapshot not deleted");
      return undefined;
    });
  }
}
