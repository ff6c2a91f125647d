// QEMU_ACCEL=auto: KVM on bare metal, TCG inside a VM (nested KVM hangs guest boots on our build machines).
import { readFileSync } from "node:fs";

export function effectiveAccel(configured: "auto" | "kvm" | "tcg"): "auto" | "kvm" | "tcg" {
  if (configured !== "auto") return configured;
  try {
    const flags = readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1] ?? "";
    if (flags.split(/\s+/).includes("hypervisor")) return "tcg";
  } catch {}
  return "auto";
}
