// A host's stable id: HOST_ID from config, else one generated once and kept in the data dir. The file is created
// durably (shared/files.ts), so a crash never leaves it empty; one found empty or garbled (a crash of an older
// release, a damaged disk) stops the process with a clear error rather than giving the host a new identity, which
// would orphan its instances, snapshots and queues.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { createFileOnceSync } from "./files.ts";

/** What a HOST_ID may look like (it names queues and appears in URLs). */
export const HOST_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export const HOST_ID_FILE = "host-id";

export class HostIdError extends Error {
  override name = "HostIdError";
}

export function resolveHostId(configured: string | undefined, dataDir: string): string {
  if (configured) return configured;
  const file = path.join(dataDir, HOST_ID_FILE);
  const stored = readStoredHostId(file);
  if (stored) return stored;
  mkdirSync(dataDir, { recursive: true });
  const id = newHostId();
  // Another process (or an earlier start) created it first: use theirs.
  return createFileOnceSync(file, `${id}\n`) ? id : (readStoredHostId(file) as string);
}

/** The id kept in `file`; undefined when there is none; throws when the file holds anything but a host id. */
function readStoredHostId(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const stored = text.trim();
  if (HOST_ID_PATTERN.test(stored)) return stored;
  throw new HostIdError(
    `${file} is ${stored ? "not a host id" : "empty"}: this host's id is lost, and a new one would orphan its ` +
      "instances, snapshots and queues. Write the id back (it is the host_id in instances/*/instance.json) or set " +
      "HOST_ID, then start again",
  );
}

function newHostId(): string {
  const base = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
  return `${base || "host"}-${randomBytes(4).toString("hex")}`;
}
