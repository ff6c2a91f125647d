// What the suite needs from the machine beyond npm packages, and how set-up (scripts/setup.mjs) provides it. In CI a
// missing part fails the run naming it; elsewhere the cases that need it are skipped out loud (test/helpers/needs.ts).
import { existsSync } from "node:fs";
import { availableHypervisors } from "../../shared/hypervisor/registry.ts";

/** CI=true or CI=1, as CI services set it: there a missing part is a broken install, not a reason to skip. */
export const IN_CI = ["true", "1"].includes((process.env.CI ?? "").toLowerCase());

export type MachinePart = "postgres" | "qemu" | "chromium" | "root" | "ceph";

/** Chromium as Debian's package installs it (test/helpers/browser.ts launches this one). */
export const CHROMIUM_PATH = "/usr/bin/chromium";

const PARTS: Record<MachinePart, { name: string; provide: string }> = {
  postgres: {
    name: "PostgreSQL",
    provide:
      "`npm run setup` (scripts/setup.mjs) installs Debian's `postgresql`; the tests use 127.0.0.1:5432 " +
      "(or TEST_POSTGRES_URL) or start a private cluster from its binaries",
  },
  qemu: {
    name: "QEMU (qemu-system-x86_64 10+)",
    provide: "`npm run setup` (scripts/setup.mjs) installs `qemu-system-x86` (from bookworm-backports on Debian 12)",
  },
  chromium: {
    name: `Chromium (${CHROMIUM_PATH})`,
    provide: "`npm run setup` (scripts/setup.mjs) installs Debian's `chromium`",
  },
  ceph: {
    name: "Ceph with its S3 gateway",
    provide:
      "`npm run setup` (scripts/setup.mjs) installs Debian's `ceph-mon`, `ceph-osd` and `radosgw`; the test run " +
      "starts one single-node cluster (test/helpers/ceph-cluster.ts)",
  },
  root: {
    name: "root",
    provide: "run the tests as root: mounting a tmpfs or a squashfs image needs it, and set-up cannot grant it",
  },
};

export const partName = (part: MachinePart): string => PARTS[part].name;

/** The one message a missing part gets, whether it fails the run (CI) or names a skipped case. */
export function missingPartMessage(part: MachinePart, reason: string): string {
  return `${PARTS[part].name} is missing (${reason}): ${PARTS[part].provide}`;
}

export const isRoot = (): boolean => process.getuid?.() === 0;

/**
 * Why each of QEMU, Chromium and root is missing here ("" when present); PostgreSQL and Ceph are probed by starting
 * them.
 */
export async function probeLocalParts(): Promise<Record<Exclude<MachinePart, "postgres" | "ceph">, string>> {
  const hypervisors = await availableHypervisors();
  return {
    qemu: hypervisors.includes("qemu") ? "" : "qemu-system-x86_64 is not on PATH",
    chromium: existsSync(CHROMIUM_PATH) ? "" : `no ${CHROMIUM_PATH}`,
    root: isRoot() ? "" : `running as uid ${process.getuid?.()}`,
  };
}
