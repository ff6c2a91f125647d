// `snapfleet hosts ls` and `snapfleet events tail`.
import type { Command } from "commander";
import { withContext } from "./context.ts";

interface Host {
  id: string;
  online: boolean;
  hypervisors: string[];
  last_seen_at: string;
}

export function registerHostAndEventCommands(program: Command): void {
  program
    .command("hosts")
    .description("worker hosts")
    .command("ls")
    .description("list worker hosts and whether they are online")
    .action(
      withContext(async ({ connection, output }) => {
        output.list(await connection.get<Host[]>("/hosts"), {
          ID: (host) => host.id,
          ONLINE: (host) => (host.online ? "yes" : "no"),
          HYPERVISORS: (host) => host.hypervisors.join(","),
          LAST_SEEN: (host) => host.last_seen_at,
        });
      }),
    );

  program
    .command("events")
    .description("the live event stream")
    .command("tail")
    .description("print events as they happen (one JSON object a line with --json)")
    .option("--types <patterns>", "comma-separated types or wildcards, e.g. snapshot.*,instance.forked")
    .option("--snapshot <id>", "only events about this snapshot")
    .option("--instance <id>", "only events about this instance")
    .option("--after <position>", "start after this stream position instead of now")
    .option("--count <n>", "stop after this many events", (value) => Number.parseInt(value, 10))
    .action(
      withContext(async ({ connection, output }, options: TailOptions) => {
        const query = Object.fromEntries(
          Object.entries({
            types: options.types,
            snapshot_id: options.snapshot,
            instance_id: options.instance,
            after: options.after,
          }).filter(([, value]) => value !== undefined),
        ) as Record<string, string>;
        const stop = new AbortController();
        process.once("SIGINT", () => stop.abort());
        let seen = 0;
        try {
          for await (const event of await connection.events(query, stop.signal)) {
            if (output.json) process.stdout.write(`${JSON.stringify(event)}\n`);
            else process.stdout.write(`${event.occurred_at}  ${event.type.padEnd(30)} ${event.subject}\n`);
            if (options.count !== undefined && ++seen >= options.count) break;
          }
        } catch (error) {
          if (!stop.signal.aborted) throw error;
        } finally {
          stop.abort();
        }
      }),
    );
}

interface TailOptions {
  types?: string;
  snapshot?: string;
  instance?: string;
  after?: string;
  count?: number;
}
