// The PostgreSQL server the tests use: TEST_POSTGRES_URL when set (that one only), else the machine's own
// (127.0.0.1:5432, trust auth, user postgres) when it answers, else a private throw-away cluster started from the
// installed binaries (scripts/setup.mjs installs them), else none, with the reason (CI fails on it, others skip).
import { execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { freePort } from "../../supervisor/embedded-redis.ts";

export const MACHINE_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres";

export type TestPostgres = { url: string; stop(): void } | { url: ""; reason: string };

export async function answers(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query("select 1");
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

export async function startTestPostgres(): Promise<TestPostgres> {
  const chosen = process.env.TEST_POSTGRES_URL;
  const url = chosen || MACHINE_POSTGRES_URL;
  if (await answers(url)) return { url, stop: () => {} };
  // A server named on purpose is the one to test: no quiet fall-back to another.
  if (chosen) return { url: "", reason: `nothing answers at TEST_POSTGRES_URL ${chosen}` };
  const binDir = findPostgresBinaries();
  if (!binDir) return { url: "", reason: `nothing answers at ${url} and PostgreSQL is not installed` };
  return startPrivateCluster(binDir);
}

function findPostgresBinaries(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  return versions.map((version) => path.join(root, version, "bin")).find((dir) => existsSync(path.join(dir, "initdb")));
}

/** initdb refuses to run as root: as root the cluster belongs to the `postgres` user the package created. */
async function startPrivateCluster(binDir: string): Promise<TestPostgres> {
  const dir = mkdtempSync(path.join(tmpdir(), "snapfleet-test-postgres-"));
  const asRoot = process.getuid?.() === 0;
  const run = (binary: string, args: string[]) => {
    const command = path.join(binDir, binary);
    if (asRoot) execFileSync("runuser", ["-u", "postgres", "--", command, ...args], { stdio: "pipe" });
    else execFileSync(command, args, { stdio: "pipe" });
  };
  try {
    if (asRoot) chownSync(dir, Number(execFileSync("id", ["-u", "postgres"]).toString()), 0);
    const dataDir = path.join(dir, "data");
    const port = await freePort();
    run("initdb", ["-D", dataDir, "-A", "trust", "-U", "postgres", "--no-sync"]);
    const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`;
    run("pg_ctl", ["-D", dataDir, "-o", options, "-l", path.join(dir, "log"), "-w", "start"]);
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      stop: () => {
        run("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"]);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    return { url: "", reason: `could not start a private PostgreSQL: ${(error as Error).message}` };
  }
}
