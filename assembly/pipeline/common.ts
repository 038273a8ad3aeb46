// Per-frame bookkeeping shared by both sides: drops, flow hash, trace records.
import { dropCtr, globalCtr, portCtr, vnCtr, traceBase, ctrInc, PORT_CTR, VN_CTR, PC_DROPS, VC_DROPS,
         GC_DROPPED, TRACE_REC } from "../state";
import { mix64, ld16, raw16 } from "../util";
import { curIn } from "./emit";
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../proto/ethernet";
import { IPPROTO_TCP, IPPROTO_UDP } from "../proto/ipv4";

export let curPort: u32 = 0;
export let curVn: i32 = -1;
export let traceOn: bool = false;
/**
 * Every frame takes the full path (access.ts, underlay.ts), not fast.ts:
 * while tracing (the trace records are written there) or when the fast paths
 * are turned off (the tests compare both ways over the same frames).
 */
export let slowOnly: bool = false;
let fastOff: bool = false;
export function setTrace(on: bool): void { traceOn = on; slowOnly = on || fastOff; }
export function setFastPaths(on: bool): void { fastOff = !on; slowOnly = traceOn || fastOff; }
@inline export function setCur(port: u32, vn: i32): void { curPort = port; curVn = vn; }

// Trace record (u32 fields): side, vn+1, vni, lookup, action, drop+1, dst value, spare
export const TR_SIDE: u32 = 0;
export const TR_VN: u32 = 4;
export const TR_VNI: u32 = 8;
export const TR_LOOKUP: u32 = 12;
export const TR_ACTION: u32 = 16;
export const TR_DROP: u32 = 20;
export const TR_DST: u32 = 24;
export const TR_SRC: u32 = 28;
// lookups
export const LK_LOCAL: u32 = 1;
export const LK_REMOTE: u32 = 2;
export const LK_BROADCAST: u32 = 3;
export const LK_UNKNOWN: u32 = 4;
export const LK_SUPPRESSED: u32 = 5;
// actions
export const AC_HAIRPIN: u32 = 1;
export const AC_ENCAP: u32 = 2;
export const AC_FLOOD: u32 = 3;
export const AC_DECAP: u32 = 4;
export const AC_REPLY: u32 = 5;
/** the L3 service (pipeline/route.ts): routed; answered with ICMP time exceeded from the gateway */
export const AC_ROUTE: u32 = 6;
export const AC_ICMP: u32 = 7;

@inline export function trace(field: u32, v: u32): void {
  if (traceOn) store<u32>(traceBase + <usize>curIn * TRACE_REC + field, v);
}

/** A drop that belongs to no port (a frame from a port we do not serve). */
export function dropNoPort(reason: u32): void {
  ctrInc(dropCtr, reason, 1);
  ctrInc(globalCtr, GC_DROPPED, 1);
  trace(TR_DROP, reason + 1);
}

/** Counts a drop under its reason, the ingress port and (once known) the VN. */
export function drop(reason: u32): void {
  ctrInc(dropCtr, reason, 1);
  ctrInc(globalCtr, GC_DROPPED, 1);
  ctrInc(portCtr + (<usize>curPort * PORT_CTR << 3), PC_DROPS, 1);
  if (curVn >= 0) ctrInc(vnCtr + (<usize>curVn * VN_CTR << 3), VC_DROPS, 1);
  trace(TR_DROP, reason + 1);
}

/**
 * The entropy of the inner flow (RFC 7348 §5 "a hash of the inner packet's
 * headers"): both MACs, and for IPv4/IPv6 both addresses and, for TCP/UDP
 * first fragments, both ports. `l3` is the inner L3 header, `l3len` the bytes
 * available from it. Stable per flow; different flows spread over the range.
 */
@inline export function flowHash(macs: usize, etype: u32, l3: usize, l3len: u32): u32 {
  return flowHashRaw(macs, <u32>bswap<u16>(<u16>etype), l3, l3len);
}

/**
 * flowHash with the EtherType as it lies in the frame (raw, little-endian
 * read), compared with byte-swapped constants: the fast paths read it so
 * and save the swap (issue 18, sixth round; finding 12).
 */
@inline export function flowHashRaw(macs: usize, etypeRaw: u32, l3: usize, l3len: u32): u32 {
  // one `if` per check: `a && b` becomes `a & b` in Binaryen and setcc chains
  // in V8 (bench/README.md finding 16)
  let h: u64 = load<u64>(macs) ^ (<u64>load<u32>(macs, 8) << 21);
  if (etypeRaw == raw16(ETHERTYPE_IPV4)) {
    if (l3len >= 20) {
      h = mix64(h ^ load<u64>(l3, 12));
      const ihl = (<u32>load<u8>(l3) & 0xf) << 2;
      const proto = <u32>load<u8>(l3, 9);
      if (isTcpOrUdp(proto)) {
        if ((<u32>load<u16>(l3 + 6) & raw16(0x3fff)) == 0) { // a first and only fragment
          if (ihl >= 20) {
            if (l3len >= ihl + 4) h ^= <u64>load<u32>(l3 + ihl) * 0x9e3779b97f4a7c15 ^ proto;
          }
        }
      }
    }
  } else if (etypeRaw == raw16(ETHERTYPE_IPV6)) {
    if (l3len >= 40) {
      h = mix64(h ^ load<u64>(l3, 8) ^ (load<u64>(l3, 16) << 1) ^ (load<u64>(l3, 24) << 2) ^ (load<u64>(l3, 32) << 3));
      const nh = <u32>load<u8>(l3, 6);
      if (isTcpOrUdp(nh)) {
        if (l3len >= 44) h ^= <u64>load<u32>(l3, 40) * 0x9e3779b97f4a7c15 ^ nh;
      }
    }
  }
  h = mix64(h);
  return <u32>(h ^ (h >> 32));
}

/** TCP (6) or UDP (17), as one test: bit `proto` of a constant. */
@inline function isTcpOrUdp(proto: u32): bool {
  return proto <= 17 ? ((<u32>((1 << IPPROTO_TCP) | (1 << IPPROTO_UDP)) >> proto) & 1) != 0 : false;
}
