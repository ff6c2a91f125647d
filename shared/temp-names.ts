// The names of everything written aside before it is put in place: temporary files and staging directories. Every
// creator takes its name from here, so the orphan sweep (shared/orphans.ts) recognises all of them.
import { randomBytes } from "node:crypto";
import path from "node:path";

/**
 * Staging directories under the snapshots root, by snapshot id: a capture, an import, a pull of a replica, and the
 * pull of an evicted original's payload back from the object store.
 */
export const STAGING_KINDS = ["staging", "import", "pull", "pull-back"] as const;
export type StagingKind = (typeof STAGING_KINDS)[number];

/** `<dir>/.<name>.tmp-<pid>-<hex>`: hidden (listings skip dot names) and unique per process and call. */
export function temporaryPath(destination: string): string {
  const name = `.${path.basename(destination)}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  return path.join(path.dirname(destination), name);
}

/** `<root>/.<kind>-<id>`: where a snapshot's payload is gathered before it is moved in place as `<root>/<id>`. */
export function stagingPath(root: string, kind: StagingKind, id: string): string {
  return path.join(root, `.${kind}-${id}`);
}

const TEMPORARY_NAME = /^\..+\.tmp-\d+-[0-9a-f]+$/;
const STAGING_NAME = new RegExp(`^\\.(${STAGING_KINDS.join("|")})-.+$`);
/** Names older releases wrote: `<file>.tmp-<pid>-<ms>` and `.<file>.<hex>.tmp`. */
const LEGACY_NAMES = [/\.tmp-\d+-\d+$/, /^\..+\.[0-9a-f]+\.tmp$/];

/** Whether `entry` is a temporary file of `destinationName` in the same directory (this release's or an older one's). */
export function isTemporaryOf(destinationName: string, entry: string): boolean {
  return entry.startsWith(`.${destinationName}.`) && isLeftoverName(entry);
}

/** Whether `name` is one of ours written aside: a temporary file or a staging directory no one may need. */
export function isLeftoverName(name: string): boolean {
  return TEMPORARY_NAME.test(name) || STAGING_NAME.test(name) || LEGACY_NAMES.some((pattern) => pattern.test(name));
}
