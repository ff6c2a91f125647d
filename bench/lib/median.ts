// The one median every benchmark reports: the upper middle value of an odd or even count (no averaging), so a
// reported median is always a value that was measured.
export const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** Median with the smallest and largest value, for "median (min–max)" cells. */
export function spread(values: number[]): { median: number; min: number; max: number } {
  return { median: median(values), min: Math.min(...values), max: Math.max(...values) };
}
