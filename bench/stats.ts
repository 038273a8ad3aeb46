/**
 * The order statistics every bench reports, defined once so that a "p99" or a
 * "median" means the same thing in every row of bench/README.md.
 */

/**
 * The q-quantile (0..1) of xs by the nearest-rank method: the smallest value
 * with at least q of the samples at or below it (so p99 of 100 samples is the
 * 99th smallest, and p50 of 2 samples is the smaller). NaN when xs is empty.
 * `sorted` says xs is already in ascending order (no copy is made then).
 */
export function quantile(xs: ArrayLike<number>, q: number, sorted = false): number {
  if (!xs.length) return NaN;
  const s = sorted ? xs : Array.from(xs).sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

/** The median: the middle value, or the mean of the two middle values of an even count. NaN when empty. */
export function median(xs: ArrayLike<number>): number {
  if (!xs.length) return NaN;
  const s = Array.from(xs).sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}
