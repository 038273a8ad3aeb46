// Injected time (STYLE.md: "clocks and timers are injected"): the service reads
// `now()` (wall clock) for absolute deadlines that are persisted (migration and
// agent holds, tag quarantine), `mono()` for in-process intervals (rate buckets,
// sync discard, status debounce) so a wall-clock step cannot stretch or cut them
// (issue 10 item 9), and arms one timer at a time through setTimer.
import { performance } from "node:perf_hooks";

export interface Clock {
  now(): number;
  /** monotonic milliseconds; absent: now() (a clock that never steps, e.g. a test's) */
  mono?(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const monoOf = (c: Clock): number => (c.mono ? c.mono() : c.now());

export const realClock: Clock = {
  now: () => Date.now(),
  mono: () => performance.now(),
  setTimer: (fn, ms) => {
    // Node timers overflow past 2^31-1 ms; re-check then (the callback re-arms).
    const t = setTimeout(fn, Math.min(Math.max(0, ms), 0x7fffffff));
    t.unref?.();
    return t;
  },
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};
