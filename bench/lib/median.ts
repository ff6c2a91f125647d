// The median the benchmarks report: the upper middle value of an odd or even count (no averaging).
export const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
