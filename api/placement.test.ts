import { describe, expect, it } from "vitest";
import { ApiError } from "../shared/errors.ts";
import type { HostStatus } from "../shared/hosts.ts";
import { chooseHost } from "./placement.ts";

const host = (id: string, overrides: Partial<HostStatus> = {}): HostStatus => ({
  id,
  hypervisors: ["qemu"],
  started_at: "2026-11-25T00:00:00.000Z",
  last_seen_at: "2026-11-25T00:00:00.000Z",
  pid: 1,
  online: true,
  offline_reason: null,
  ...overrides,
});
const OFFLINE = { online: false, offline_reason: "its capture worker is not connected" };

function failure(run: () => unknown): { code: string; status: number; message: string } {
  try {
    run();
  } catch (error) {
    if (error instanceof ApiError) return { code: error.code, status: error.status, message: error.message };
  }
  throw new Error("expected an ApiError");
}

describe("chooseHost", () => {
  it("places on the least loaded online host that runs the hypervisor, ties by id", () => {
    const hosts = [host("a"), host("b"), host("c", { hypervisors: ["other"] }), host("d", OFFLINE)];
    expect(chooseHost(hosts, new Map([["a", 2]]), "qemu")).toBe("b");
    expect(
      chooseHost(
        hosts,
        new Map([
          ["a", 1],
          ["b", 1],
        ]),
        "qemu",
      ),
    ).toBe("a");
    expect(
      chooseHost(
        hosts,
        new Map([
          ["a", 5],
          ["b", 3],
        ]),
        "other",
      ),
    ).toBe("c");
  });

  it("takes the requested host whatever its load", () => {
    expect(chooseHost([host("a"), host("b")], new Map([["b", 9]]), "qemu", "b")).toBe("b");
  });

  it("refuses an unknown host with 400, an offline one with 503, one without the hypervisor with 501", () => {
    const hosts = [host("a"), host("b", OFFLINE)];
    expect(failure(() => chooseHost(hosts, new Map(), "qemu", "zz"))).toMatchObject({
      code: "invalid_request",
      status: 400,
      message: expect.stringContaining("known hosts: a, b"),
    });
    expect(failure(() => chooseHost(hosts, new Map(), "qemu", "b"))).toMatchObject({
      code: "unavailable",
      status: 503,
      message: expect.stringContaining("not connected"),
    });
    expect(failure(() => chooseHost(hosts, new Map(), "other", "a"))).toMatchObject({
      code: "not_supported",
      status: 501,
    });
  });

  it("answers 503 with no online host and 501 when no online host runs the hypervisor", () => {
    expect(failure(() => chooseHost([host("a", OFFLINE)], new Map(), "qemu"))).toMatchObject({ status: 503 });
    expect(failure(() => chooseHost([host("a")], new Map(), "other"))).toMatchObject({
      code: "not_supported",
      status: 501,
      message: expect.stringContaining("available: qemu"),
    });
  });
});
