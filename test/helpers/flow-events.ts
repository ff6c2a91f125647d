// Realistic events of one snapshot flow (create → snapshot → compress → fork → delete), with full resources,
// appended straight to the durable stream. Tests that need the events of a real QEMU flow can drive that instead.
import { randomBytes } from "node:crypto";
import type { AppendedEvent, EventStream } from "../../shared/events/stream.ts";
import { newId } from "../../shared/ids.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";

export function sampleInstance(overrides: Partial<Instance> = {}): Instance {
  const now = new Date().toISOString();
  return {
    id: newId(),
    name: `web-${randomBytes(3).toString("hex")}`,
    image: "busybox",
    state: "Running",
    state_error: null,
    hypervisor: "qemu",
    size: "256MB",
    overlay_size: "256MB",
    vcpus: 1,
    created_at: now,
    started_at: now,
    stopped_at: null,
    expires_at: null,
    has_snapshot: false,
    tags: { team: "backend" },
    snapshot_policy: null,
    host_id: "host-1",
    ...overrides,
  };
}

export function sampleSnapshot(instance: Instance, overrides: Partial<Snapshot> = {}): Snapshot {
  return {
    id: newId(),
    created_at: new Date().toISOString(),
    kind: "Standby",
    size_bytes: 268_435_456,
    source_hypervisor: instance.hypervisor,
    source_instance_id: instance.id,
    source_instance_name: instance.name,
    name: "before-upgrade",
    tags: { env: "staging" },
    compression: { enabled: true, algorithm: "zstd", level: 1 },
    compression_state: "none",
    compression_error: null,
    compressed_size_bytes: null,
    uncompressed_size_bytes: 268_435_456,
    capture_downtime_ms: 41,
    host_id: instance.host_id,
    ...overrides,
  };
}

/** Appends the seven events of one flow; returns them in order. */
export async function appendSnapshotFlow(events: EventStream): Promise<AppendedEvent[]> {
  const instance = sampleInstance();
  const snapshot = sampleSnapshot(instance);
  const compressing = { ...snapshot, compression_state: "compressing" as const };
  const compressed = { ...snapshot, compression_state: "compressed" as const, compressed_size_bytes: 31_457_280 };
  const fork = sampleInstance({ name: `${instance.name}-fork` });
  return [
    await events.append("instance.created", `instance:${instance.id}`, { instance }),
    await events.append("snapshot.created", `snapshot:${snapshot.id}`, { snapshot }),
    await events.append("snapshot.compression.started", `snapshot:${snapshot.id}`, { snapshot: compressing }),
    await events.append("snapshot.compression.progress", `snapshot:${snapshot.id}`, {
      snapshot: compressing,
      bytes_done: 134_217_728,
      bytes_total: 268_435_456,
    }),
    await events.append("snapshot.compression.completed", `snapshot:${snapshot.id}`, { snapshot: compressed }),
    await events.append("instance.forked", `instance:${fork.id}`, { instance: fork, snapshot_id: snapshot.id }),
    await events.append("snapshot.deleted", `snapshot:${snapshot.id}`, { snapshot: compressed }),
  ];
}
