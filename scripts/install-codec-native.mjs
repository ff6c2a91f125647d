// Builds the codec's native addon (shared/codec/native: lseek holes, XXH64, zstd, LZ4) against Debian's libzstd,
// liblz4 and xxhash headers, installing them with apt-get when run as root. When it cannot be built the install
// still succeeds: the codec then runs on its packages backend (@mongodb-js/zstd, lz4-napi), same files, slower.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const ADDON_DIR = fileURLToPath(new URL("../shared/codec/native/", import.meta.url));
const ADDON_FILE = path.join(ADDON_DIR, "build/Release/snapfleet_codec.node");
const SOURCES = ["snapfleet_codec.cc", "binding.gyp"].map((name) => path.join(ADDON_DIR, name));
const SYSTEM_PACKAGES = ["libzstd-dev", "liblz4-dev", "libxxhash-dev"];
const REQUIRED_HEADERS = ["/usr/include/zstd.h", "/usr/include/lz4frame.h", "/usr/include/xxhash.h"];

function log(message) {
  process.stderr.write(`[install-codec-native] ${message}\n`);
}

function addonLoads() {
  const probe = spawnSync(
    process.execPath,
    ["-e", `process.exit(require(${JSON.stringify(ADDON_FILE)}).xxh64Low32(Buffer.alloc(0)) === 0x51d8e999 ? 0 : 1)`],
    { stdio: "ignore", timeout: 20_000 },
  );
  return probe.status === 0;
}

function addonIsCurrent() {
  if (!existsSync(ADDON_FILE)) return false;
  const built = statSync(ADDON_FILE).mtimeMs;
  return SOURCES.every((source) => statSync(source).mtimeMs <= built) && addonLoads();
}

function aptGetInstall() {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    spawnSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...SYSTEM_PACKAGES], {
      stdio: "inherit",
      env,
    });
  if (install().status === 0) return;
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  if (install().status !== 0) throw new Error(`apt-get install ${SYSTEM_PACKAGES.join(" ")} failed`);
}

function ensureSystemPackages() {
  if (REQUIRED_HEADERS.every((header) => existsSync(header))) return;
  if (process.getuid?.() !== 0) {
    throw new Error(`headers missing; run: sudo apt-get install -y ${SYSTEM_PACKAGES.join(" ")}   then: npm rebuild`);
  }
  log(`installing ${SYSTEM_PACKAGES.join(" ")} with apt-get`);
  aptGetInstall();
}

function build() {
  const nodeGyp = require.resolve("node-gyp/bin/node-gyp.js");
  // Use the running Node's own headers when it ships them (Debian's and nodesource's do): no download needed.
  const prefix = path.resolve(path.dirname(process.execPath), "..");
  const nodedir = existsSync(path.join(prefix, "include/node/node_api.h")) ? [`--nodedir=${prefix}`] : [];
  execFileSync(process.execPath, [nodeGyp, "rebuild", ...nodedir], { cwd: ADDON_DIR, stdio: "inherit" });
}

function buildAddon() {
  ensureSystemPackages();
  log("building the codec addon");
  build();
  if (!addonLoads()) throw new Error("the codec addon was built but does not load");
  log("codec addon built");
}

function main() {
  if (addonIsCurrent()) return;
  try {
    buildAddon();
  } catch (error) {
    log(`WARNING: the codec addon is not built (${error.message.split("\n")[0]})`);
    log("the codec will use its packages backend (@mongodb-js/zstd, lz4-napi): same files, slower decompression");
  }
}

main();
