// Where one control plane breaks, as bench/fleet.ts decides it: each case's figures against stated thresholds, and the
// first case (in the order run, smallest first) whose figures cross one. A machine whose cores were busier than a
// threshold (the simulated hosts and other work share them) is said beside, not counted as the control plane breaking.

export interface CaseFigures {
  case: string;
  /** The read model held every seeded resource within the bench's deadline. */
  converged: boolean;
  /** Marker events appended once a second, until the read model had each (unapplied ones: until the window ended). */
  projectorLagMs: { p99: number; firstThirdMean: number; lastThirdMean: number };
  /** Markers the read model never had within the window: their lag is only known to exceed what they waited. */
  unappliedMarkers: { count: number; of: number };
  /** The worst route's p99 over the window. */
  readP99Ms: number;
  /** Each API replica's CPU over the window, in % of one core. */
  replicaCpuPercent: number[];
  /** Redis used_memory growth over the window besides the event stream's (trimmed every minute), as bytes per hour. */
  redisGrowthBytesPerHour: number;
  /** How busy the machine's cores were over the window (/proc/stat: the bench and any other work), in %. */
  machineCpuPercent: number;
  /** Errors the simulated hosts met (an append, a digest, an announcement, a job). */
  hostErrors: number;
}

export interface Thresholds {
  /** The hosts' announce interval: a read model further behind than one interval compares digests with old rows. */
  announceIntervalMs: number;
  readP99Ms: number;
  /** One replica is one event loop: near a whole core it queues requests and projection alike. */
  replicaCpuPercent: number;
  redisGrowthBytesPerHour: number;
  /** Beyond this the simulated fleet competes with the control plane for the cores: the figures measure the machine. */
  machineCpuPercent: number;
}

export const DEFAULT_THRESHOLDS: Omit<Thresholds, "announceIntervalMs"> = {
  readP99Ms: 1_000,
  replicaCpuPercent: 80,
  redisGrowthBytesPerHour: 1024 ** 3,
  machineCpuPercent: 90,
};

const UNAPPLIED_MARKERS_ALLOWED = 2;
/** Lag is growing when the last third of the window averages over twice the first third, and over this. */
const GROWING_LAG_FLOOR_MS = 1_000;

export interface Crossing {
  quantity: string;
  /** What was measured against what it may be, in words. */
  says: string;
}

/** The thresholds a case's figures cross, in the order checked. */
export function crossings(figures: CaseFigures, thresholds: Thresholds): Crossing[] {
  const found: Crossing[] = [];
  const cross = (quantity: string, says: string) => found.push({ quantity, says });
  if (!figures.converged) cross("seeding", "the read model did not hold every seeded resource in time");
  const lag = figures.projectorLagMs;
  const { count: unapplied, of: markers } = figures.unappliedMarkers;
  // The last marker or two may still be on their way; more than that unapplied is a projector that fell behind.
  if (unapplied > UNAPPLIED_MARKERS_ALLOWED) {
    cross(
      "projector lag",
      `${unapplied} of ${markers} markers never applied in the window (p99 ≥ ${Math.round(lag.p99)} ms)`,
    );
  } else if (lag.p99 > thresholds.announceIntervalMs) {
    cross("projector lag", `p99 ${Math.round(lag.p99)} ms > the announce interval ${thresholds.announceIntervalMs} ms`);
  } else if (lag.lastThirdMean > GROWING_LAG_FLOOR_MS && lag.lastThirdMean > 2 * lag.firstThirdMean) {
    cross(
      "projector lag",
      `growing: ${Math.round(lag.firstThirdMean)} ms → ${Math.round(lag.lastThirdMean)} ms over the window`,
    );
  }
  if (figures.readP99Ms > thresholds.readP99Ms) {
    cross("read p99", `${Math.round(figures.readP99Ms)} ms > ${thresholds.readP99Ms} ms`);
  }
  const busiest = Math.max(0, ...figures.replicaCpuPercent);
  if (busiest > thresholds.replicaCpuPercent) {
    cross("API replica CPU", `${Math.round(busiest)} % of a core > ${thresholds.replicaCpuPercent} %`);
  }
  if (figures.redisGrowthBytesPerHour > thresholds.redisGrowthBytesPerHour) {
    const mib = (bytes: number) => `${Math.round(bytes / 1024 ** 2)} MiB`;
    cross(
      "Redis memory",
      `grows ${mib(figures.redisGrowthBytesPerHour)}/h > ${mib(thresholds.redisGrowthBytesPerHour)}/h`,
    );
  }
  if (figures.hostErrors > 0) cross("hosts", `${figures.hostErrors} errors on the simulated hosts`);
  return found;
}

/** Why the case's figures are the machine's rather than the control plane's, if its cores were saturated. */
export function machineSaturated(figures: CaseFigures, thresholds: Thresholds): string | undefined {
  if (figures.machineCpuPercent <= thresholds.machineCpuPercent) return undefined;
  return `the machine was ${Math.round(figures.machineCpuPercent)} % busy (> ${thresholds.machineCpuPercent} %): the simulated hosts and other work competed with the control plane`;
}

/** The first case (in the order given) that crosses a threshold, with what it crosses; undefined if none does. */
export function breaksFirst(
  cases: CaseFigures[],
  thresholds: Thresholds,
): { case: string; crossings: Crossing[]; machine?: string } | undefined {
  for (const figures of cases) {
    const found = crossings(figures, thresholds);
    if (found.length > 0)
      return { case: figures.case, crossings: found, machine: machineSaturated(figures, thresholds) };
  }
  return undefined;
}
