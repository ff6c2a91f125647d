// `snapfleet snapshots ls|create|rm|fork|watch`, with progress bars for capture, compression and fork.
import type { Snapshot as SdkSnapshot } from "@onkernel/hypeman/resources/snapshots";
import type { Command } from "commander";
import { type Context, withContext } from "./context.ts";
import { formatBytes, removeEach } from "./output.ts";
import { followCompression, followFork, withEvents } from "./watch.ts";

type Snapshot = SdkSnapshot & { host_id?: string; capture_downtime_ms?: number | null };

const COLUMNS = {
  ID: (snapshot: Snapshot) => snapshot.id,
  NAME: (snapshot: Snapshot) => snapshot.name,
  INSTANCE: (snapshot: Snapshot) => snapshot.source_instance_name,
  KIND: (snapshot: Snapshot) => snapshot.kind,
  COMPRESSION: (snapshot: Snapshot) => snapshot.compression_state,
  SIZE: (snapshot: Snapshot) => formatBytes(snapshot.size_bytes),
  CREATED: (snapshot: Snapshot) => snapshot.created_at,
};

const FIELDS = {
  ...COLUMNS,
  POLICY: (snapshot: Snapshot) => snapshot.compression,
  DOWNTIME_MS: (snapshot: Snapshot) => snapshot.capture_downtime_ms,
  COMPRESSED: (snapshot: Snapshot) => formatBytes(snapshot.compressed_size_bytes),
  UNCOMPRESSED: (snapshot: Snapshot) => formatBytes(snapshot.uncompressed_size_bytes),
};

/** `zstd`, `lz4`, `zstd:3` or `none` as the API's compression object. */
export function parseCompression(text: string) {
  const [algorithm, level] = text.split(":");
  if (algorithm === "none") return { enabled: false };
  if (algorithm !== "zstd" && algorithm !== "lz4") throw new Error(`--compression: ${text} is not zstd, lz4 or none`);
  return { enabled: true, algorithm, ...(level === undefined ? {} : { level: Number(level) }) } as const;
}

const wantsCompression = (snapshot: Snapshot) => snapshot.kind === "Standby" && snapshot.compression?.enabled === true;

export function registerSnapshotCommands(program: Command): void {
  const snapshots = program.command("snapshots").alias("snapshot").description("snapshots of instances");

  snapshots
    .command("ls")
    .description("list snapshots")
    .option("--instance <id>", "only snapshots of this instance id")
    .option("--name <name>", "only snapshots with this name")
    .action(
      withContext(async ({ connection, output }: Context, options: { instance?: string; name?: string }) => {
        const query = { source_instance_id: options.instance, name: options.name };
        output.list((await connection.sdk.snapshots.list(query)) as Snapshot[], COLUMNS);
      }),
    );

  snapshots
    .command("create <instance>")
    .description("snapshot an instance (id or name); waits for its compression unless --no-wait")
    .option("--name <name>", "snapshot name")
    .option("--kind <kind>", "Standby (memory and disk) or Stopped (disk only)", "Standby")
    .option("--compression <policy>", "zstd, lz4, zstd:<level>, lz4:<level> or none (default: the instance's policy)")
    .option("--no-wait", "return once captured, without following compression")
    .action(
      withContext(async ({ connection, output }, instance: string, options: CreateOptions) => {
        const query = { types: "snapshot.*" };
        const snapshot = await withEvents(connection, query, !output.json, async (events, bars) => {
          const capture = bars.phase("capture", 1);
          const created = (await connection.sdk.instances.snapshots.create(instance, {
            kind: options.kind as Snapshot["kind"],
            name: options.name,
            ...(options.compression ? { compression: parseCompression(options.compression) } : {}),
          })) as Snapshot;
          capture.finish(`${created.id}, paused ${created.capture_downtime_ms ?? 0} ms`);
          if (!options.wait || !wantsCompression(created)) return created;
          return followCompression(events, created.id, bars);
        });
        output.item(snapshot, FIELDS);
      }),
    );

  snapshots
    .command("watch <id>")
    .description("follow a snapshot's compression until it is compressed or failed")
    .action(
      withContext(async ({ connection, output }, id: string) => {
        const snapshot = await withEvents(connection, { snapshot_id: id }, !output.json, async (events, bars) => {
          const current = (await connection.sdk.snapshots.get(id)) as Snapshot;
          const pending = ["none", "compressing"].includes(current.compression_state ?? "none");
          return wantsCompression(current) && pending ? followCompression(events, id, bars) : current;
        });
        output.item(snapshot, FIELDS);
      }),
    );

  snapshots
    .command("fork <id>")
    .description("fork a snapshot into a new instance")
    .requiredOption("--name <name>", "the new instance's name")
    .option("--target-state <state>", "Running, Standby or Stopped (default: Running for Standby snapshots)")
    .action(
      withContext(async ({ connection, output }, id: string, options: { name: string; targetState?: string }) => {
        const query = { types: "instance.forked" };
        const instance = await withEvents(connection, query, !output.json, async (events, bars) => {
          const forked = await connection.sdk.snapshots.fork(id, {
            name: options.name,
            ...(options.targetState ? { target_state: options.targetState as "Running" } : {}),
          });
          await followFork(events, forked.id, bars);
          return forked;
        });
        output.item(instance, { ID: (i) => i.id, NAME: (i) => i.name, STATE: (i) => i.state });
      }),
    );

  snapshots
    .command("rm <ids...>")
    .description("delete snapshots (never their source or forks)")
    .action(
      withContext(({ connection, output }, ids: string[]) =>
        removeEach(output, ids, (id) => connection.sdk.snapshots.delete(id)),
      ),
    );
}

interface CreateOptions {
  name?: string;
  kind: string;
  compression?: string;
  wait: boolean;
}
