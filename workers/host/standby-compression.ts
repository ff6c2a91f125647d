// Queues the compression of a Standby instance's RAM on this host's compression queue, after the asked delay.

import type { CompressionAlgorithm } from "../../shared/codec/options.ts";
import { standbyCompressionJobId } from "../../shared/instances/standby-memory.ts";
import { queueName } from "../../shared/jobs/catalog.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";

export async function scheduleStandbyCompression(
  jobs: JobProducer,
  hostId: string,
  instanceId: string,
  policy: { algorithm: CompressionAlgorithm; level: number },
  delayMs: number,
): Promise<void> {
  const jobId = standbyCompressionJobId(instanceId);
  // A job of an earlier standby keeps the id: remove it (a running one is not removable, and finds nothing to do).
  await jobs
    .queue(queueName("compression", hostId))
    .remove(jobId)
    .catch(() => 0);
  await jobs.enqueue("instance.standby.compress", { instance_id: instanceId, ...policy }, { hostId, jobId, delayMs });
}
