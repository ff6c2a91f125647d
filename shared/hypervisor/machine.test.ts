import { describe, expect, it } from "vitest";
import { incompatibility, parseHostQemu } from "./machine.ts";

const HELP = `Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-7.1        Standard PC (i440FX + PIIX, 1996)
`;

describe("QEMU machine compatibility", () => {
  it("reads the version and the machine types of a host's QEMU", () => {
    const host = parseHostQemu("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u7)\nCopyright", HELP);
    expect(host).toEqual({ version: "7.2.19", machines: ["microvm", "pc", "pc-i440fx-7.2", "pc-i440fx-7.1"] });
  });

  it("loads a stream of the same major version and a known machine type", () => {
    const host = { version: "7.2.19", machines: ["pc-i440fx-7.2", "pc-i440fx-7.1"] };
    expect(incompatibility({ qemu_version: "7.2.5", machine_type: "pc-i440fx-7.1" }, host)).toBeNull();
  });

  it("refuses another major version, and an unknown machine type", () => {
    const host = { version: "10.0.2", machines: ["pc-i440fx-10.0", "pc-i440fx-7.2"] };
    expect(incompatibility({ qemu_version: "7.2.19", machine_type: "pc-i440fx-7.2" }, host)).toContain(
      "another major version",
    );
    expect(incompatibility({ qemu_version: "10.1.0", machine_type: "pc-i440fx-10.1" }, host)).toContain(
      "machine type pc-i440fx-10.1 is unknown",
    );
  });
});
