// First step of `npm start` and `npm test`: install whatever is missing (system packages, npm
// dependencies, the guest image) so a fresh machine needs nothing else. Plain Node: no dependencies.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const MIN_NODE = [20, 19];

/** What the service and its tests need from the system: a file that proves it is there, and its Debian package. */
const SYSTEM_REQUIREMENTS = [
  { need: "redis-server", probe: { command: "redis-server" }, apt: "redis-server" },
  // QEMU 10: forks map RAM from a read-only squashfs mount (`rom=off`, 8.2+) and VMs pin `pc-i440fx-10.0`.
  // Debian 12 ships 7.2, so there it comes from bookworm-backports.
  {
    need: "QEMU 10+",
    probe: { command: "qemu-system-x86_64", minVersion: 10 },
    apt: "qemu-system-x86",
    backports: true,
  },
  { need: "unsquashfs (reads snapshot images)", probe: { command: "unsquashfs" }, apt: "squashfs-tools" },
  { need: "strace (npm run test:power records the fsync/rename order)", probe: { command: "strace" }, apt: "strace" },
  // Data directories on XFS copy memory files by reflink (the capture's pause); tests and bench:snapshots make one.
  { need: "mkfs.xfs (reflink data directories)", probe: { command: "mkfs.xfs" }, apt: "xfsprogs" },
  { need: "mkfs.btrfs (bench:snapshots --data-fs btrfs)", probe: { command: "mkfs.btrfs" }, apt: "btrfs-progs" },
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
  // The tests' S3 store: one single-node Ceph cluster with its gateway (test/helpers/ceph-cluster.ts).
  { need: "ceph-mon for the tests' S3 store", probe: { command: "ceph-mon" }, apt: "ceph-mon" },
  { need: "ceph-osd for the tests' S3 store", probe: { command: "ceph-osd" }, apt: "ceph-osd" },
  { need: "radosgw, the tests' S3 gateway", probe: { command: "radosgw" }, apt: "radosgw" },
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

/** Major version of a command's `--version` output, or 0 when it cannot be read. */
function majorVersion(command) {
  const result = spawnSync(command, ["--version"], { encoding: "utf8" });
  return Number(/version (\d+)\./.exec(result.stdout ?? "")?.[1] ?? 0);
}

function satisfied({ probe }) {
  if (probe.file) return existsSync(probe.file);
  return onPath(probe.command) && (!probe.minVersion || majorVersion(probe.command) >= probe.minVersion);
}

const BACKPORTS_LIST = "/etc/apt/sources.list.d/bookworm-backports.list";

/** On Debian 12, packages marked `backports` come from bookworm-backports; elsewhere from the distribution. */
function backportsRelease() {
  const osRelease = existsSync("/etc/os-release") ? readFileSync("/etc/os-release", "utf8") : "";
  if (!/^VERSION_CODENAME=bookworm$/m.test(osRelease)) return null;
  if (!existsSync(BACKPORTS_LIST)) {
    writeFileSync(BACKPORTS_LIST, "deb http://deb.debian.org/debian bookworm-backports main\n");
    log(`added ${BACKPORTS_LIST}`);
  }
  return "bookworm-backports";
}

function checkNode() {
  const [major, minor] = process.versions.node.split(".").map(Number);
  if (major < MIN_NODE[0] || (major === MIN_NODE[0] && minor < MIN_NODE[1])) {
    fail(`Node ${process.versions.node} is too old: install Node ${MIN_NODE.join(".")}+ (20, 22 or 24)`);
  }
}

function installSystemPackages() {
  const missing = SYSTEM_REQUIREMENTS.filter((requirement) => !satisfied(requirement));
  if (missing.length === 0) return;
  const packagesOf = (list) => [...new Set(list.map((requirement) => requirement.apt))];
  const plain = packagesOf(missing.filter((requirement) => !requirement.backports));
  const backported = packagesOf(missing.filter((requirement) => requirement.backports));
  log(`missing: ${missing.map((requirement) => requirement.need).join(", ")}`);
  if (!onPath("apt-get")) {
    fail(`install these with your package manager (Debian names): ${[...plain, ...backported].join(" ")}`);
  }
  if (process.getuid?.() !== 0) {
    fail(
      `run as root (on Debian 12 add \`deb http://deb.debian.org/debian bookworm-backports main\` to ${BACKPORTS_LIST}): ` +
        `apt-get update && apt-get install -y --no-install-recommends ${plain.join(" ")} && ` +
        `apt-get install -y --no-install-recommends -t bookworm-backports ${backported.join(" ")}`,
    );
  }
  const release = backported.length > 0 ? backportsRelease() : null;
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = (packages, extra = []) =>
    packages.length > 0 &&
    execFileSync("apt-get", ["install", "-y", "-qq", "--no-install-recommends", ...extra, ...packages], {
      stdio: "inherit",
      env,
    });
  execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
  install(plain);
  install(backported, release ? ["-t", release] : []);
  const stillMissing = missing.filter((requirement) => !satisfied(requirement));
  if (stillMissing.length > 0) fail(`still missing after apt-get: ${stillMissing.map((r) => r.need).join(", ")}`);
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

/** The codec addon is ours: rebuilt whenever its sources are newer than the build (the script checks, cheaply). */
function buildCodecAddon() {
  const result = spawnSync(process.execPath, [path.join(ROOT, "scripts", "install-codec-native.mjs")], {
    cwd: ROOT,
    stdio: "inherit",
  });
  if (result.status !== 0) fail("codec addon step failed");
}

/** The format version a built image records. */
function imageVersion(manifest) {
  try {
    return JSON.parse(readFileSync(manifest, "utf8")).version;
  } catch {
    return undefined;
  }
}

/** The format version this checkout's builder writes (IMAGE_FORMAT_VERSION; this script runs without TypeScript). */
function builderImageVersion() {
  const source = readFileSync(path.join(ROOT, "shared", "hypervisor", "image.ts"), "utf8");
  return Number(source.match(/export const IMAGE_FORMAT_VERSION = (\d+);/)?.[1]);
}

function buildGuestImage() {
  const builder = path.join(ROOT, "scripts", "build-image.ts");
  if (!existsSync(builder)) return;
  const dataDir = path.resolve(ROOT, process.env.DATA_DIR || "data");
  const imagesDir = path.resolve(dataDir, process.env.IMAGES_DIR || "images");
  const manifest = path.join(imagesDir, "busybox", "manifest.json");
  const current = existsSync(manifest) && imageVersion(manifest) === builderImageVersion();
  if (current) return;
  log(`building the guest image into ${imagesDir} (${existsSync(manifest) ? "its format changed" : "once"})`);
  const result = spawnSync(process.execPath, ["--import", "tsx", builder, "busybox", "--images-dir", imagesDir], {
    cwd: ROOT,
    stdio: "inherit",
  });
  if (result.status !== 0) fail("guest image build failed");
}

checkNode();
installSystemPackages();
installNpmDependencies();
buildCodecAddon();
buildGuestImage();
