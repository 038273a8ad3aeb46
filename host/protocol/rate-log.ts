// Refusals are logged once, rate-limited (issue 10: "every refusal ... is
// logged once (rate-limited)"): a client that repeats a refused action cannot
// flood the log. Used by the embedded broker and the IMA.

/**
 * One line per key per window, then the count of those it held back with the
 * next one. Monotonic time (performance.now): a wall-clock step changes nothing.
 */
export function rateLimitedLog(log: (l: string) => void, windowMs = 10_000, now: () => number = () => performance.now()): (key: string, line: string) => void {
  const last = new Map<string, { at: number; held: number }>();
  return (key, line) => {
    const t = now();
    const e = last.get(key);
    if (e && t - e.at < windowMs) {
      e.held++;
      return;
    }
    log(e?.held ? `${line} (and ${e.held} more like it in the last ${Math.round(windowMs / 1000)} s)` : line);
    if (last.size >= 10_000) last.clear(); // bounded: many keys only cost a few repeated lines
    last.set(key, { at: t, held: 0 });
  };
}
