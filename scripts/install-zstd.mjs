// Makes @mongodb-js/zstd loadable: its own install script is denied (allowScripts) because it
// needs GitHub; we try its prebuilt download first, then build it against Debian's libzstd.
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const PREBUILD_TIMEOUT_MS = 60_000;
const SYSTEM_HEADER_DIR = "/usr/include";
const SYSTEM_LIBRARY_CANDIDATES = [
  "/usr/lib/x86_64-linux-gnu/libzstd.so.1",
  "/usr/lib/aarch64-linux-gnu/libzstd.so.1",
  "/usr/lib64/libzstd.so.1",
  "/usr/lib/libzstd.so.1",
];

function log(message) {
  process.stderr.write(`[install-zstd] ${message}\n`);
}

function addonLoads(packageDir) {
  const probe = spawnSync(
    process.execPath,
    [
      "-e",
      `require(${JSON.stringify(packageDir)}).compress(Buffer.from('x'), 1).then(() => process.exit(0), () => process.exit(1))`,
    ],
    { stdio: "ignore", timeout: 20_000 },
  );
  return probe.status === 0;
}

function tryPrebuilt(packageDir) {
  const prebuildInstall = require.resolve("prebuild-install/bin.js", { paths: [packageDir] });
  const result = spawnSync(process.execPath, [prebuildInstall, "--runtime", "napi"], {
    cwd: packageDir,
    stdio: "ignore",
    timeout: PREBUILD_TIMEOUT_MS,
  });
  return result.status === 0 && addonLoads(packageDir);
}

function ensureSystemLibzstd() {
  const library = SYSTEM_LIBRARY_CANDIDATES.find((candidate) => existsSync(candidate));
  if (existsSync(path.join(SYSTEM_HEADER_DIR, "zstd.h")) && library) return library;
  if (process.getuid?.() === 0) {
    log("installing libzstd-dev with apt-get");
    execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "libzstd-dev"], {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    return ensureSystemLibzstd();
  }
  log("libzstd-dev is missing; run: sudo apt-get install -y libzstd-dev   then: npm rebuild");
  process.exit(1);
}

function buildAgainstSystemLibzstd(packageDir, library) {
  const headerDir = path.join(packageDir, "deps/zstd/lib");
  const libraryDir = path.join(packageDir, "deps/zstd/out/lib");
  mkdirSync(headerDir, { recursive: true });
  mkdirSync(libraryDir, { recursive: true });
  for (const header of readdirSync(SYSTEM_HEADER_DIR).filter((name) => /^z(std|dict|std_errors)\.h$/.test(name))) {
    copyFileSync(path.join(SYSTEM_HEADER_DIR, header), path.join(headerDir, header));
  }
  // Debian's libzstd.a is not position-independent: a GNU ld script points the link at the shared library.
  writeFileSync(path.join(libraryDir, "libzstd.a"), `INPUT(${library})\n`);
  const nodeGyp = require.resolve("node-gyp/bin/node-gyp.js");
  execFileSync(process.execPath, [nodeGyp, "rebuild"], { cwd: packageDir, stdio: "inherit" });
}

function main() {
  let packageDir;
  try {
    packageDir = path.dirname(require.resolve("@mongodb-js/zstd/package.json"));
  } catch {
    return; // not installed (e.g. a partial install): nothing to do
  }
  if (addonLoads(packageDir)) return;
  if (process.env.SNAPFLEET_ZSTD_SKIP_PREBUILT !== "1") {
    log("trying the prebuilt binary");
    if (tryPrebuilt(packageDir)) return log("prebuilt binary installed");
  }
  log("building the addon against the system libzstd");
  buildAgainstSystemLibzstd(packageDir, ensureSystemLibzstd());
  if (!addonLoads(packageDir)) {
    log("the zstd addon was built but does not load");
    process.exit(1);
  }
  log("addon built");
}

main();
