// Injected time (STYLE.md: "clocks and timers are injected"): the service reads
// `now()` for absolute deadlines and arms one timer at a time through it.
export interface Clock {
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimer: (fn, ms) => {
    // Node timers overflow past 2^31-1 ms; re-check then (the callback re-arms).
    const t = setTimeout(fn, Math.min(Math.max(0, ms), 0x7fffffff));
    t.unref?.();
    return t;
  },
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};
