// `npm run bench`: every benchmark in turn (each also runs alone as `npm run bench:<name>`).
// They are long and load the machine: run them on an otherwise idle host, never as part of `npm test`.
import { spawnSync } from "node:child_process";

const BENCHMARKS = ["codec", "vm", "snapshots", "webhooks", "api", "transfer"] as const;

const failed: string[] = [];
for (const name of BENCHMARKS) {
  process.stdout.write(`\n=== bench:${name} ===\n`);
  const result = spawnSync("npm", ["run", "--silent", `bench:${name}`], { stdio: "inherit" });
  if (result.status !== 0) failed.push(name);
}
if (failed.length) {
  process.stderr.write(`benchmarks failed: ${failed.join(", ")}\n`);
  process.exit(1);
}
