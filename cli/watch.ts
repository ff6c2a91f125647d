// Follows a snapshot's compression or a fork on the event stream, driving a progress bar until it is done.
import type { Snapshot } from "@onkernel/hypeman/resources/snapshots";
import type { Connection, StreamedEvent } from "./connection.ts";
import { formatBytes } from "./output.ts";
import { type Bars, createBars } from "./progress.ts";

type SnapshotEvent = StreamedEvent & { data: { snapshot?: Snapshot; bytes_done?: number; bytes_total?: number } };

/** Resolves with the snapshot as of its compression's last event (completed or failed). */
export async function followCompression(
  events: AsyncIterable<StreamedEvent>,
  snapshotId: string,
  bars: Bars,
): Promise<Snapshot> {
  const phase = bars.phase("compress", 1);
  for await (const event of events as AsyncIterable<SnapshotEvent>) {
    const snapshot = event.data.snapshot;
    if (snapshot?.id !== snapshotId) continue;
    if (event.type === "snapshot.compression.progress") {
      const done = event.data.bytes_done ?? 0;
      const total = event.data.bytes_total ?? 0;
      phase.update(done, total, `${formatBytes(done)} / ${formatBytes(total)}`);
    } else if (event.type === "snapshot.compression.completed") {
      const ratio = ratioOf(snapshot);
      phase.finish(`compressed ${formatBytes(snapshot.compressed_size_bytes)}${ratio ? ` (${ratio})` : ""}`);
      return snapshot;
    } else if (event.type === "snapshot.compression.failed" || event.type === "snapshot.deleted") {
      phase.finish(event.type === "snapshot.deleted" ? "deleted" : `failed: ${snapshot.compression_error}`);
      return snapshot;
    }
  }
  throw new Error("the event stream ended before compression finished");
}

/** Resolves once the fork's instance.forked event arrived. */
export async function followFork(events: AsyncIterable<StreamedEvent>, instanceId: string, bars: Bars): Promise<void> {
  const phase = bars.phase("fork", 1);
  for await (const event of events) {
    const instance = (event.data as { instance?: { id: string; state: string } }).instance;
    if (event.type !== "instance.forked" || instance?.id !== instanceId) continue;
    phase.finish(`${instanceId} ${instance.state}`);
    return;
  }
  throw new Error("the event stream ended before the fork was reported");
}

const ratioOf = (snapshot: Snapshot) =>
  snapshot.compressed_size_bytes && snapshot.uncompressed_size_bytes
    ? `${((100 * snapshot.compressed_size_bytes) / snapshot.uncompressed_size_bytes).toFixed(1)}% of ${formatBytes(snapshot.uncompressed_size_bytes)}`
    : "";

/**
 * Opens the event stream first (so no event of what `work` starts can be missed), runs `work` with progress bars,
 * then stops the bars and closes the stream before the caller prints the result.
 */
export async function withEvents<T>(
  connection: Connection,
  query: Record<string, string>,
  showBars: boolean,
  work: (events: AsyncIterable<StreamedEvent>, bars: Bars) => Promise<T>,
): Promise<T> {
  const stop = new AbortController();
  const bars = createBars(showBars);
  try {
    return await work(await connection.events(query, stop.signal), bars);
  } finally {
    bars.stop();
    stop.abort();
  }
}
