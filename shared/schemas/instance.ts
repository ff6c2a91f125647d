// The Instance resource: the subset of Hypeman's that snapshots need, in the same JSON shape.

import { goDuration } from "../duration.ts";
import { z } from "../zod.ts";
import {
  HOST_ID,
  HOST_ONLINE,
  HYPERVISOR,
  IMAGE_NAME,
  RESOURCE_ID,
  RESOURCE_NAME,
  sizeString,
  TAGS,
  TIMESTAMP,
} from "./common.ts";
import { COMPRESSION_CONFIG } from "./compression.ts";
import { TARGET_STATE } from "./snapshot.ts";

export const INSTANCE_STATES = [
  "Created",
  "Initializing",
  "Running",
  "Paused",
  "Shutdown",
  "Stopped",
  "Standby",
  "Unknown",
] as const;
export const INSTANCE_STATE = z.enum(INSTANCE_STATES);
export type InstanceState = z.infer<typeof INSTANCE_STATE>;

export const SNAPSHOT_POLICY = z
  .object({
    compression: COMPRESSION_CONFIG.optional(),
    standby_compression_delay: goDuration()
      .optional()
      .openapi({ description: "Delay before standby memory compression begins (Go duration); default: at once" }),
  })
  .openapi("SnapshotPolicy", { description: "Defaults for snapshots of this instance" });

export const MEMORY_LOAD = z
  .object({
    fill_percent: z.number().int().min(1).max(90).openapi({ description: "Share of guest RAM filled at boot" }),
    dirty_mib_per_second: z
      .number()
      .int()
      .min(0)
      .max(1024)
      .default(0)
      .openapi({ description: "MiB of the filled RAM rewritten every second while the guest runs" }),
  })
  .openapi("MemoryLoad", {
    description:
      "Extension: a dense guest, for realistic snapshots and benchmarks. The guest's init fills this share of its " +
      "RAM (40 % random, 25 % binary, 25 % text, 10 % zero pages) before it starts counting, and keeps rewriting " +
      "some of it. Omitted: the guest uses only what its kernel and init touch.",
  });

export const MEMORY_LIMITS = { min: 64 * 1024 ** 2, max: 16 * 1024 ** 3, default: "256MB" } as const;
export const DISK_LIMITS = { min: 16 * 1024 ** 2, max: 64 * 1024 ** 3, default: "256MB" } as const;
export const VCPU_LIMITS = { min: 1, max: 16, default: 1 } as const;

/** The request limits of an instance's fields: requests and imported records both pass these. */
const INSTANCE_FIELDS = {
  name: RESOURCE_NAME,
  image: IMAGE_NAME,
  size: sizeString(MEMORY_LIMITS.min, MEMORY_LIMITS.max, "size"),
  overlay_size: sizeString(DISK_LIMITS.min, DISK_LIMITS.max, "overlay_size"),
  vcpus: z.number().int().min(VCPU_LIMITS.min).max(VCPU_LIMITS.max),
  tags: TAGS,
};

/**
 * Extension: where a Standby instance's RAM stands with the compression its standby asked for, as snapshots show
 * theirs (`pending` until packed, also while it runs; `compressed` with its sizes; `error`). Absent when the standby
 * asked for none, and once the instance leaves Standby. A snapshot or fork of the instance unpacks the RAM: it is
 * `pending` again until packed anew.
 */
export const STANDBY_COMPRESSION_STATUS = z
  .object({
    state: z.enum(["pending", "compressed", "error"]),
    algorithm: z.enum(["zstd", "lz4"]),
    level: z.number().int(),
    not_before: TIMESTAMP.openapi({ description: "When compression may begin (the standby's compression_delay)" }),
    compressed_size_bytes: z.number().int().nonnegative().nullable(),
    uncompressed_size_bytes: z.number().int().nonnegative().nullable(),
    error: z.string().nullable(),
  })
  .openapi("StandbyCompression");

export type StandbyCompressionStatus = z.infer<typeof STANDBY_COMPRESSION_STATUS>;

export const INSTANCE_SCHEMA = z
  .object({
    id: z.string().openapi({ description: "Auto-generated unique identifier (CUID2 format)" }),
    name: z.string(),
    image: z.string(),
    state: INSTANCE_STATE,
    state_error: z.string().nullable(),
    hypervisor: HYPERVISOR,
    size: z.string().openapi({ description: "Base memory size (human-readable)", example: "256MB" }),
    overlay_size: z.string().openapi({ description: "Writable disk size (human-readable)", example: "256MB" }),
    vcpus: z.number().int(),
    created_at: TIMESTAMP,
    started_at: TIMESTAMP.nullable(),
    stopped_at: TIMESTAMP.nullable(),
    expires_at: TIMESTAMP.nullable(),
    has_snapshot: z
      .boolean()
      .openapi({ description: "Whether the instance holds standby state (memory + device state)" }),
    tags: z.record(z.string(), z.string()),
    // Absent when unset, as the reference sends it; records written before that hold null.
    snapshot_policy: SNAPSHOT_POLICY.nullish(),
    memory_load: MEMORY_LOAD.optional(),
    standby_compression: STANDBY_COMPRESSION_STATUS.optional(),
    host_id: z.string().openapi({ description: "The worker host that owns this instance" }),
    host_online: HOST_ONLINE,
  })
  .openapi("Instance");

export type Instance = z.infer<typeof INSTANCE_SCHEMA>;

/** GET /instances/{id}/stats, in the reference's shape (kernel/hypeman InstanceStats), read from the QEMU process. */
export const INSTANCE_STATS_SCHEMA = z
  .object({
    instance_id: z.string(),
    instance_name: z.string(),
    allocated_memory_bytes: z.number().int().nonnegative().openapi({ description: "The guest's RAM size" }),
    allocated_vcpus: z.number().int().positive(),
    cpu_seconds: z.number().nonnegative().openapi({ description: "CPU time of the QEMU process, user + system" }),
    memory_rss_bytes: z.number().int().nonnegative().openapi({ description: "Resident memory of the QEMU process" }),
    memory_vms_bytes: z.number().int().nonnegative().openapi({ description: "Virtual memory of the QEMU process" }),
    memory_utilization_ratio: z
      .number()
      .nonnegative()
      .nullable()
      .optional()
      .openapi({ description: "memory_rss_bytes / allocated_memory_bytes" }),
    network_rx_bytes: z.number().int().nonnegative().openapi({ description: "Always 0: guests have no network here" }),
    network_tx_bytes: z.number().int().nonnegative().openapi({ description: "Always 0: guests have no network here" }),
  })
  .openapi("InstanceStats");

export type InstanceStats = z.infer<typeof INSTANCE_STATS_SCHEMA>;

/**
 * An instance a host may run: the stored shape within the request limits. Imported records are parsed with it, and a
 * host checks every instance it is about to boot against it again (a fork takes its source from a record).
 */
export const RUNNABLE_INSTANCE = INSTANCE_SCHEMA.extend({ id: RESOURCE_ID, ...INSTANCE_FIELDS });

export const CREATE_INSTANCE_BODY = z
  .object({
    name: INSTANCE_FIELDS.name,
    image: INSTANCE_FIELDS.image.default("busybox"),
    size: INSTANCE_FIELDS.size.default(MEMORY_LIMITS.default),
    overlay_size: INSTANCE_FIELDS.overlay_size.default(DISK_LIMITS.default),
    vcpus: INSTANCE_FIELDS.vcpus.default(VCPU_LIMITS.default),
    hypervisor: HYPERVISOR.default("qemu"),
    tags: INSTANCE_FIELDS.tags.optional(),
    snapshot_policy: SNAPSHOT_POLICY.optional(),
    memory_load: MEMORY_LOAD.optional(),
    host_id: HOST_ID.optional().openapi({
      description:
        "Extension: the worker host to create the instance on (GET /hosts lists them). Default: the least loaded " +
        "online host that runs the hypervisor. Unknown host: 400; offline host: 503.",
    }),
  })
  .openapi("CreateInstanceRequest");

export type CreateInstanceBody = z.infer<typeof CREATE_INSTANCE_BODY>;

export const FORK_INSTANCE_BODY = z
  .object({
    name: RESOURCE_NAME.openapi({ description: "Name for the forked instance" }),
    from_running: z.boolean().optional().openapi({
      description:
        "Allow forking a Running source: it is paused only while its memory and device state are captured, then runs on",
    }),
    target_state: TARGET_STATE.optional().openapi({
      description: "Final state of the fork; defaults to the source's state at fork time",
    }),
  })
  .openapi("ForkInstanceRequest");

export const STANDBY_INSTANCE_BODY = z
  .object({
    compression: COMPRESSION_CONFIG.optional().openapi({
      description: "Compress the standby memory in the background. Overrides the instance's snapshot_policy.",
    }),
    compression_delay: goDuration()
      .optional()
      .openapi({ description: "Delay before compression begins (Go duration), for this standby only" }),
  })
  .openapi("StandbyInstanceRequest");

export type StandbyInstanceBody = z.infer<typeof STANDBY_INSTANCE_BODY>;
