// Realistic resources for tests that drive the read model with events.
import { subjectOf } from "../../shared/events/catalog.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { newId } from "../../shared/ids.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";

export function sampleInstance(overrides: Partial<Instance> = {}): Instance {
  return {
    id: newId(),
    name: `vm-${newId().slice(0, 8)}`,
    image: "busybox",
    state: "Running",
    state_error: null,
    hypervisor: "qemu",
    size: "128MB",
    overlay_size: "64MB",
    vcpus: 1,
    created_at: new Date().toISOString(),
    started_at: new Date().toISOString(),
    stopped_at: null,
    expires_at: null,
    has_snapshot: false,
    tags: {},
    snapshot_policy: null,
    host_id: "host-test",
    ...overrides,
  };
}

export function sampleSnapshot(source: Instance, overrides: Partial<Snapshot> = {}): Snapshot {
  return {
    id: newId(),
    created_at: new Date().toISOString(),
    kind: "Standby",
    size_bytes: 1_000_000,
    source_hypervisor: "qemu",
    source_instance_id: source.id,
    source_instance_name: source.name,
    name: null,
    tags: {},
    compression: { enabled: false },
    compression_state: "none",
    compression_error: null,
    compressed_size_bytes: null,
    uncompressed_size_bytes: null,
    host_id: source.host_id,
    capture_downtime_ms: null,
    storage: "local",
    storage_error: null,
    ...overrides,
  };
}

/** Appends `instance.created` for a sample instance and waits until `projector` has applied it. */
export async function projectedInstance(
  stream: EventStream,
  projector: { waitFor(eventId: string, timeoutMs: number): Promise<void> },
  overrides: Partial<Instance> = {},
): Promise<Instance> {
  const instance = sampleInstance(overrides);
  const { event } = await stream.append(
    "instance.created",
    subjectOf.instance(instance.id),
    { instance },
    { version: 1 },
  );
  await projector.waitFor(event.id, 5_000);
  return instance;
}
