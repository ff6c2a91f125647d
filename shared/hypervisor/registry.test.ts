import { describe, expect, it } from "vitest";
import { UnsupportedHypervisorError } from "./errors.ts";
import { availableHypervisors, getHypervisor } from "./registry.ts";

describe("hypervisor registry", () => {
  it("reports qemu when qemu-system-x86_64 is installed", async () => {
    expect(await availableHypervisors()).toEqual(["qemu"]);
    const driver = await getHypervisor("qemu");
    expect(driver.name).toBe("qemu");
  });

  it.each(["firecracker", "cloud-hypervisor", "vz", "qemu-microvm", "bochs"])(
    "refuses %s and names the available hypervisors",
    async (name) => {
      const error = await getHypervisor(name).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnsupportedHypervisorError);
      expect((error as UnsupportedHypervisorError).requested).toBe(name);
      expect((error as UnsupportedHypervisorError).available).toEqual(["qemu"]);
      expect((error as Error).message).toContain("available: qemu");
    },
  );

  it("reports nothing available when the qemu binary is missing", async () => {
    const options = { qemu: { binary: "/nonexistent/qemu-system-x86_64" } };
    expect(await availableHypervisors(options)).toEqual([]);
    await expect(getHypervisor("qemu", options)).rejects.toThrow(/available: none/);
  });
});
