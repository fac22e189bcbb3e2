/**
 * Pure statistics for the benchmarks: percentiles and latency summaries.
 */

/**
 * The p-th percentile (0 ≤ p ≤ 1) of values sorted ascending, interpolated linearly
 * between the two nearest ranks — the same definition as Postgres's
 * `percentile_cont`, so the figures agree with `tributary monitor` and the demo.
 * Null for no values.
 */
export function percentile(sortedAscending: ArrayLike<number>, p: number): number | null {
  if (!(p >= 0 && p <= 1)) throw new RangeError(`percentile must be between 0 and 1 (got ${p})`);
  const n = sortedAscending.length;
  if (n === 0) return null;
  const rank = p * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sortedAscending[lo]!;
  const b = sortedAscending[hi]!;
  return a + (b - a) * (rank - lo);
}

export interface LatencySummary {
  samples: number;
  p50: number | null;
  p95: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
}

/** p50/p95/p99/max/mean of unsorted values (not modified), rounded to 0.1. */
export function summarizeLatencies(values: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i]!;
  const round = (v: number | null) => (v === null ? null : Math.round(v * 10) / 10);
  return {
    samples: n,
    p50: round(percentile(sorted, 0.5)),
    p95: round(percentile(sorted, 0.95)),
    p99: round(percentile(sorted, 0.99)),
    max: round(n === 0 ? null : sorted[n - 1]!),
    mean: round(n === 0 ? null : sum / n),
  };
}

/** events / seconds, rounded to a whole number (0 when no time elapsed). */
export function ratePerSec(events: number, seconds: number): number {
  return seconds > 0 ? Math.round(events / seconds) : 0;
}
