// Per-remote next hops on the underlay (issue 11: routes, same-subnet remotes,
// ECMP). Without any, every tunnel's outer destination MAC is the underlay's
// one gateway (control.ts setUnderlay). Once the host has looked a remote NVE
// up in the routing table (host/underlay/routes.ts) it gives that remote its
// own set of next-hop MACs:
//   - one MAC: the remote itself (same subnet, resolved directly) or its
//     route's gateway; written into the tunnels' prebuilt headers, so a frame
//     pays nothing (STYLE.md 3);
//   - several: an equal-cost multipath route; each frame takes one by its
//     outer flow hash, the same hash that fills the UDP source port / IPv6
//     flow label / NVGRE FlowID (RFC 7348 §5, RFC 6438, RFC 2992 hash-threshold),
//     so one inner flow stays on one path;
//   - none: the route or the neighbour is unresolved; nothing goes into those
//     tunnels (never to broadcast, issue 11): unicast is dropped as
//     no-next-hop, flood copies to that remote are left out.
// The tunnel entry's byte 9 says which (TN_NH_*), so the encap path reads one
// byte it already has in cache.
import { alloc, scratch, MAX_REMOTES } from "../state";

/** Byte 9 of a tunnel entry (state.ts TUN_SIZE, encap.ts layout). */
export const TN_NH_ONE: u8 = 0;
export const TN_NH_ECMP: u8 = 1;
export const TN_NH_NONE: u8 = 2;

export const MAX_NEXT_HOPS: u32 = 8;
// entry: byte 0 set (1: the remote has its own next hops), byte 1 count, MAC i at 16 + 8i
const NH_SIZE: usize = 80;
let nhBase: usize = 0;

export function nextHopInit(): void { nhBase = alloc(<usize>MAX_REMOTES * NH_SIZE); }

@inline function nhPtr(r: u32): usize { return nhBase + <usize>r * NH_SIZE; }

/** Remote r's next hops: `n` MACs at scratch[8i .. 8i+6). The host rebuilds r's tunnels after. */
export function setNextHops(r: u32, n: u32): i32 {
  if (r >= MAX_REMOTES || n > MAX_NEXT_HOPS) return 2;
  const e = nhPtr(r);
  for (let i: u32 = 0; i < n; i++) memory.copy(e + 16 + (<usize>i << 3), scratch + (<usize>i << 3), 6);
  store<u8>(e, <u8>n, 1);
  store<u8>(e, 1);
  return 0;
}

/** Remote r back to the underlay's gateway (its remote slot was freed). */
export function clearNextHops(r: u32): void { memory.fill(nhPtr(r), 0, NH_SIZE); }

/**
 * For buildTunnel: writes remote r's first next hop at `dst` and returns the
 * tunnel's TN_NH_* state, or returns 255 when r has none of its own (the
 * gateway applies).
 */
export function nextHopOf(r: u32, dst: usize): u32 {
  const e = nhPtr(r);
  if (load<u8>(e) == 0) return 255;
  const n = <u32>load<u8>(e, 1);
  if (n == 0) { memory.fill(dst, 0, 6); return TN_NH_NONE; }
  memory.copy(dst, e + 16, 6);
  return n == 1 ? TN_NH_ONE : TN_NH_ECMP;
}

/**
 * Per frame, only for tunnels whose byte 9 is not TN_NH_ONE: the ECMP member
 * for `hash` written over the header's destination MAC at `h`; false when
 * there is no next hop (nothing may be sent). The remote index is the u16 at
 * byte 12 of the tunnel entry `e`.
 */
export function nextHopPick(e: usize, h: usize, hash: u32): bool {
  if (load<u8>(e, 9) == TN_NH_NONE) return false;
  const nh = nhPtr(<u32>load<u16>(e, 12));
  const n = <u32>load<u8>(nh, 1);
  // hash-threshold (RFC 2992 §2): the high 16 bits of the hash scaled to n, no division
  const i = ((hash >>> 16) * n) >>> 16;
  const m = nh + 16 + (<usize>i << 3);
  store<u32>(h, load<u32>(m));
  store<u16>(h, load<u16>(m, 4), 4);
  return true;
}
