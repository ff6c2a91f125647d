// What a host cannot understand it keeps, aside: a resource directory whose record exists but cannot be read or
// parsed (a stricter schema in a new release, EIO, EMFILE, a torn disk) is moved whole to
// `<DATA_DIR>/quarantine/<kind>s/<id>-<time>/`, never deleted. The host lists what is there in its directory entry
// (GET /hosts, and a gauge in /metrics) until an operator repairs and moves it back, or removes it.
import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { fsyncPath } from "./files.ts";
import { z } from "./zod.ts";

export const QUARANTINE_DIR = "quarantine";
const REASON_FILE = "quarantined.json";
const KINDS = ["instance", "snapshot"] as const;

export const QUARANTINED_ENTRY = z
  .object({
    kind: z.enum(KINDS),
    id: z.string(),
    /** Where it is now, on the host. */
    path: z.string(),
    /** Why its record could not be used. */
    reason: z.string(),
    quarantined_at: z.iso.datetime(),
  })
  .openapi("QuarantinedEntry");

export type QuarantinedEntry = z.infer<typeof QUARANTINED_ENTRY>;
export type QuarantineKind = QuarantinedEntry["kind"];

/** Moves `directory` (a resource's, on the same file system as the data dir) aside with why; returns the entry. */
export async function quarantineDirectory(
  dataDir: string,
  kind: QuarantineKind,
  id: string,
  directory: string,
  reason: string,
): Promise<QuarantinedEntry> {
  const at = new Date();
  const parent = path.join(dataDir, QUARANTINE_DIR, `${kind}s`);
  const target = path.join(parent, `${id}-${at.getTime()}`);
  await mkdir(parent, { recursive: true });
  await rename(directory, target);
  await fsyncPath(parent);
  await fsyncPath(path.dirname(directory));
  const entry: QuarantinedEntry = { kind, id, path: target, reason, quarantined_at: at.toISOString() };
  // Beside the payload, not instead of anything in it; if this write fails, the move above still keeps it all.
  await writeFile(path.join(target, REASON_FILE), `${JSON.stringify(entry, null, 2)}\n`).catch(() => {});
  return entry;
}

/** Everything in this host's quarantine, oldest first (an entry without its reason file is listed with none). */
export async function listQuarantined(dataDir: string): Promise<QuarantinedEntry[]> {
  const entries: QuarantinedEntry[] = [];
  for (const kind of KINDS) {
    const parent = path.join(dataDir, QUARANTINE_DIR, `${kind}s`);
    for (const name of await readdir(parent).catch(() => [] as string[])) {
      const target = path.join(parent, name);
      const stored = await readFile(path.join(target, REASON_FILE), "utf8")
        .then((text) => QUARANTINED_ENTRY.safeParse(JSON.parse(text)))
        .catch(() => undefined);
      const millis = Number(name.slice(name.lastIndexOf("-") + 1));
      entries.push(
        stored?.success
          ? { ...stored.data, path: target }
          : {
              kind,
              id: name.slice(0, name.lastIndexOf("-")) || name,
              path: target,
              reason: "unknown (no readable quarantined.json)",
              quarantined_at: new Date(Number.isFinite(millis) ? millis : 0).toISOString(),
            },
      );
    }
  }
  return entries.sort((left, right) => left.quarantined_at.localeCompare(right.quarantined_at));
}

/** "SyntaxError: Unexpected token…" / "ZodError: …" / "EISDIR: …": why a record could not be used, in a line. */
export function describeUnreadable(error: unknown): string {
  if (error instanceof z.ZodError) return `its record does not match the schema: ${z.prettifyError(error)}`;
  if (error instanceof Error) return `its record cannot be read: ${error.message}`;
  return `its record cannot be read: ${String(error)}`;
}
