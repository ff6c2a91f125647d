// Jobs of a host's compression queue: background work that must survive crashes, so it retries.
import { z } from "zod";
import { RESOURCE_ID } from "../schemas/common.ts";
import type { JobDefinition } from "./catalog.ts";

/** The algorithm and level a Standby instance's RAM is packed with (instance.standby asks, this queue packs). */
export const STANDBY_COMPRESSION_POLICY = z.object({ algorithm: z.enum(["zstd", "lz4"]), level: z.number().int() });

export const COMPRESSION_JOBS = {
  /** Compresses a Standby snapshot's memory payload with the snapshot's effective policy. */
  "snapshot.compress": {
    queue: "compression",
    payload: z.object({ snapshot_id: RESOURCE_ID }),
    result: z.object({ compression_state: z.enum(["compressed", "error", "skipped"]) }),
    attempts: 5,
    backoff: { type: "exponential", delayMs: 2_000 },
    timeoutMs: 3_600_000,
  },
  /** Packs a Standby instance's RAM in place (POST /instances/{id}/standby with compression), after its delay. */
  "instance.standby.compress": {
    queue: "compression",
    payload: z.object({ instance_id: RESOURCE_ID, ...STANDBY_COMPRESSION_POLICY.shape }),
    result: z.object({ outcome: z.enum(["compressed", "skipped"]) }),
    attempts: 3,
    backoff: { type: "exponential", delayMs: 2_000 },
    timeoutMs: 3_600_000,
  },
  /**
   * Uploads a snapshot to the object store as it is now (workers/compression/upload-snapshot.ts), after its capture
   * and after its compression; a failure shows as storage error and retries with back-off (5 s, 10 s, … about 21 min).
   */
  "snapshot.upload": {
    queue: "compression",
    payload: z.object({ snapshot_id: RESOURCE_ID }),
    result: z.object({ storage: z.enum(["stored", "skipped"]) }),
    attempts: 9,
    backoff: { type: "exponential", delayMs: 5_000 },
    timeoutMs: 7_200_000,
  },
} as const satisfies Record<string, JobDefinition>;

/** One compression job per snapshot: the id makes a second enqueue of the same snapshot a no-op. */
export const compressionJobId = (snapshotId: string) => `compress-${snapshotId}`;

/**
 * One upload per snapshot at a time: queued after a capture and after a compression unless one waits or runs (a
 * running one uploads again when the payload changed under it).
 */
export const uploadJobId = (snapshotId: string) => `upload-${snapshotId}`;
