import { describe, expect, it } from "vitest";
import { breaksFirst, type CaseFigures, crossings, DEFAULT_THRESHOLDS, machineSaturated } from "./fleet-verdict.ts";

const thresholds = { ...DEFAULT_THRESHOLDS, announceIntervalMs: 15_000 };
const healthy: CaseFigures = {
  case: "10 hosts × 1000 resources",
  converged: true,
  projectorLagMs: { p99: 40, firstThirdMean: 20, lastThirdMean: 25 },
  unappliedMarkers: { count: 1, of: 30 },
  readP99Ms: 30,
  replicaCpuPercent: [20, 18],
  redisGrowthBytesPerHour: 50 * 1024 ** 2,
  machineCpuPercent: 40,
  hostErrors: 0,
};

describe("fleet verdict", () => {
  it("finds nothing in a healthy case", () => {
    expect(crossings(healthy, thresholds)).toEqual([]);
    expect(breaksFirst([healthy], thresholds)).toBeUndefined();
  });

  it("calls lag beyond the announce interval, or growing past a second, a projector crossing", () => {
    const behind = { ...healthy, projectorLagMs: { p99: 20_000, firstThirdMean: 9_000, lastThirdMean: 12_000 } };
    expect(crossings(behind, thresholds).map((c) => c.quantity)).toEqual(["projector lag"]);
    const growing = { ...healthy, projectorLagMs: { p99: 5_000, firstThirdMean: 400, lastThirdMean: 3_000 } };
    expect(crossings(growing, thresholds)[0]?.says).toMatch(/^growing/);
    const steadySecond = { ...healthy, projectorLagMs: { p99: 5_000, firstThirdMean: 1_500, lastThirdMean: 1_600 } };
    expect(crossings(steadySecond, thresholds)).toEqual([]);
    const stalled = { ...healthy, unappliedMarkers: { count: 29, of: 29 } };
    expect(crossings(stalled, thresholds)[0]?.says).toMatch(/^29 of 29 markers never applied/);
  });

  it("lists every crossing in order, and names the first case that has one", () => {
    const loaded = {
      ...healthy,
      case: "1000 hosts × 10000 resources",
      readP99Ms: 1_500,
      replicaCpuPercent: [95, 60],
      machineCpuPercent: 97,
    };
    expect(crossings(loaded, thresholds).map((c) => c.quantity)).toEqual(["read p99", "API replica CPU"]);
    const first = breaksFirst([healthy, loaded, { ...loaded, case: "later" }], thresholds);
    expect(first?.case).toBe(loaded.case);
    expect(first?.machine).toMatch(/^the machine was 97 % busy/);
  });

  it("says a saturated machine beside the figures, without calling it the control plane breaking", () => {
    const busy = { ...healthy, machineCpuPercent: 95 };
    expect(crossings(busy, thresholds)).toEqual([]);
    expect(machineSaturated(busy, thresholds)).toMatch(/competed with the control plane/);
    expect(breaksFirst([busy], thresholds)).toBeUndefined();
  });
});
