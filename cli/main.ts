// `snapfleet`: the command-line client. The service's URL and key come from --url/--api-key, SNAPFLEET_URL /
// SNAPFLEET_API_KEY, or the generated data/api-key.
import { Command } from "commander";
import { DEFAULT_URL } from "./connection.ts";
import { registerHostAndEventCommands } from "./hosts-events.ts";
import { registerInstanceCommands } from "./instances.ts";
import { registerSnapshotCommands } from "./snapshots.ts";

const program = new Command("snapfleet")
  .description("Drive a Snapfleet service: instances, snapshots, hosts and live events")
  .option("--url <url>", `the service (env SNAPFLEET_URL, default ${DEFAULT_URL})`)
  .option("--api-key <key>", "bearer key (env SNAPFLEET_API_KEY, else data/api-key)")
  .option("--json", "print JSON for scripts (no progress bars)");

registerInstanceCommands(program);
registerSnapshotCommands(program);
registerHostAndEventCommands(program);

await program.parseAsync(process.argv);
