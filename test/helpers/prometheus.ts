// Checks a /metrics body with Prometheus' own parser and linter (`promtool check metrics`, Debian's prometheus
// package, installed by scripts/setup.mjs), and finds sample values in it.
import { spawnSync } from "node:child_process";

export function promtoolCheck(exposition: string): { status: number | null; output: string } {
  const result = spawnSync("promtool", ["check", "metrics"], { input: exposition, encoding: "utf8" });
  if (result.error) throw result.error;
  return { status: result.status, output: `${result.stdout}${result.stderr}`.trim() };
}

/**
 * Lint findings kept on purpose: the reference server's gauges and prom-client's Node gauges end in _total, which
 * promtool's linter reserves for counters; those names stay as they are.
 */
const KEPT_NAME_FINDING =
  /^(snapfleet_api_nodejs_active_(handles|requests|resources)_total|snapfleet_snapshot_compression_(active|pending)_total) non-counter metrics should not have "_total" suffix$/;

/** What promtool finds wrong in an exposition beyond the kept names: none when it parses and lints clean. */
export function promtoolProblems(exposition: string): string[] {
  const { status, output } = promtoolCheck(exposition);
  const findings = output.split("\n").filter((line) => line && !KEPT_NAME_FINDING.test(line));
  // Exit 0 is clean, 3 is lint findings only; anything else (1: a parse error) is a problem whatever it printed.
  if (status !== 0 && status !== 3) return [`promtool exited ${status}`, ...findings];
  return findings;
}

/** The value of the sample `name` whose labels include `labels`; undefined when there is none. */
export function sampleValue(exposition: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of exposition.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = new Map([...(match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => present.get(key) === value)) return Number(match[3]);
  }
  return undefined;
}
