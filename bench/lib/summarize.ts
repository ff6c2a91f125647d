// Latency summaries as the benches print them: count, p50, p99 and max in milliseconds, one decimal.

export interface LatencySummary {
  requests: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
}

export function summarize(values: number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
  return { requests: sorted.length, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: round(sorted.at(-1) ?? 0) };
}

export function round(value: number): number {
  return Math.round(value * 10) / 10;
}
