// One socket write per turn of the event loop for what the embedded broker
// sends a client (issues 10 and 15). aedes writes every packet it delivers in
// a setImmediate of its own, and mqtt-packet corks the socket only until the
// next tick, so at 100 agents each delivery and each PUBACK was a writev(2)
// of its own: a fifth of the NVE process's CPU per attach with the broker
// in-process (bench/README.md "Where each microsecond of an attach goes"),
// and under the issue 10 soak's flood towards one client (the NVE) the
// largest single cost of the event loop's long turns.
import type { Socket } from "node:net";

/**
 * From the first write of a turn, `s` is corked until the loop's check phase
 * (setImmediate): the check phase of this turn for what the poll phase wrote,
 * of the next turn for what aedes' own immediates wrote (a timer instead cost
 * ~1 ms per hop at idle, 3x the p50). What the broker sends `s` in one turn
 * leaves in one write. It is flushed before the socket is destroyed, so a
 * refusing CONNACK written just before aedes closes the connection still
 * leaves (end() flushes by itself). Order and backpressure are the stream's
 * own: write() still returns false beyond the high-water mark, and 'drain'
 * follows the flush.
 */
export function corkPerTurn(s: Socket): void {
  const write = s.write, destroy = s.destroy;
  let corked = false;
  const uncork = () => {
    if (!corked) return;
    corked = false;
    s.uncork();
  };
  s.write = function (this: Socket, ...args: unknown[]): boolean {
    if (!corked && !s.destroyed) {
      corked = true;
      s.cork();
      setImmediate(uncork);
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Socket["write"];
  s.destroy = function (this: Socket, ...args: unknown[]): Socket {
    // Every cork level, ours and a writer's pending next-tick one: destroy()
    // discards what is still buffered.
    if (corked) {
      corked = false;
      while (s.writableCorked > 0) s.uncork();
    }
    return (destroy as (...a: unknown[]) => Socket).apply(this, args);
  } as Socket["destroy"];
}
