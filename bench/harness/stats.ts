/** Small statistics over samples. */

/** Nearest-rank percentile of sorted samples. */
export function percentile(sorted: number[], p: number): number {
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Median of sorted samples. */
export function median(sorted: number[]): number {
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Median of samples in any order. */
export const medianOf = (xs: number[]): number => median([...xs].sort((a, b) => a - b));

/** a / b, or null when either is missing or b is 0. */
export const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a === null || a === undefined || b === null || b === undefined || b === 0 ? null : a / b;

export function round(n: number | null, digits: number): number | null {
  if (n === null) return null;
  const k = 10 ** digits;
  return Math.round(n * k) / k;
}
