// One socket write per turn of the event loop for what the embedded broker
// sends a client (issue 15, attach throughput). aedes writes every packet to
// the client's socket as it goes (mqtt-packet corks each packet only for
// itself), so at 100 agents each delivery and each PUBACK was a writev(2)
// of its own: a fifth of the NVE process's CPU per attach with the broker
// in-process (bench/README.md "Where each microsecond of an attach goes").
import type { Socket } from "node:net";

/**
 * From the first write of a turn, `s` is corked until the loop's check phase
 * (setImmediate), after every read of this turn was handled: what the
 * broker sends `s` in one turn leaves in one write. Backpressure is
 * unchanged (write() still returns false beyond the high-water mark).
 */
export function corkPerTurn(s: Socket): void {
  const write = s.write;
  let corked = false;
  const uncork = () => {
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
}
