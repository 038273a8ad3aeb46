// One socket write of one buffer per turn of the event loop (issues 10 and
// 15: the NVE's CPU per attach), for what an MQTT client sends (mqtt.ts, the
// NVE's answers and PUBACKs above all) and what the embedded broker sends
// each client (embedded.ts). mqtt-packet writes a packet to its stream in
// pieces (a PUBLISH: header, length, topic length, topic, packet id,
// payload; a PUBACK: three), each a call of the socket's Writable with its
// bookkeeping, and aedes writes every delivery in a setImmediate of its own:
// at 100 agents each was a write(2) of its own (a fifth of the NVE's CPU per
// attach with the broker in-process), and corked until the check phase they
// still left as a writev(2) of ~9 pieces per request. Here the pieces are
// gathered in an array and leave, concatenated, in the loop's check phase
// (setImmediate): the check phase of this turn for what the poll phase
// wrote, of the next turn for what aedes' own immediates wrote (a timer
// instead cost ~1 ms per hop at idle, 3x the p50). One Writable call and one
// write(2) per turn, whatever the number of packets.
import type { Duplex } from "node:stream";

const WRAPPED = Symbol("nvedge.coalesced");

type Cb = (e?: Error | null) => void;

/**
 * Gathers `s`'s writes of one turn and writes them as one buffer in the check
 * phase, in order. What is gathered is written before the stream is ended
 * or destroyed (a DISCONNECT, a will-triggering kill: what the caller wrote
 * first still leaves first). write() returns false while the stream itself
 * waits for 'drain' (writableNeedDrain), so a writer's backpressure works as
 * before; write callbacks run once their turn's buffer is written. Wrapping
 * twice is a no-op.
 */
export function coalescePerTurn(s: Duplex): void {
  const w = s as Duplex & { [WRAPPED]?: true };
  if (w[WRAPPED]) return;
  w[WRAPPED] = true;
  const write = s.write, end = s.end, destroy = s.destroy;
  let chunks: Buffer[] = [];
  let cbs: Cb[] | undefined;
  let armed = false;
  const flush = () => {
    armed = false;
    if (chunks.length === 0) return;
    const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const done = cbs;
    chunks = [];
    cbs = undefined;
    if (s.destroyed || s.writableEnded) {
      if (done) for (const cb of done) cb(new Error("the stream was closed before its turn's writes left"));
      return;
    }
    const w = write as (b: Buffer, cb?: Cb) => boolean;
    if (done) w.call(s, buf, (e?: Error | null) => { for (const cb of done) cb(e); });
    else w.call(s, buf);
  };
  s.write = function (chunk: unknown, enc?: unknown, cb?: unknown): boolean {
    if (typeof enc === "function") { cb = enc; enc = undefined; }
    if (s.destroyed || s.writableEnded) return (write as (...a: unknown[]) => boolean).call(s, chunk, enc, cb); // the stream's own error
    chunks.push(typeof chunk === "string" ? Buffer.from(chunk, (enc as BufferEncoding | undefined) ?? "utf8") : chunk as Buffer);
    if (typeof cb === "function") (cbs ??= []).push(cb as Cb);
    if (!armed) {
      armed = true;
      setImmediate(flush);
    }
    return !s.writableNeedDrain;
  } as Duplex["write"];
  s.end = function (this: Duplex, ...args: unknown[]): Duplex {
    flush();
    return (end as (...a: unknown[]) => Duplex).apply(this, args);
  } as Duplex["end"];
  s.destroy = function (this: Duplex, ...args: unknown[]): Duplex {
    flush(); // handed to the socket before it goes: destroy() discards only what it could not write yet
    // and every cork level (a writer's pending next-tick one, mqtt-packet's): destroy() discards what is still corked
    while (s.writableCorked > 0) s.uncork();
    return (destroy as (...a: unknown[]) => Duplex).apply(this, args);
  } as Duplex["destroy"];
}
