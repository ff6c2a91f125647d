// Realistic events of one snapshot flow (create → snapshot → compress → fork → delete), with full resources,
// appended straight to the durable stream. Tests that need the events of a real QEMU flow can drive that instead.
import type { AppendedEvent, EventStream } from "../../shared/events/stream.ts";
import { sampleInstance, sampleSnapshot } from "./resources.ts";

const v = (version: number) => ({ version });

/** Appends the seven events of one flow; returns them in order. */
export async function appendSnapshotFlow(events: EventStream): Promise<AppendedEvent[]> {
  const instance = sampleInstance({ size: "256MB", tags: { team: "backend" } });
  const snapshot = sampleSnapshot(instance, {
    name: "before-upgrade",
    size_bytes: 268_435_456,
    tags: { env: "staging" },
    compression: { enabled: true, algorithm: "zstd", level: 1 },
    uncompressed_size_bytes: 268_435_456,
    capture_downtime_ms: 41,
  });
  const compressing = { ...snapshot, compression_state: "compressing" as const };
  const compressed = { ...snapshot, compression_state: "compressed" as const, compressed_size_bytes: 31_457_280 };
  const fork = sampleInstance({ name: `${instance.name}-fork` });
  return [
    await events.append("instance.created", `instance:${instance.id}`, { instance }, { version: 1 }),
    await events.append("snapshot.created", `snapshot:${snapshot.id}`, { snapshot }, { version: 1 }),
    await events.append("snapshot.compression.started", `snapshot:${snapshot.id}`, { snapshot: compressing }, v(2)),
    await events.append(
      "snapshot.compression.progress",
      `snapshot:${snapshot.id}`,
      { snapshot: compressing, bytes_done: 134_217_728, bytes_total: 268_435_456 },
      v(2),
    ),
    await events.append("snapshot.compression.completed", `snapshot:${snapshot.id}`, { snapshot: compressed }, v(3)),
    await events.append("instance.forked", `instance:${fork.id}`, { instance: fork, snapshot_id: snapshot.id }, v(1)),
    await events.append("snapshot.deleted", `snapshot:${snapshot.id}`, { snapshot: compressed }, v(4)),
  ];
}

/**
 * Appends a copy of `like` under a new id, after whatever the test appended: it passes every filter `like` passes,
 * and a reader of the ordered stream that has it has had everything before it. Waiting for it, then counting, shows
 * "nothing more arrives" without a sleep.
 */
export async function appendMarker(events: EventStream, like: AppendedEvent["event"]): Promise<AppendedEvent> {
  return events.append(
    like.type,
    like.subject,
    like.data as never, // the data of `like.type`, as `like` carries it
    { version: like.version },
  );
}
