// The VN profile's ACL (PROTOCOL.md §5 `acl`, `aclDefault`): an ordered,
// first-match, stateless rule list per VN, applied to the IPv4/IPv6 frames of
// the VN's local VNICs, from them (access side) and to them (locally switched
// or decapsulated). ARP and ND follow port security, not the ACL.
//
// The host compiles the rule text once, when the profile is programmed
// (host/dataplane/acl.ts), and each VN's rules are laid out as two lists, the
// from-VNIC rules and the to-VNIC ones (a "both" rule is in each), so a frame
// never tests a direction; every test of a rule is one lane of two SIMD
// compares, made before one branch (bench: encap-vxlan-ipv4-acl16).
// Rule record (ACL_RULE bytes, private to this file; setAclRule), u32 lanes:
//
//   0   MASK  [mask over (family | protocol << 8), ~0, ~0, ~0]
//   16  LO    [value, srcPort lo, dstPort lo, ICMP type]
//   32  SPAN  [0, srcPort hi - lo, dstPort hi - lo, 0]; 0xffffffff = any
//       a frame's F = [family | protocol << 8, srcPort, dstPort, ICMP type]
//       matches when every lane of (F & MASK) - LO is <= SPAN (unsigned)
//   48  IPv4  [source mask, destination mask, 0, 0]
//   64  IPv4  [source prefix, destination prefix, 0, 0] (pre-masked, raw)
//   80  IPv6 source prefix, 96 its mask, 112 destination prefix, 128 its mask
//       (a rule without a prefix: mask and prefix 0, any address)
//   144 u32 the rule's index in the VN's list (its deny counter), 148 u8 action (1 deny)
//
// A port or ICMP type the frame does not carry (a later fragment, a short
// header) is 0x10000: inside no rule's range, inside "any".
//
// Per VN (ACL_VN bytes): u32 the block's first slot, u16 from-rules, u16
// to-rules (at first + cap), u32 cap, u8 default (1 = deny), u8 directions
// with rules or a deny default, u16 0; u64 frames the default denied. Per
// slot of the block: u64 frames rule (slot - first) denied (`nvedge show acl`).
import { alloc, scratch, vnPtr, MAX_VNS, VN_FEAT, FEAT_ACL_FROM, FEAT_ACL_TO } from "../state";
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../proto/ethernet";
import { IPPROTO_ICMPV6 } from "../proto/ipv4";
import * as D from "../drops";

export const MAX_ACL_RULES: u32 = 65536;
const ACL_RULE: u32 = 160;
const ACL_VN: u32 = 24;
export const DIR_FROM: u32 = 1;
export const DIR_TO: u32 = 2;
const HAS_PROTO: u32 = 1;
const HAS_SPORT: u32 = 2;
const HAS_DPORT: u32 = 4;
const HAS_ICMP: u32 = 8;
const ANY: u32 = 0xffffffff;
const UNKNOWN: u32 = 0x10000;

/** aclEval's results besides a rule index (>= 0). */
export const ACL_PASS: i32 = -1;
const ACL_DEFAULT: i32 = 0x10000; // denied by the VN's default
const ACL_SHORT: i32 = -2;
const ACL_BAD_HEADER: i32 = -3;
/** aclCheck's result for a frame that goes on. */
export const ACL_OK: u32 = 0xffffffff;

let rules: usize = 0;
let hits: usize = 0;
let perVn: usize = 0;

export function aclInit(): void {
  rules = alloc(<usize>MAX_ACL_RULES * ACL_RULE);
  hits = alloc(<usize>MAX_ACL_RULES * 8);
  perVn = alloc(<usize>MAX_VNS * ACL_VN);
}

/**
 * Slot i of the pool: the rule of index `index` in its VN's list.
 * scratch[0..16): the source prefix's address, [16..32): the destination's
 * (IPv4 in the first 4 bytes); plen 0xff = no prefix. Its slot's deny
 * counter starts at 0.
 */
export function setAclRule(i: u32, index: u32, family: u32, action: u32, has: u32, proto: u32, icmpType: u32,
                           sLo: u32, sHi: u32, dLo: u32, dHi: u32, srcPlen: u32, dstPlen: u32): i32 {
  if (i >= MAX_ACL_RULES || sLo > sHi || dLo > dHi) return 2;
  const r = rules + <usize>i * ACL_RULE;
  memory.fill(r, 0, ACL_RULE);
  const pm = (family != 0 ? 0xff : 0) | ((has & HAS_PROTO) != 0 ? 0xff00 : 0);
  store<u32>(r, pm);
  store<u32>(r, ANY, 4);
  store<u32>(r, ANY, 8);
  store<u32>(r, ANY, 12);
  store<u32>(r, (family | (proto << 8)) & pm, 16);
  store<u32>(r, (has & HAS_SPORT) != 0 ? sLo : 0, 20);
  store<u32>(r, (has & HAS_DPORT) != 0 ? dLo : 0, 24);
  store<u32>(r, (has & HAS_ICMP) != 0 ? icmpType : 0, 28);
  store<u32>(r, 0, 32);
  store<u32>(r, (has & HAS_SPORT) != 0 ? sHi - sLo : ANY, 36);
  store<u32>(r, (has & HAS_DPORT) != 0 ? dHi - dLo : ANY, 40);
  store<u32>(r, (has & HAS_ICMP) != 0 ? 0 : ANY, 44);
  if (srcPlen != 0xff) prefixInto(r + 80, scratch, srcPlen);
  if (dstPlen != 0xff) prefixInto(r + 112, scratch + 16, dstPlen);
  // the IPv4 lanes: the first 4 bytes of each (an IPv4 rule's address is there)
  store<u32>(r, load<u32>(r, 96), 48);
  store<u32>(r, load<u32>(r, 128), 52);
  store<u32>(r, load<u32>(r, 80), 64);
  store<u32>(r, load<u32>(r, 112), 68);
  store<u32>(r, index, 144);
  store<u8>(r, <u8>action, 148);
  store<u64>(hits + (<usize>i << 3), 0);
  return 0;
}

/** The mask of a prefix length and the address under it, both as the frame's bytes lie. */
function prefixInto(r: usize, a: usize, plen: u32): void {
  for (let b: u32 = 0; b < 16; b++) {
    const bits = plen >= (b + 1) * 8 ? 8 : plen > b * 8 ? plen - b * 8 : 0;
    const m: u32 = (0xff00 >> bits) & 0xff;
    store<u8>(r + 16 + b, <u8>m);
    store<u8>(r + b, <u8>(<u32>load<u8>(a + b) & m));
  }
}

/**
 * VN vn's lists: nFrom rules from slot `first`, nTo from `first + cap`, the
 * default (1 deny). Its counters start at 0 (the host wrote the slots first).
 */
export function setAcl(vn: u32, first: u32, cap: u32, nFrom: u32, nTo: u32, deny: u32): i32 {
  if (vn >= MAX_VNS || nFrom > cap || nTo > cap || first + 2 * cap > MAX_ACL_RULES || cap > 0xffff) return 2;
  const v = perVn + <usize>vn * ACL_VN;
  store<u32>(v, 0, 4); // the counts first: never a count past the list it describes
  store<u32>(v, first);
  store<u32>(v, cap, 8);
  const d = (nFrom != 0 || deny != 0 ? DIR_FROM : 0) | (nTo != 0 || deny != 0 ? DIR_TO : 0);
  store<u8>(v, <u8>deny, 12);
  store<u8>(v, <u8>d, 13);
  store<u64>(v, 0, 16);
  for (let k: u32 = 0; k < cap; k++) store<u64>(hits + (<usize>(first + k) << 3), 0);
  store<u16>(v, <u16>nFrom, 4);
  store<u16>(v, <u16>nTo, 6);
  // the VN entry's feature bits (state.ts VN_FEAT) are what the fast paths test
  const e = vnPtr(vn);
  store<u8>(e, <u8>((<u32>load<u8>(e, VN_FEAT) & ~(FEAT_ACL_FROM | FEAT_ACL_TO)) | d), VN_FEAT);
  return 0;
}

export function aclRuleHitsPtr(): usize { return hits; }
export function aclVnPtr(): usize { return perVn; }

/**
 * The rule that decides the frame (its index in the VN's list; ACL_DEFAULT
 * for the default) when it is denied, ACL_PASS when it goes on
 * (allowed, not IP, or ND), ACL_SHORT / ACL_BAD_HEADER for an IP header the
 * rules cannot be read from. Reads only inside l3[0..l3len) and writes
 * nothing (the fast paths call it and decline on a deny, so the full path
 * counts it once).
 */
export function aclEval(vn: u32, dir: u32, etype: u32, l3: usize, l3len: u32): i32 {
  const v = perVn + <usize>vn * ACL_VN;
  if ((<u32>load<u8>(v, 13) & dir) == 0) return ACL_PASS; // nothing applies this way
  let proto: u32;
  let l4: usize = 0; // 0: no transport header to read (a later fragment, or too short)
  let l4len: u32 = 0;
  const is4 = etype == ETHERTYPE_IPV4;
  if (is4) {
    if (l3len < 20) return ACL_SHORT;
    const vi = <u32>load<u8>(l3);
    const ihl = (vi & 0xf) << 2;
    if ((vi >> 4) != 4 || ihl < 20) return ACL_BAD_HEADER;
    if (ihl > l3len) return ACL_SHORT;
    proto = <u32>load<u8>(l3, 9);
    // a later fragment carries no transport header (RFC 791): its ports and
    // ICMP type are unknown, so only rules without them can match it
    if ((<u32>load<u16>(l3, 6) & 0xff1f) == 0) { l4 = l3 + ihl; l4len = l3len - ihl; }
  } else if (etype == ETHERTYPE_IPV6) {
    if (l3len < 40) return ACL_SHORT;
    if ((<u32>load<u8>(l3) >> 4) != 6) return ACL_BAD_HEADER;
    proto = <u32>load<u8>(l3, 6);
    l4 = l3 + 40;
    l4len = l3len - 40;
    // PROTOCOL.md §5: neighbour discovery (RFC 4861 types 133-137) follows
    // port security, not the ACL
    if (proto == IPPROTO_ICMPV6 && l4len >= 1) {
      const t = <u32>load<u8>(l4);
      if (t >= 133 && t <= 137) return ACL_PASS;
    }
  } else return ACL_PASS; // ARP and the rest: not the ACL's
  let sport = UNKNOWN, dport = UNKNOWN, itype = UNKNOWN;
  if (l4 != 0) {
    if (l4len >= 4) { sport = <u32>bswap<u16>(load<u16>(l4)); dport = <u32>bswap<u16>(load<u16>(l4, 2)); }
    if (l4len >= 1) itype = <u32>load<u8>(l4);
  }
  const first = load<u32>(v) + (dir == DIR_TO ? load<u32>(v, 8) : 0);
  const n = <u32>load<u16>(v + (dir == DIR_TO ? 6 : 4));
  const r0 = rules + <usize>first * ACL_RULE;
  const f = i32x4(<i32>((is4 ? 4 : 6) | (proto << 8)), <i32>sport, <i32>dport, <i32>itype);
  const k = is4 ? scan4(r0, n, f, i32x4(load<i32>(l3, 12), load<i32>(l3, 16), 0, 0)) : scan6(r0, n, f, l3 + 8);
  if (k >= 0) {
    const r = r0 + <usize>k * ACL_RULE;
    return load<u8>(r, 148) != 0 ? <i32>load<u32>(r, 144) : ACL_PASS;
  }
  return load<u8>(v, 12) != 0 ? ACL_DEFAULT : ACL_PASS;
}

/** The first of n rules from r an IPv4 frame (f: its lanes; a: [source, destination, 0, 0]) matches, or -1. */
@inline function scan4(r: usize, n: u32, f: v128, a: v128): i32 {
  for (let k: u32 = 0; k < n; k++, r += ACL_RULE) {
    const d = i32x4.sub(v128.and(f, v128.load(r)), v128.load(r, 16));
    const ok = v128.and(i32x4.le_u(d, v128.load(r, 32)), i32x4.eq(v128.and(a, v128.load(r, 48)), v128.load(r, 64)));
    if (i32x4.all_true(ok)) return <i32>k;
  }
  return -1;
}

/** scan4 for an IPv6 frame (its addresses from a: source, then destination). */
@inline function scan6(r: usize, n: u32, f: v128, a: usize): i32 {
  const s = v128.load(a), t = v128.load(a, 16);
  for (let k: u32 = 0; k < n; k++, r += ACL_RULE) {
    const d = i32x4.sub(v128.and(f, v128.load(r)), v128.load(r, 16));
    const pre = v128.and(i32x4.eq(v128.and(s, v128.load(r, 96)), v128.load(r, 80)), i32x4.eq(v128.and(t, v128.load(r, 128)), v128.load(r, 112)));
    if (i32x4.all_true(v128.and(i32x4.le_u(d, v128.load(r, 32)), pre))) return <i32>k;
  }
  return -1;
}

/**
 * The full paths' check: ACL_OK, or the drop reason (acl-deny, counted on
 * the rule or the VN's default; truncated / bad-ip-header for an IP header
 * too broken to match, as the underlay side names them).
 */
export function aclCheck(vn: u32, dir: u32, etype: u32, l3: usize, l3len: u32): u32 {
  const k = aclEval(vn, dir, etype, l3, l3len);
  if (k == ACL_PASS) return ACL_OK;
  if (k == ACL_SHORT) return D.D_TRUNCATED;
  if (k == ACL_BAD_HEADER) return D.D_BAD_IP_HEADER;
  const v = perVn + <usize>vn * ACL_VN;
  if (k == ACL_DEFAULT) store<u64>(v, load<u64>(v, 16) + 1, 16);
  else {
    const c = hits + (<usize>(load<u32>(v) + <u32>k) << 3);
    store<u64>(c, load<u64>(c) + 1);
  }
  return D.D_ACL_DENY;
}

/** Any rule or a deny default for VN vn in direction dir (DIR_FROM = FEAT_ACL_FROM, DIR_TO = FEAT_ACL_TO). */
@inline export function aclActive(vn: u32, dir: u32): bool {
  return (<u32>load<u8>(vnPtr(vn), VN_FEAT) & dir) != 0;
}
