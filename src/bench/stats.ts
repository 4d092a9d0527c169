// SPDX-License-Identifier: Apache-2.0
/** Small statistics: percentiles of samples, medians of rounds, ratios of medians. */

/** Where the latency distribution is sampled for the chart and the JSON. */
export const CURVE_POINTS = [50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100] as const;

/** Nearest-rank percentile of an ascending array (0 for no samples). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(xs: number[]): Spread | null {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

/** a/b rounded to 3 decimals, or null when either is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || b === 0) return null;
  return Math.round((a / b) * 1000) / 1000;
}

/** Rounds to a few significant digits for reports (JSON keeps what the runs measured). */
export function round(x: number, digits = 3): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const scale = 10 ** Math.max(0, digits - 1 - Math.floor(Math.log10(Math.abs(x))));
  return Math.round(x * scale) / scale;
}
