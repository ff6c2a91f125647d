// The Snapshot resource and its request bodies, exactly as the Hypeman snapshots API has them.
import { z } from "../zod.ts";
import { HOST_ID, HOST_ONLINE, HYPERVISOR, RESOURCE_NAME, TAGS, TIMESTAMP } from "./common.ts";
import { COMPRESSION_ALGORITHMS, COMPRESSION_CONFIG } from "./compression.ts";

export const SNAPSHOT_KINDS = ["Standby", "Stopped"] as const;
export const SNAPSHOT_KIND = z.enum(SNAPSHOT_KINDS).openapi("SnapshotKind", { description: "Snapshot capture kind" });
export type SnapshotKind = z.infer<typeof SNAPSHOT_KIND>;

export const COMPRESSION_STATES = ["none", "compressing", "compressed", "error"] as const;
export type CompressionState = (typeof COMPRESSION_STATES)[number];

/** Where a snapshot's payload is kept (shared/snapshots/storage.ts has the transitions). */
export const STORAGE_STATES = ["local", "uploading", "stored", "error"] as const;
export type StorageState = (typeof STORAGE_STATES)[number];

export const SNAPSHOT_SCHEMA = z
  .object({
    id: z
      .string()
      .openapi({ description: "Auto-generated unique snapshot identifier", example: "q7z1w7l2af4l8y7q1h7g2m3s" }),
    created_at: TIMESTAMP.openapi({ description: "Snapshot creation timestamp" }),
    kind: SNAPSHOT_KIND,
    size_bytes: z.number().int().openapi({
      format: "int64",
      description: "Total payload bytes as stored now (allocated bytes of sparse files, not their apparent size)",
    }),
    source_hypervisor: HYPERVISOR.openapi({ description: "Source instance hypervisor at snapshot creation time" }),
    source_instance_id: z.string().openapi({ description: "Source instance ID at snapshot creation time" }),
    source_instance_name: z.string().openapi({ description: "Source instance name at snapshot creation time" }),
    name: z
      .string()
      .nullable()
      .openapi({ description: "Optional human-readable snapshot name (unique per source instance)" }),
    tags: z.record(z.string(), z.string()).openapi({ description: "User-defined key-value tags." }),
    compression: z
      .object({
        enabled: z.boolean(),
        algorithm: z.enum(COMPRESSION_ALGORITHMS).optional(),
        level: z.number().int().optional(),
      })
      .openapi({ description: "The effective compression policy of this snapshot" }),
    compression_state: z.enum(COMPRESSION_STATES).openapi({ description: "Compression status of the memory payload" }),
    compression_error: z.string().nullable().openapi({ description: "Set only when compression_state is error" }),
    compressed_size_bytes: z.number().int().nullable().openapi({ format: "int64" }),
    uncompressed_size_bytes: z.number().int().nullable().openapi({ format: "int64" }),
    // Beyond the Hypeman shape (the SDK ignores unknown fields):
    host_id: z.string().openapi({ description: "The worker host that stores this snapshot's payload" }),
    qemu_version: z.string().nullable().optional().openapi({
      description: "Extension: the QEMU version a Standby snapshot's device state was written by (null: unknown)",
    }),
    machine_type: z.string().nullable().optional().openapi({
      description: "Extension: the concrete QEMU machine type of that state, e.g. pc-i440fx-7.2",
    }),
    capture_downtime_ms: z.number().nullable().openapi({
      description: "How long the source was paused while a Standby snapshot was captured from Running; null otherwise",
    }),
    storage: z
      .enum(STORAGE_STATES)
      .default("local")
      .openapi({
        description:
          "Extension: where the payload is kept. local: only on its host's disk (no object store, or not uploaded " +
          "yet); uploading: being uploaded to the object store (after a compression, a complete earlier copy stays " +
          "there until the new one is in); stored: the object store holds it as it is now, and any host can fork it; " +
          "error: the last upload failed (storage_error says why) and is retried with back-off",
      }),
    storage_error: z
      .string()
      .nullable()
      .default(null)
      .openapi({ description: "Extension: set only when storage is error" }),
    host_online: HOST_ONLINE,
  })
  .openapi("Snapshot");

export type Snapshot = z.infer<typeof SNAPSHOT_SCHEMA>;

export const CREATE_SNAPSHOT_BODY = z
  .object({
    kind: SNAPSHOT_KIND,
    name: RESOURCE_NAME.optional().openapi({
      description:
        "Optional snapshot name (lowercase letters, digits, and dashes only; cannot start or end with a dash)",
    }),
    tags: TAGS.optional(),
    compression: COMPRESSION_CONFIG.optional().openapi({
      description: "Compression settings to use for this snapshot. Overrides instance and server defaults.",
    }),
  })
  .openapi("CreateSnapshotRequest");

export const TARGET_STATES = ["Running", "Standby", "Stopped"] as const;
export const TARGET_STATE = z.enum(TARGET_STATES);
export type TargetState = z.infer<typeof TARGET_STATE>;

export const FORK_SNAPSHOT_BODY = z
  .object({
    name: RESOURCE_NAME.openapi({ description: "Name for the new instance" }),
    target_state: TARGET_STATE.optional().openapi({
      description:
        "Final state of the fork. Standby snapshots: Running (default), Standby or Stopped. Stopped snapshots: Stopped (default) or Running.",
    }),
    target_hypervisor: HYPERVISOR.optional().openapi({ description: "Only for Stopped snapshots" }),
    host_id: HOST_ID.optional().openapi({
      description:
        "Extension: the worker host to run the fork on. Default: the host that owns the snapshot, or, while it is " +
        "offline and the snapshot is in the object store (storage not local), the least loaded online host. Another " +
        "host pulls a copy first, from the object store when it holds one. Unknown host: 400; offline host: 503 " +
        "(also an offline owner of a snapshot the store does not hold).",
    }),
  })
  .openapi("ForkSnapshotRequest");

export const RESTORE_SNAPSHOT_BODY = z
  .object({
    target_state: TARGET_STATE.optional(),
    target_hypervisor: HYPERVISOR.optional(),
  })
  .openapi("RestoreSnapshotRequest");

/** Allowed target states per kind, the first being the default (contract: state rules). */
export const TARGET_STATES_BY_KIND: Record<SnapshotKind, readonly TargetState[]> = {
  Standby: ["Running", "Standby", "Stopped"],
  Stopped: ["Stopped", "Running"],
};
