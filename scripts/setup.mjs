// First step of `npm start` and `npm test`: install whatever is missing (system packages, npm
// dependencies, the guest image) so a fresh machine needs nothing else. Plain Node: no dependencies.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MIN_NODE = [20, 19];

/** What the service and its tests need from the system: a file that proves it is there, and its Debian package. */
const SYSTEM_REQUIREMENTS = [
  { need: "redis-server", probe: { command: "redis-server" }, apt: "redis-server" },
  { need: "QEMU", probe: { command: "qemu-system-x86_64" }, apt: "qemu-system-x86" },
  { need: "static busybox for the guest image", probe: { file: "/bin/busybox" }, apt: "busybox-static" },
  { need: "depmod for the guest image", probe: { command: "depmod" }, apt: "kmod" },
  { need: "zstd command", probe: { command: "zstd" }, apt: "zstd" },
  { need: "lz4 command", probe: { command: "lz4" }, apt: "lz4" },
  { need: "libzstd headers for the native codecs", probe: { file: "/usr/include/zstd.h" }, apt: "libzstd-dev" },
  { need: "liblz4 headers for the native codec", probe: { file: "/usr/include/lz4frame.h" }, apt: "liblz4-dev" },
  { need: "xxhash headers for the native codec", probe: { file: "/usr/include/xxhash.h" }, apt: "libxxhash-dev" },
  { need: "a C++ compiler for native addons", probe: { command: "g++" }, apt: "g++" },
  { need: "make for native addons", probe: { command: "make" }, apt: "make" },
  { need: "python3 for node-gyp", probe: { command: "python3" }, apt: "python3" },
  // DATABASE_URL's engine: the tests use the machine's server or start a private cluster from these binaries.
  { need: "PostgreSQL for the read-model tests", probe: { command: "pg_ctlcluster" }, apt: "postgresql" },
  { need: "promtool to check GET /metrics in tests", probe: { command: "promtool" }, apt: "prometheus" },
  { need: "Chromium for the dashboard's browser tests", probe: { command: "chromium" }, apt: "chromium" },
];

function log(message) {
  process.stderr.write(`[setup] ${message}\n`);
}

function fail(message) {
  process.stderr.write(`[setup] ${message}\n`);
  process.exit(1);
}

function onPath(command) {
  return (process.env.PATH ?? "")
    .split(path.delimiter)
    .concat(["/usr/sbin", "/sbin"])
    .some((dir) => dir && existsSync(path.join(dir, command)));
}

function checkNode() {
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major < MIN_NODE[0] || (major === MIN_NODE[0] && minor < MIN_NODE[1])) {
    fail(`Node ${process.versions.node} is too old: install Node ${MIN_NODE.join(".")}+ (20, 22 or 24)`);
  }
}

function installSystemPackages() {
  const missing = SYSTEM_REQUIREMENTS.filter(({ probe }) =>
    probe.command ? !onPath(probe.command) : !existsSync(probe.file),
  );
  if (missing.length === 0) return;
  const packages = [...new Set(missing.map((requirement) => requirement.apt))];
  const command = `apt-get install -y --no-install-recommends ${packages.join(" ")}`;
  log(`missing: ${missing.map((requirement) => requirement.need).join(", ")}`);
  if (!onPath("apt-get")) fail(`install these with your package manager (Debian names): ${packages.join(" ")}`);
  if (process.getuid?.() !== 0) fail(`run: sudo apt-get update && sudo ${command}`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...packages], { stdio: "inherit", env });
}

function installNpmDependencies() {
  const lockFile = path.join(ROOT, "package-lock.json");
  const installedMarker = path.join(ROOT, "node_modules", ".package-lock.json");
  const upToDate = existsSync(installedMarker) && statSync(installedMarker).mtimeMs >= statSync(lockFile).mtimeMs;
  if (upToDate) return;
  log("installing npm dependencies (npm ci)");
  const result = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: ROOT, stdio: "inherit" });
  if (result.status === 0) return;
  // A registry that lacks some platform's optional build makes `npm ci` refuse a lockfile `npm install` accepts.
  log("npm ci failed: trying npm install");
  const fallback = spawnSync("npm", ["install", "--no-audit", "--no-fund"], { cwd: ROOT, stdio: "inherit" });
  if (fallback.status !== 0) fail("npm install failed");
}

function buildGuestImage() {
  const builder = path.join(ROOT, "scripts", "build-image.ts");
  if (!existsSync(builder)) return;
  const dataDir = path.resolve(ROOT, process.env.DATA_DIR || "data");
  const imagesDir = path.resolve(dataDir, process.env.IMAGES_DIR || "images");
  if (existsSync(path.join(imagesDir, "busybox", "manifest.json"))) return;
  log(`building the guest image into ${imagesDir} (once)`);
  const result = spawnSync(process.execPath, ["--import", "tsx", builder, "busybox", "--images-dir", imagesDir], {
    cwd: ROOT,
    stdio: "inherit",
  });
  if (result.status !== 0) fail("guest image build failed");
}

checkNode();
installSystemPackages();
installNpmDependencies();
buildGuestImage();
