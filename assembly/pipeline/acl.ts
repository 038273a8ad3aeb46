// The VN profile's ACL (PROTOCOL.md §5 `acl`, `aclDefault`): an ordered,
// first-match, stateless rule list per VN, applied to the IPv4/IPv6 frames of
// the VN's local VNICs, from them (access side) and to them (locally switched
// or decapsulated). ARP and ND follow port security, not the ACL.
//
// The host compiles the rule text once, when the profile is programmed
// (host/dataplane/acl.ts), into the fixed records below (setAclRule); a frame
// only compares numbers. Rule record (ACL_RULE bytes, private to this file):
//
//   0  u8  family      0 any, 4, 6 (fixed by a prefix or by icmp / icmp6)
//   1  u8  dirs        DIR_FROM | DIR_TO
//   2  u8  action      0 allow, 1 deny
//   3  u8  has         HAS_* bits: which fields below take part
//   4  u16 proto       IP protocol / IPv6 next header
//   6  u16 icmpType
//   8  u16 srcPort lo, 10 hi; 12 u16 dstPort lo, 14 hi
//   16 source prefix, pre-masked, raw (as the frame holds it); 32 its mask
//   48 destination prefix; 64 its mask
//
// Per VN (ACL_VN bytes): u32 first rule, u16 count, u8 default (1 = deny),
// u8 the directions any rule or a deny default applies to; u64 frames the
// default denied. Per rule: u64 frames it denied (`nvedge show acl`).
import { alloc, scratch, vnPtr, MAX_VNS, VN_FEAT, FEAT_ACL_FROM, FEAT_ACL_TO } from "../state";
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../proto/ethernet";
import { IPPROTO_ICMPV6 } from "../proto/ipv4";
import * as D from "../drops";

export const MAX_ACL_RULES: u32 = 65536;
const ACL_RULE: u32 = 80;
const ACL_VN: u32 = 16;
export const DIR_FROM: u32 = 1;
export const DIR_TO: u32 = 2;
const HAS_PROTO: u32 = 1;
const HAS_SPORT: u32 = 2;
const HAS_DPORT: u32 = 4;
const HAS_ICMP: u32 = 8;
const HAS_SRC: u32 = 16;
const HAS_DST: u32 = 32;

/** aclEval's results besides a rule index (>= 0; the rule count = the default). */
export const ACL_PASS: i32 = -1;
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
 * Rule i of the pool. scratch[0..16): the source prefix's address, [16..32):
 * the destination's (IPv4 in the first 4 bytes); plen 0xff = no prefix. Its
 * deny counter starts at 0.
 */
export function setAclRule(i: u32, family: u32, dirs: u32, action: u32, has: u32, proto: u32, icmpType: u32,
                           sLo: u32, sHi: u32, dLo: u32, dHi: u32, srcPlen: u32, dstPlen: u32): i32 {
  if (i >= MAX_ACL_RULES) return 2;
  const r = rules + <usize>i * ACL_RULE;
  memory.fill(r, 0, ACL_RULE);
  store<u8>(r, <u8>family);
  store<u8>(r, <u8>dirs, 1);
  store<u8>(r, <u8>action, 2);
  store<u16>(r, <u16>proto, 4);
  store<u16>(r, <u16>icmpType, 6);
  store<u16>(r, <u16>sLo, 8);
  store<u16>(r, <u16>sHi, 10);
  store<u16>(r, <u16>dLo, 12);
  store<u16>(r, <u16>dHi, 14);
  let h = has & (HAS_PROTO | HAS_SPORT | HAS_DPORT | HAS_ICMP);
  if (srcPlen != 0xff) { h |= HAS_SRC; prefixInto(r + 16, scratch, srcPlen); }
  if (dstPlen != 0xff) { h |= HAS_DST; prefixInto(r + 48, scratch + 16, dstPlen); }
  store<u8>(r, <u8>h, 3);
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
 * VN vn's list: rules first .. first+n of the pool, the default (1 deny), and
 * the directions it has rules for. Its default counter starts at 0.
 */
export function setAcl(vn: u32, first: u32, n: u32, deny: u32, dirs: u32): i32 {
  if (vn >= MAX_VNS || first + n > MAX_ACL_RULES || n > 0xffff) return 2;
  const v = perVn + <usize>vn * ACL_VN;
  store<u16>(v, 0, 4); // count first: never a count past the list it describes
  store<u32>(v, first);
  store<u8>(v, <u8>deny, 6);
  const d = (dirs | (deny != 0 ? DIR_FROM | DIR_TO : 0)) & (DIR_FROM | DIR_TO);
  store<u8>(v, <u8>d, 7);
  store<u64>(v, 0, 8);
  store<u16>(v, <u16>n, 4);
  // the VN entry's feature bits (state.ts VN_FEAT) are what the fast paths test
  const e = vnPtr(vn);
  store<u8>(e, <u8>((<u32>load<u8>(e, VN_FEAT) & ~(FEAT_ACL_FROM | FEAT_ACL_TO)) | d), VN_FEAT);
  return 0;
}

export function aclRuleHitsPtr(): usize { return hits; }
export function aclVnPtr(): usize { return perVn; }

/**
 * The rule that decides the frame (an index; the rule count for the default)
 * when it is denied, ACL_PASS when it goes on (allowed, not IP, or ND),
 * ACL_SHORT / ACL_BAD_HEADER for an IP header the rules cannot be read from.
 * Reads only inside l3[0..l3len) and writes nothing (the fast paths call it
 * and decline on a deny, so the full path counts it once).
 */
export function aclEval(vn: u32, dir: u32, etype: u32, l3: usize, l3len: u32): i32 {
  const v = perVn + <usize>vn * ACL_VN;
  if ((<u32>load<u8>(v, 7) & dir) == 0) return ACL_PASS; // nothing applies this way
  let fam: u32;
  let proto: u32;
  let src: usize;
  let dst: usize;
  let l4: usize = 0; // 0: no transport header to read (a later fragment, or too short)
  let l4len: u32 = 0;
  if (etype == ETHERTYPE_IPV4) {
    if (l3len < 20) return ACL_SHORT;
    const vi = <u32>load<u8>(l3);
    const ihl = (vi & 0xf) << 2;
    if ((vi >> 4) != 4 || ihl < 20) return ACL_BAD_HEADER;
    if (ihl > l3len) return ACL_SHORT;
    fam = 4;
    proto = <u32>load<u8>(l3, 9);
    src = l3 + 12;
    dst = l3 + 16;
    // a later fragment carries no transport header (RFC 791): its ports and
    // ICMP type are unknown, so only rules without them can match it
    if ((<u32>bswap<u16>(load<u16>(l3, 6)) & 0x1fff) == 0) { l4 = l3 + ihl; l4len = l3len - ihl; }
  } else if (etype == ETHERTYPE_IPV6) {
    if (l3len < 40) return ACL_SHORT;
    if ((<u32>load<u8>(l3) >> 4) != 6) return ACL_BAD_HEADER;
    fam = 6;
    proto = <u32>load<u8>(l3, 6);
    src = l3 + 8;
    dst = l3 + 24;
    l4 = l3 + 40;
    l4len = l3len - 40;
    // PROTOCOL.md §5: neighbour discovery (RFC 4861 types 133-137) follows
    // port security, not the ACL
    if (proto == IPPROTO_ICMPV6 && l4len >= 1) {
      const t = <u32>load<u8>(l4);
      if (t >= 133 && t <= 137) return ACL_PASS;
    }
  } else return ACL_PASS; // ARP and the rest: not the ACL's
  let sport: u32 = 0x10000, dport: u32 = 0x10000, itype: u32 = 0x10000; // out of any range: unknown
  if (l4 != 0) {
    if (l4len >= 4) { sport = <u32>bswap<u16>(load<u16>(l4)); dport = <u32>bswap<u16>(load<u16>(l4, 2)); }
    if (l4len >= 1) itype = <u32>load<u8>(l4);
  }
  const first = load<u32>(v);
  const n = <u32>load<u16>(v, 4);
  for (let k: u32 = 0; k < n; k++) {
    const r = rules + <usize>(first + k) * ACL_RULE;
    const w = load<u32>(r); // family | dirs << 8 | action << 16 | has << 24
    if (((w >> 8) & dir) == 0) continue;
    const rf = w & 0xff;
    if (rf != 0 && rf != fam) continue;
    const has = w >> 24;
    if (has != 0) {
      if ((has & HAS_PROTO) != 0 && <u32>load<u16>(r, 4) != proto) continue;
      if ((has & HAS_SPORT) != 0 && (sport < <u32>load<u16>(r, 8) || sport > <u32>load<u16>(r, 10))) continue;
      if ((has & HAS_DPORT) != 0 && (dport < <u32>load<u16>(r, 12) || dport > <u32>load<u16>(r, 14))) continue;
      if ((has & HAS_ICMP) != 0 && itype != <u32>load<u16>(r, 6)) continue;
      if ((has & HAS_SRC) != 0 && !inPrefix(src, r + 16, fam)) continue;
      if ((has & HAS_DST) != 0 && !inPrefix(dst, r + 48, fam)) continue;
    }
    return ((w >> 16) & 0xff) != 0 ? <i32>k : ACL_PASS;
  }
  return load<u8>(v, 6) != 0 ? <i32>n : ACL_PASS;
}

/** The address at a (4 or 16 bytes) is under the rule's prefix at r (address, then mask at r + 16). */
@inline function inPrefix(a: usize, r: usize, fam: u32): bool {
  if (fam == 4) return (load<u32>(a) & load<u32>(r, 16)) == load<u32>(r);
  return (load<u64>(a) & load<u64>(r, 16)) == load<u64>(r) && (load<u64>(a, 8) & load<u64>(r, 24)) == load<u64>(r, 8);
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
  if (<u32>k == <u32>load<u16>(v, 4)) store<u64>(v, load<u64>(v, 8) + 1, 8);
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
