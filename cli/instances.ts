// `snapfleet instances ls|create|rm|logs`.

import type { Instance } from "@onkernel/hypeman/resources/instances/instances";
import type { Command } from "commander";
import { type Context, withContext } from "./context.ts";
import { removeEach } from "./output.ts";

const COLUMNS = {
  ID: (instance: Instance) => instance.id,
  NAME: (instance: Instance) => instance.name,
  STATE: (instance: Instance) => instance.state,
  SIZE: (instance: Instance) => instance.size,
  HOST: (instance: Instance) => (instance as Instance & { host_id?: string }).host_id,
  CREATED: (instance: Instance) => instance.created_at,
};

const FIELDS = { ...COLUMNS, IMAGE: (instance: Instance) => instance.image, VCPUS: (i: Instance) => i.vcpus };

export function registerInstanceCommands(program: Command): void {
  const instances = program.command("instances").alias("instance").description("virtual machines");

  instances
    .command("ls")
    .description("list instances")
    .option("--state <state>", "only instances in this state (Running, Standby, Stopped, ...)")
    .action(
      withContext(async ({ connection, output }: Context, options: { state?: Instance["state"] }) => {
        output.list(await connection.sdk.instances.list(options.state ? { state: options.state } : {}), COLUMNS);
      }),
    );

  instances
    .command("create <name>")
    .description("create and boot an instance")
    .option("--image <image>", "guest image", "busybox")
    .option("--size <size>", "memory, e.g. 256MB", "256MB")
    .option("--vcpus <n>", "virtual CPUs", (value) => Number.parseInt(value, 10))
    .action(
      withContext(
        async ({ connection, output }, name: string, options: { image: string; size: string; vcpus?: number }) => {
          const instance = await connection.sdk.instances.create({ name, ...options });
          output.item(instance, FIELDS);
        },
      ),
    );

  instances
    .command("rm <ids...>")
    .description("stop and delete instances (by id or name); their snapshots stay")
    .action(
      withContext(({ connection, output }, ids: string[]) =>
        removeEach(output, ids, (id) => connection.sdk.instances.delete(id)),
      ),
    );

  instances
    .command("logs <id>")
    .description("the last lines of the guest's serial console")
    .option("--tail <n>", "how many lines", (value) => Number.parseInt(value, 10), 100)
    .action(
      withContext(async ({ connection, output }, id: string, options: { tail: number }) => {
        const lines: string[] = [];
        for await (const line of await connection.sdk.instances.logs(id, { tail: options.tail })) lines.push(line);
        if (output.json) output.item(lines, {});
        else for (const line of lines) process.stdout.write(`${line}\n`);
      }),
    );
}
