// The npm registry reachable from our build machines serves only some platforms' builds of packages like
// @biomejs/cli-* and @msgpackr-extract/*, so `npm install` leaves the other platforms' optional packages out
// of package-lock.json and `npm ci` then refuses the lockfile. This adds an entry (version, os, cpu, libc)
// for each missing optional platform package; npm skips them on other platforms and fetches them where
// they apply. Run it after any `npm install` that rewrites the lockfile (test/lockfile.test.ts checks).
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const LOCK_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "package-lock.json");

/** Platform facts from a package name such as @biomejs/cli-linux-x64-musl. */
export function platformOf(name) {
  const base = name.split("/").at(-1);
  const os = ["darwin", "linux", "win32", "android", "freebsd"].find((candidate) => base.includes(candidate));
  const cpu = ["arm64", "x64", "arm", "ia32"].find((candidate) => new RegExp(`(^|-)${candidate}($|-)`).test(base));
  return { os, cpu, musl: base.includes("musl") };
}

export function missingOptionalEntries(lock) {
  const packages = lock.packages ?? {};
  const missing = new Map();
  for (const meta of Object.values(packages)) {
    for (const [name, version] of Object.entries(meta.optionalDependencies ?? {})) {
      const key = `node_modules/${name}`;
      if (packages[key] || missing.has(key)) continue;
      const { os, cpu, musl } = platformOf(name);
      if (!os && !cpu) continue; // not a platform package: leave it to npm
      const entry = { version, optional: true };
      if (meta.dev) entry.dev = true;
      if (os) entry.os = [os];
      if (cpu) entry.cpu = [cpu];
      if (musl) entry.libc = ["musl"];
      missing.set(key, entry);
    }
  }
  return missing;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const lock = JSON.parse(readFileSync(LOCK_FILE, "utf8"));
  const missing = missingOptionalEntries(lock);
  for (const [key, entry] of missing) lock.packages[key] = JSON.parse(JSON.stringify(entry));
  const sorted = Object.fromEntries(
    Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))),
  );
  lock.packages = sorted;
  writeFileSync(LOCK_FILE, `${JSON.stringify(lock, null, 2)}\n`);
  process.stdout.write(`added ${missing.size} optional platform entries\n`);
}
