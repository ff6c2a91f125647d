/**
 * Builds a guest image from Debian packages only: the kernel of the package `linux-image-amd64`
 * depends on, and an initramfs holding busybox-static, the virtio block modules and an init that
 * counts ticks on the serial console and on its disk.
 *
 * Usage: node --import tsx scripts/build-image.ts [name] [--images-dir DIR]
 */
import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { ImageError, MissingToolError } from "../shared/hypervisor/errors.ts";
import { findExecutable, run } from "../shared/hypervisor/exec.ts";
import {
  DEFAULT_IMAGE_NAME,
  DEFAULT_IMAGES_DIR,
  type GuestImage,
  IMAGE_FORMAT_VERSION,
  type ImageManifest,
  imageDir,
  loadImage,
  MANIFEST_FILE,
} from "../shared/hypervisor/image.ts";

const KERNEL_META_PACKAGE = "linux-image-amd64";
const BUSYBOX_PACKAGE = "busybox-static";
const MIB = 1024 * 1024;

/** Load order for a virtio block device (the package ships no modules.dep; checked by hand). */
const VIRTIO_BLOCK_MODULES = [
  "virtio/virtio_ring",
  "virtio/virtio",
  "virtio/virtio_pci_legacy_dev",
  "virtio/virtio_pci_modern_dev",
  "virtio/virtio_pci",
  "block/virtio_blk",
] as const;

const REQUIRED_TOOLS: Record<string, string> = {
  "apt-get": "a Debian host with apt is required",
  "apt-cache": "a Debian host with apt is required",
  "dpkg-deb": "apt-get install dpkg",
  tar: "apt-get install tar",
};

/**
 * Dense guests on demand (kernel command line `snapfleet.fill=P snapfleet.dirty=R`): before it counts, the init fills
 * P % of the guest's RAM (of MemTotal, at most all but 32 MiB of what is available) in a tmpfs with a mix like a real workload's memory: 40 % random bytes
 * (incompressible), 25 % binary (the guest's own busybox and kernel modules, repeated), 25 % text (log-like lines,
 * a 1 MiB corpus repeated) and 10 % zero pages; then, with R > 0, it rewrites R MiB of the random part every second
 * (copies within it, so the content stays random and only the pages change). `snapfleet: memory load …` lines mark
 * both on the console. Under TCG /dev/urandom gives a few tens of MB/s, so filling a 4 GiB guest takes a minute.
 */
const MEMORY_LOAD_SCRIPT = `fill=0
dirty=0
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    snapfleet.fill=*) fill=\${arg#snapfleet.fill=} ;;
    snapfleet.dirty=*) dirty=\${arg#snapfleet.dirty=} ;;
  esac
done
# repeat UNIT FILE MIB: FILE holds UNIT over and over, cut at MIB MiB (appending beats a pipe into head under TCG).
repeat() {
  : > "$2"
  while [ "$(stat -c %s "$2")" -lt $(($3 * 1048576)) ]; do cat "$1" >> "$2"; done
  truncate -s $(($3 * 1048576)) "$2"
}
if [ "$fill" -gt 0 ] 2>/dev/null; then
  started=$(cut -d. -f1 /proc/uptime)
  total_kib=$(sed -n 's/^MemTotal: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo)
  available_kib=$(sed -n 's/^MemAvailable: *\\([0-9]*\\) kB$/\\1/p' /proc/meminfo)
  load=$((total_kib * fill / 100 / 1024))
  # Keep 32 MiB for the kernel and the init's own work: a small guest gets less than asked rather than an OOM panic.
  [ $load -gt $((available_kib / 1024 - 32)) ] && load=$((available_kib / 1024 - 32))
  random=$((load * 40 / 100)); binary=$((load * 25 / 100)); zero=$((load * 10 / 100))
  text=$((load - random - binary - zero))
  mkdir -p /load
  mount -t tmpfs -o size=$((load + 16))m tmpfs /load
  dd if=/dev/urandom of=/load/random bs=1M count=$random 2>/dev/null
  cat /bin/busybox /lib/modules/*.ko > /load/binary.unit
  repeat /load/binary.unit /load/binary $binary
  rm /load/binary.unit
  awk 'BEGIN { srand(7); for (i = 0; i < 15000; i++) printf "%06d level=%s user=u%d path=/srv/app/%x/%x status=%d took=%dms\\n", i, (rand() < 0.9 ? "info" : "warn"), int(rand() * 5000), int(rand() * 65536), int(rand() * 4096), (rand() < 0.95 ? 200 : 500), int(rand() * 900) }' | head -c 1048576 > /load/text.unit
  repeat /load/text.unit /load/text.block 16
  repeat /load/text.block /load/text $text
  rm /load/text.unit /load/text.block
  dd if=/dev/zero of=/load/zero bs=1M count=$zero 2>/dev/null
  echo "snapfleet: memory load $load MiB of $((total_kib / 1024)) ($random random, $binary binary, $text text, $zero zero) in $(($(cut -d. -f1 /proc/uptime) - started)) s"
  if [ "$dirty" -gt 0 ] 2>/dev/null && [ "$random" -gt "$dirty" ]; then
    echo "snapfleet: memory load dirtying $dirty MiB/s"
    (
      at=0
      while true; do
        from=$(((at + random / 2) % (random - dirty)))
        dd if=/load/random of=/load/random bs=1M skip=$from seek=$at count=$dirty conv=notrunc 2>/dev/null
        at=$(((at + dirty) % (random - dirty)))
        sleep 1
      done
    ) &
  fi
fi`;

/**
 * The guest's /init. It resumes counting from the tick stored on /dev/vda, prints `tick N` to the
 * serial console every second and writes N back to the disk, so disk state is visible after a reboot.
 */
const INIT_SCRIPT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /dev /proc /sys
mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "snapfleet: boot"
for module in ${VIRTIO_BLOCK_MODULES.map((m) => path.basename(m)).join(" ")}; do
  insmod /lib/modules/$module.ko || echo "snapfleet: insmod $module failed"
done
waited=0
while [ ! -b /dev/vda ] && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
tick=0
if [ -b /dev/vda ]; then
  # Strip leading zeros: sh arithmetic would read them as octal.
  stored=$(dd if=/dev/vda bs=32 count=1 2>/dev/null | tr -cd 0-9 | sed 's/^0*//')
  tick=\${stored:-0}
  echo "snapfleet: disk tick $tick"
else
  echo "snapfleet: no /dev/vda, counting from 0"
fi
${MEMORY_LOAD_SCRIPT}
while true; do
  tick=$((tick + 1))
  echo "tick $tick"
  if [ -b /dev/vda ]; then
    printf '%-31s\\n' "$tick" | dd of=/dev/vda bs=32 count=1 conv=notrunc,fsync 2>/dev/null
  fi
  sleep 1
done
`;

export interface BuildImageOptions {
  name?: string;
  imagesDir?: string;
  /** Rebuild even if a complete image exists. */
  force?: boolean;
}

/**
 * Builds `<imagesDir>/<name>/` (kernel, initrd, manifest.json) unless a complete image is already there.
 * Works in a private temp dir and renames it into place, so concurrent builders never see a half image.
 */
export async function buildImage(options: BuildImageOptions = {}): Promise<GuestImage> {
  const name = options.name ?? DEFAULT_IMAGE_NAME;
  const imagesDir = options.imagesDir ?? DEFAULT_IMAGES_DIR;
  if (name !== DEFAULT_IMAGE_NAME)
    throw new ImageError(`unknown image "${name}"; this builder knows: ${DEFAULT_IMAGE_NAME}`);
  const finalDir = imageDir(imagesDir, name);
  if (!options.force) {
    const existing = await loadCurrentImage(name, imagesDir);
    if (existing) return existing;
  }
  await assertToolsInstalled();
  await mkdir(path.dirname(finalDir), { recursive: true });
  const workDir = `${finalDir}.build-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    const outputDir = path.join(workDir, "image");
    await mkdir(outputDir, { recursive: true });
    await assembleImage(name, workDir, outputDir);
    return await publish(outputDir, finalDir, name, imagesDir, options.force ?? false);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

async function loadCurrentImage(name: string, imagesDir: string): Promise<GuestImage | null> {
  try {
    const image = await loadImage(name, imagesDir);
    if (image.manifest.version !== IMAGE_FORMAT_VERSION) return null;
    await Promise.all([stat(image.kernelPath), stat(image.initrdPath)]);
    return image;
  } catch {
    return null;
  }
}

async function assertToolsInstalled(): Promise<void> {
  for (const [tool, hint] of Object.entries(REQUIRED_TOOLS)) {
    if (!(await findExecutable(tool))) throw new MissingToolError(tool, hint);
  }
}

async function assembleImage(name: string, workDir: string, outputDir: string): Promise<void> {
  const kernelPackage = await resolveKernelPackage();
  const debsDir = path.join(workDir, "debs");
  const extractDir = path.join(workDir, "extract");
  await mkdir(debsDir);
  await mkdir(extractDir);
  await downloadPackages([kernelPackage, BUSYBOX_PACKAGE], debsDir);
  const debs = await readdir(debsDir);
  const kernelDeb = path.join(debsDir, findDeb(debs, kernelPackage));
  const busyboxDeb = path.join(debsDir, findDeb(debs, BUSYBOX_PACKAGE));

  await extractFromDeb(kernelDeb, extractDir, [
    "./boot/vmlinuz-*",
    ...VIRTIO_BLOCK_MODULES.map((m) => `./lib/modules/*/kernel/drivers/${m}.ko`),
  ]);
  await extractFromDeb(busyboxDeb, extractDir, ["./bin/busybox"]);
  const kernelFile = (await readdir(path.join(extractDir, "boot"))).find((f) => f.startsWith("vmlinuz-"));
  if (!kernelFile) throw new ImageError(`${kernelPackage} contains no /boot/vmlinuz-*`);
  const kernelRelease = kernelFile.slice("vmlinuz-".length);
  const busybox = path.join(extractDir, "bin", "busybox");

  const rootDir = path.join(workDir, "initramfs");
  await populateInitramfs(
    rootDir,
    busybox,
    path.join(extractDir, "lib", "modules", kernelRelease, "kernel", "drivers"),
  );
  await copyFile(path.join(extractDir, "boot", kernelFile), path.join(outputDir, "vmlinuz"));
  await packCpio(busybox, rootDir, path.join(outputDir, "initrd.img"));

  const manifest: ImageManifest = {
    name,
    version: IMAGE_FORMAT_VERSION,
    kernel: "vmlinuz",
    initrd: "initrd.img",
    cmdline: "console=ttyS0 quiet panic=-1",
    defaultMemoryBytes: 128 * MIB,
    defaultDiskBytes: 16 * MIB,
    sources: [await debIdentity(kernelDeb), await debIdentity(busyboxDeb)],
    builtAt: new Date().toISOString(),
  };
  await writeFile(path.join(outputDir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
}

async function resolveKernelPackage(): Promise<string> {
  const { stdout } = await run("apt-cache", ["depends", KERNEL_META_PACKAGE]);
  const match = /Depends:\s*(linux-image-\d\S*)/.exec(stdout);
  if (!match?.[1]) {
    throw new ImageError(`cannot tell which kernel ${KERNEL_META_PACKAGE} depends on (run apt-get update?)`);
  }
  return match[1];
}

async function downloadPackages(packages: string[], dir: string): Promise<void> {
  try {
    // Sandbox user root: the _apt user cannot write into a root-owned temp dir.
    await run("apt-get", ["download", "-q", "-o", "APT::Sandbox::User=root", ...packages], {
      cwd: dir,
      timeoutMs: 600_000,
    });
  } catch (cause) {
    throw new ImageError(`apt-get download ${packages.join(" ")} failed (needs root and Debian's apt repositories)`, {
      cause,
    });
  }
}

function findDeb(files: string[], packageName: string): string {
  const deb = files.find((f) => f.startsWith(`${packageName}_`) && f.endsWith(".deb"));
  if (!deb) throw new ImageError(`apt-get download produced no ${packageName}_*.deb`);
  return deb;
}

async function extractFromDeb(deb: string, targetDir: string, members: string[]): Promise<void> {
  // Stream only the members we need instead of unpacking the whole 400 MB module tree.
  const script = 'deb="$1"; dir="$2"; shift 2; dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards "$@"';
  await run("sh", ["-c", script, "sh", deb, targetDir, ...members], { timeoutMs: 300_000 });
}

async function debIdentity(deb: string): Promise<string> {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-deb's own ${field} placeholders
  const { stdout } = await run("dpkg-deb", ["--show", "--showformat=${Package}=${Version}", deb]);
  return stdout.trim();
}

async function populateInitramfs(rootDir: string, busybox: string, driversDir: string): Promise<void> {
  for (const dir of ["bin", "dev", "proc", "sys", "lib/modules"])
    await mkdir(path.join(rootDir, dir), { recursive: true });
  await copyFile(busybox, path.join(rootDir, "bin", "busybox"));
  await chmod(path.join(rootDir, "bin", "busybox"), 0o755);
  for (const module of VIRTIO_BLOCK_MODULES) {
    await copyFile(
      path.join(driversDir, `${module}.ko`),
      path.join(rootDir, "lib", "modules", `${path.basename(module)}.ko`),
    );
  }
  await writeFile(path.join(rootDir, "init"), INIT_SCRIPT, { mode: 0o755 });
}

async function packCpio(busybox: string, rootDir: string, output: string): Promise<void> {
  // The extracted static busybox does the packing, so the host needs no cpio.
  const script = 'cd "$1" && "$2" find . | "$2" cpio -o -H newc > "$3"';
  await run("sh", ["-c", script, "sh", rootDir, busybox, output], { timeoutMs: 120_000 });
}

async function publish(
  outputDir: string,
  finalDir: string,
  name: string,
  imagesDir: string,
  force: boolean,
): Promise<GuestImage> {
  if (force) await rm(finalDir, { recursive: true, force: true });
  try {
    await rename(outputDir, finalDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // Another builder finished first: keep its image if it is complete, else replace a stale one.
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
    const existing = await loadCurrentImage(name, imagesDir);
    if (existing) return existing;
    const stale = `${finalDir}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
    await rename(finalDir, stale);
    await rm(stale, { recursive: true, force: true });
    await rename(outputDir, finalDir);
  }
  return loadImage(name, imagesDir);
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { "images-dir": { type: "string" }, force: { type: "boolean" } },
  });
  const started = Date.now();
  const image = await buildImage({
    name: positionals[0] ?? DEFAULT_IMAGE_NAME,
    imagesDir: values["images-dir"] ?? DEFAULT_IMAGES_DIR,
    force: values.force ?? false,
  });
  console.log(`image ${image.manifest.name} ready in ${image.dir} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
