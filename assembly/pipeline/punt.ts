// Frames for the host (issue 11): the ARP and neighbour-discovery frames the
// underlay's neighbour cache needs (pipeline/host.ts). Each process() call
// starts with an empty area; the host reads puntCount records after it
// (host/io/worker.ts). A record: u16 port, u16 frame length, then the frame's
// first PUNT_REC - 4 bytes. Frames beyond PUNT_MAX in one batch are counted
// in puntLost, never written.
import { alloc } from "../state";

export const PUNT_MAX: u32 = 32;
export const PUNT_REC: u32 = 128;
/** Returned by the handlers of pipeline/host.ts for a frame that went to the host. */
export const PUNTED: u32 = 0xffffffff;

let puntBase: usize = 0;
export let puntCount: u32 = 0;
export let puntLost: u64 = 0;
export let puntTotal: u64 = 0;

export function puntInit(): void { puntBase = alloc(<usize>PUNT_MAX * PUNT_REC); }
export function puntReset(): void { puntCount = 0; }
export function puntPtr(): usize { return puntBase; }

export function punt(port: u32, p: usize, len: u32): void {
  puntTotal++;
  if (puntCount >= PUNT_MAX) { puntLost++; return; }
  const r = puntBase + <usize>puntCount * PUNT_REC;
  const n = len < PUNT_REC - 4 ? len : PUNT_REC - 4;
  store<u16>(r, <u16>port);
  store<u16>(r + 2, <u16>len);
  memory.copy(r + 4, p, n);
  puntCount++;
}
