// Encapsulation: copy the tunnel's prebuilt outer header (built when the
// binding was programmed, control.ts buildTunnel) and patch only the lengths,
// the checksums, DSCP and the entropy (UDP source port, IPv6 flow label, NVGRE
// FlowID) per frame (STYLE.md 3; VPP's vxlan encap node).
import { tunPtr, TUN_HDR } from "../state";
import { copy64, copy96, st8, st16, csumAdd, csumFold, csumFold32 } from "../util";
import { nextHdr, commit } from "./emit";
import { SPORT_BASE, SPORT_MASK } from "../proto/udp";
import { nextHopPick } from "./nexthop";

// Tunnel entry (state.ts TUN_SIZE = 128): byte 0 header length, byte 1 kind,
// u16 at 2 the IPv4 header's partial sum (total length and checksum 0),
// u32 at 4 the IPv6 pseudo-header partial sum (addresses + next header),
// byte 8 flags (1 = DSCP fixed by the profile), byte 9 the next-hop state
// (pipeline/nexthop.ts TN_NH_*), u16 at 10 the port, u16 at 12 the remote, header from 16.
export const TK_VXLAN4: u32 = 1;
export const TK_VXLAN6: u32 = 2;
export const TK_GENEVE4: u32 = 3;
export const TK_GENEVE6: u32 = 4;
export const TK_NVGRE4: u32 = 5;
export const TK_NVGRE6: u32 = 6;

/**
 * Encapsulates the 802.1Q-tagged access frame at `p` (length `len`) through
 * tunnel `t`: outer header + the inner MACs in the header slot, the inner frame
 * from its EtherType (p + 16) as the data piece, so the tag is stripped
 * without moving a byte (RFC 7348 §6.1: the encapsulator strips the tag).
 */
@inline export function emitEncap(t: u32, p: usize, len: u32, pcp: u32, hash: u32, vn: u32): void {
  const e = tunPtr(t);
  const kind = <u32>load<u8>(e, 1);
  // TK_VXLAN4, TK_GENEVE4 and TK_NVGRE4 are the odd kinds: one test, where
  // the three compares became a setcc chain (bench/README.md finding 16)
  if ((kind & 1) != 0) emitEncap4(e, kind, p, len, pcp, hash, vn);
  else emitEncap6(e, kind, p, len, pcp, hash, vn);
}

/**
 * emitEncap through tunnel entry `e` of an IPv4 kind (TK_*4): the only kinds
 * an NVE with an IPv4 underlay builds (control.ts buildTunnel; the host
 * refuses to change the underlay's family while remotes exist).
 */
@inline export function emitEncap4(e: usize, kind: u32, p: usize, len: u32, pcp: u32, hash: u32, vn: u32): void {
  const h = nextHdr();
  copy64(h, e + TUN_HDR); // header (<= 50 bytes) + inner MACs fit in 64
  // ECMP or no next hop (pipeline/nexthop.ts): one byte already in cache otherwise
  if (load<u8>(e, 9) != 0) { if (!nextHopPick(e, h, hash)) return; }
  const hl = <u32>load<u8>(e);
  // inner dst+src MAC right after the outer header
  store<u64>(h + hl, load<u64>(p));
  store<u32>(h + hl, load<u32>(p, 8), 8);
  const innerLen = len - 4;
  const fixed = (load<u8>(e, 8) & 1) != 0;
  // RFC 2474 / seed §4.5 QoS: the inner PCP sets the outer DSCP (class
  // selector pcp << 3) unless the VN profile fixes one.
  const tos: u32 = fixed ? 0 : (pcp << 5);
  let tot: u32;
  if (kind == TK_NVGRE4) {
    tot = 28 + innerLen;
    st8(h + 41, hash >> 8); // FlowID (RFC 7637 §3.2)
  } else {
    tot = 36 + innerLen;
    st16(h + 34, SPORT_BASE | (hash & SPORT_MASK));
    st16(h + 38, 16 + innerLen);
  }
  if (!fixed) st8(h + 15, tos);
  st16(h + 16, tot);
  // below 2^17: the partial sum (u16), tot (at most 36 + 2048) and tos
  const sum = csumFold32(<u32>load<u16>(e, 2) + tot + tos);
  st16(h + 24, ~sum & 0xffff);
  commit(<u32>load<u16>(e, 10), hl + 12, p + 16, len - 16, vn);
}

/** emitEncap through tunnel entry `e` of an IPv6 kind (TK_*6). */
@inline function emitEncap6(e: usize, kind: u32, p: usize, len: u32, pcp: u32, hash: u32, vn: u32): void {
  const h = nextHdr();
  copy96(h, e + TUN_HDR);
  if (load<u8>(e, 9) != 0) { if (!nextHopPick(e, h, hash)) return; }
  const hl = <u32>load<u8>(e);
  store<u64>(h + hl, load<u64>(p));
  store<u32>(h + hl, load<u32>(p, 8), 8);
  const data = p + 16;
  const dataLen = len - 16;
  const innerLen = len - 4;
  const fixed = (load<u8>(e, 8) & 1) != 0;
  const tos: u32 = fixed ? 0 : (pcp << 5);
  // IPv6: traffic class from the DSCP, flow label from the flow hash (RFC 6438)
  const flow = hash & 0xfffff;
  if (!fixed) {
    st8(h + 14, 0x60 | (tos >> 4));
    st8(h + 15, ((tos & 0xf) << 4) | (flow >> 16));
  } else {
    st8(h + 15, (<u32>load<u8>(h + 15) & 0xf0) | (flow >> 16));
  }
  st16(h + 16, flow & 0xffff);
  if (kind == TK_NVGRE6) {
    st16(h + 18, 8 + innerLen);
    st8(h + 61, hash >> 8);
  } else {
    const ulen = 16 + innerLen;
    st16(h + 18, ulen);
    st16(h + 54, SPORT_BASE | (hash & SPORT_MASK));
    st16(h + 58, ulen);
    // RFC 8200 §8.1: the UDP checksum is mandatory over IPv6; it covers the
    // pseudo-header, the UDP and tunnel headers, the inner MACs and the data.
    let s: u64 = <u64>load<u32>(e, 4) + <u64>ulen;
    s = csumAdd(s, h + 54, 28);
    s = csumAdd(s, data, dataLen);
    let c = ~csumFold(s) & 0xffff;
    if (c == 0) c = 0xffff;
    st16(h + 60, c);
  }
  commit(<u32>load<u16>(e, 10), hl + 12, data, dataLen, vn);
}
