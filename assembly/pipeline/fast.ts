// The access side's common case, written small: a tagged frame (IPv4 when
// the VN has port security or ARP suppression) whose source is not an
// inactive VNIC and whose destination is a remote binding, an active VNIC on
// another port, or (broadcast, multicast, unknown) the VN's flood list over
// an IPv4 underlay; and the underlay's common case (underlayFast; ARP
// suppression's is suppress.ts arpAnswerAt). Same checks, same outputs and counters as the
// full path (access.ts, underlay.ts); every other frame (drops, IPv6 and ND,
// floods over IPv6, Geneve options) goes there untouched, because these
// return false before they write anything; so does every frame while
// tracing or with the fast paths off (slowOnly).
// Why a second copy of the checks: TurboFan allocates registers over the
// whole function, and the one function holding every access path spills the
// common case's values to the stack (bench/README.md finding 13).
// Each check is its own `if`: Binaryen turns `a || b` of cheap conditions
// into `a | b`, which V8 compiles to setcc/movzx/or per condition where a
// compare and a branch would do (finding 16).
import { raw16, ld16, ld32, ldMac } from "../util";
import { vlanMap, vnPtr, tagOf, vnCtr, ctrInc, VN_CTR, VC_RX, VC_ENCAP, VC_DECAP, VN_FLAGS, VN_MTU,
         VNF_PORTSEC, VNF_ARPSUP, vtepAllowed, ENC_VXLAN, ENC_GENEVE, ENC_NVGRE, VC_FLOOD, VN_FLOOD_N,
         VN_FLOOD_PTR, VN_NLOCAL, VN_LOCAL, floodPool, tunPtr } from "../state";
import { macLookupAt, ip4Lookup, ip4LookupHome, ip4LookupAt, macRaw, macWire, vniFind, vniKeyAt, NO_HOME, remoteFind, MK_KIND, MK_LOCAL, MK_REMOTE, ML_ACTIVE, ML_PORT_SHIFT, ML_PORT_MASK,
         MR_TUN_MASK, FR_VN, FR_IP } from "../tables/index";
import { ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD, ETHERTYPE_IPV4, ETHERTYPE_ARP, ETHERTYPE_TEB, VID_MASK, PCP_SHIFT,
         DOT1Q_HLEN, dot1qTagged, dot1qTci, dot1qTypeRaw, isTagTypeRaw } from "../proto/ethernet";
import { IP4_PROTO, IP4_TOTLEN, IP4_DST, IP4_SRC, IPPROTO_UDP, IPPROTO_GRE, ip4Plain, ip4Whole } from "../proto/ipv4";
import { VXLAN_FLAG_I } from "../proto/vxlan";
import { GENEVE_FLAG_O, GENEVE_FLAG_C } from "../proto/geneve";
import { NVGRE_FLAGS_K, NVGRE_VSID_RESERVED_MAX, NVGRE_VSID_RESERVED_ALL } from "../proto/nvgre";
import { ulMac, ulIs6, ulIp0, vxlanPortRaw, genevePortRaw, ip4Sum20 } from "./underlay";
import { slowOnly, flowHashRaw } from "./common";
import { emitTagged } from "./emit";
import { emitEncap } from "./encap";
import { floodEncap4 } from "./floodfast";
import { TN_NH_NONE } from "./nexthop";
import { VN_FEAT, FEAT_ACL_FROM, FEAT_ACL_TO, FEAT_POLICE, FEAT_GLEAN } from "../state";
import { aclEval, ACL_PASS, DIR_FROM, DIR_TO } from "./acl";
import { deliverPcp } from "./qos";
import { arpAnswerAt } from "./suppress";

/**
 * access.ts's first checks: a single 802.1Q tag with a non-zero VID mapped
 * to a VN on this port, within the VN's MTU. The VN, or -1 for anything
 * the full path must see (it drops those).
 */
@inline function accessVn(port: u32, p: usize, len: u32): i32 {
  if (slowOnly) return -1;
  if (len < DOT1Q_HLEN) return -1;
  if (!dot1qTagged(p)) return -1;
  if (isTagTypeRaw(dot1qTypeRaw(p))) return -1;
  const vid = dot1qTci(p) & VID_MASK;
  if (vid == 0) return -1;
  const vn1 = <u32>load<u16>(vlanMap + ((<usize>port << 12) + vid) * 2);
  if (vn1 == 0) return -1;
  if (len - DOT1Q_HLEN > <u32>load<u16>(vnPtr(vn1 - 1), VN_MTU)) return -1;
  return <i32>(vn1 - 1);
}

/**
 * The frame's TCI as the fast paths use it (accessFast): its PCP and DEI
 * (its top 4 bits: tci >> PCP_SHIFT, deliverPcp, emitTagged's & 0xf000) are
 * all they use, so the first byte, shifted, where the whole field took a
 * 16-bit byte swap (issue 18, sixth round; wasm has no bswap: finding 6).
 * Loaded where it is used, not once at the top (issue 18, session 11). A wasm load may trap, so
 * V8 can neither sink nor repeat one: a value loaded early stays live across
 * the lookups between, which under Turboshaft meant a stack slot written and
 * read again for every frame; a second load from the frame's line is cheaper.
 */
@inline function tciOf(p: usize): u32 { return <u32>load<u8>(p + 14) << 8; }

/**
 * The access side's common case for the frame at p (length len, from access
 * port `port`, its record at hh): 1 when forwarded, 2 when it was an ARP
 * request suppression answered (suppress.ts arpAnswerAt), with the outputs
 * and counters the full path would give; 0, having written nothing, for the
 * full path (access.ts).
 */
@inline export function accessFast(port: u32, p: usize, len: u32, hh: usize): u32 {
  // accessVn's checks were made once, by the prefetch pass (pipeline/
  // prefetch.ts), which leaves the VN in the frame's record (issue 16: parse
  // once); 0: the frame has another shape, the full path takes it
  if (slowOnly) return 0;
  const vn1 = load<u32>(hh, FR_VN);
  if (vn1 == 0) return 0;
  const vn = vn1 - 1;
  const v = vnPtr(vn);
  const flags = <u32>load<u8>(v, VN_FLAGS);
  // Port security and ARP suppression for IPv4 and ARP; IPv6 (ND, the
  // link-local rule) and other EtherTypes take the full path. Declined
  // before the source's lookup (issue 18: an ARP request, which
  // arpAnswerAt answers, paid it twice); declined, writing nothing.
  if ((flags & (VNF_PORTSEC | VNF_ARPSUP)) != 0) {
    const e = dot1qTypeRaw(p);
    if (e != raw16(ETHERTYPE_IPV4)) {
      // An ARP request that suppression answers: 2 (index.ts counts it
      // apart from the fast path's frames). Called from here (issue 18,
      // sixth round), where the EtherType is in hand, rather than tried
      // after this function declined the frame, which re-read the
      // descriptor and the record: hot ARP reply 4 % faster.
      if (e == raw16(ETHERTYPE_ARP)) return arpAnswerAt(port, p, len, hh) ? 2 : 0;
      return 0; // access.ts accessFrame takes the rest (IPv6 and ND, other EtherTypes)
    }
  }
  const sv = macLookupAt(vn, macRaw(p + 6), load<u32>(hh)); // FR_VN set: both homes are in the record
  if ((sv & (MK_KIND | ML_ACTIVE)) == MK_LOCAL) return 0; // an inactive VNIC: dropped there
  // VN_FLAGS loaded again rather than kept: the value would live across the
  // source's lookup (below, the same for the frame's EtherType, TCI and
  // destination).
  const flags2 = <u32>load<u8>(v, VN_FLAGS);
  if ((flags2 & (VNF_PORTSEC | VNF_ARPSUP)) != 0) {
    // Suppression does nothing to an IPv4 frame.
    if ((flags2 & VNF_PORTSEC) != 0) {
      // seed §5: the source MAC is a VNIC of this VN behind this port, and
      // the source IP is bound to it (0.0.0.0, DHCP discovery, passes)
      if ((sv & MK_KIND) != MK_LOCAL) return 0;
      if (((sv >> ML_PORT_SHIFT) & ML_PORT_MASK) != port) return 0;
      if (len < DOT1Q_HLEN + 20) return 0;
      if (load<u32>(p + DOT1Q_HLEN + 12) != 0) {
        // the prefetch pass's home: it computes one for every IPv4 frame
        // of a port-security VN at least this long (prefetch.ts warmIpSlots)
        if (macWire(ip4LookupAt(vn, p + DOT1Q_HLEN + IP4_SRC, load<u32>(hh, FR_IP))) != macRaw(p + 6)) return 0;
      }
    }
  }
  // The profile's ACL, policer and gleaning (PROTOCOL.md §5): the from-VNIC
  // rules are checked here (a deny goes to the full path, which counts it);
  // the rest, and to-VNIC rules on a local delivery, take the full path.
  const feat = <u32>load<u8>(v, VN_FEAT);
  if (feat != 0) {
    if ((feat & (FEAT_POLICE | FEAT_GLEAN)) != 0) return 0;
    if ((feat & FEAT_ACL_FROM) != 0) {
      if (aclEval(vn, DIR_FROM, ld16(p + 16), p + DOT1Q_HLEN, len - DOT1Q_HLEN) != ACL_PASS) return 0;
    }
  }
  // One call site for the flood (broadcast, multicast, unknown unicast):
  // inlined twice, its loops doubled the code of the function holding every
  // fast path (issue 18).
  const dst = macRaw(p);
  if ((<u32>dst & 1) == 0) {
    const dv = macLookupAt(vn, dst, load<u32>(hh, 4));
    if ((dv & MK_KIND) == MK_REMOTE) {
      if (load<u8>(tunPtr(dv & MR_TUN_MASK), 9) == TN_NH_NONE) return 0; // access.ts drops it: no-next-hop
      const vc = vnCtr + (<usize>vn * VN_CTR << 3);
      ctrInc(vc, VC_RX, 1);
      emitEncap(dv & MR_TUN_MASK, p, len, tciOf(p) >> PCP_SHIFT, flowHashRaw(p, dot1qTypeRaw(p), p + DOT1Q_HLEN, len - DOT1Q_HLEN), vn);
      ctrInc(vc, VC_ENCAP, 1);
      return 1;
    }
    if ((feat & FEAT_ACL_TO) != 0) return 0;
    if ((dv & MK_KIND) != 0) {
      if ((dv & ML_ACTIVE) == 0) return 0;
      const dport = (dv >> ML_PORT_SHIFT) & ML_PORT_MASK;
      if (dport == port) return 0;
      const dtag = tagOf(vn, dport);
      if (dtag == 0) return 0;
      ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_RX, 1);
      emitTagged(dport, dtag, deliverPcp(v, tciOf(p)), p, p + 16, len - 16, vn);
      return 1;
    }
  } else if ((feat & FEAT_ACL_TO) != 0) return 0;
  return floodFast(port, tciOf(p), p, len, vn, v) ? 1 : 0;
}

/**
 * access.ts flood for a VN with a flood list over an IPv4 underlay (so every
 * tunnel is an IPv4 one): one encapsulated copy per remote NVE on the list
 * (head-end replication, floodfast.ts floodEncap4), one tagged copy per other
 * local port; never an empty result, so never the flood-empty drop.
 */
@inline function floodFast(port: u32, tci: u32, p: usize, len: u32, vn: u32, v: usize): bool {
  const n = load<u32>(v, VN_FLOOD_N);
  if (n == 0) return false;
  if (ulIs6) return false;
  const vc = vnCtr + (<usize>vn * VN_CTR << 3);
  ctrInc(vc, VC_RX, 1);
  floodEncap4(floodPool + (<usize>load<u32>(v, VN_FLOOD_PTR) << 2), n, p, len, tci >> PCP_SHIFT,
              flowHashRaw(p, dot1qTypeRaw(p), p + DOT1Q_HLEN, len - DOT1Q_HLEN), vn);
  const nl = <u32>load<u8>(v + VN_NLOCAL);
  const lpcp = deliverPcp(v, tci);
  for (let i: u32 = 0; i < nl; i++) {
    const l = load<u32>(v + VN_LOCAL + (<usize>i << 2));
    if (l >> 16 == port) continue; // never back out of the ingress port
    emitTagged(l >> 16, l & 0xfff, lpcp, p, p + 16, len - 16, vn);
  }
  ctrInc(vc, VC_FLOOD, 1);
  return true;
}

/**
 * The VN of an underlay frame with the shape underlayFast takes, every one of
 * its checks made (issue 16: parsed once, by the prefetch pass, which leaves
 * the VN in the frame's record): VXLAN, Geneve without options or NVGRE over
 * an IPv4 underlay with a 20-byte header and no UDP checksum, from an NVE on
 * the VN's flood list, an untagged inner frame within the VN's MTU to a
 * unicast destination. -1 for anything else, which the full path
 * (underlay.ts) takes. Reads only; each check its own `if` (finding 16).
 */
@inline export function underlayShape(p: usize, len: u32): i32 {
  if (ulIs6) return -1;
  if (len < 14 + 20 + 8 + 8 + 14) return -1;
  if (macRaw(p) != ulMac) return -1;
  if (<u32>load<u16>(p + 12) != raw16(ETHERTYPE_IPV4)) return -1;
  const ip = p + 14;
  if (!ip4Plain(ip)) return -1;
  const tot = ld16(ip + IP4_TOTLEN);
  if (<u32>14 + tot > len) return -1;
  if (tot < 20 + 8) return -1;
  if (ip4Sum20(ip) != 0xffff) return -1; // RFC 791
  if (<u64>load<u32>(ip + IP4_DST) != ulIp0) return -1;
  if (!ip4Whole(ip)) return -1; // RFC 7348 §4.3
  const proto = <u32>load<u8>(ip + IP4_PROTO);
  const l4 = ip + 20;
  const l4len = tot - 20;
  let hl: u32; // the overlay headers after the IPv4 header
  let key: u64;
  if (proto == IPPROTO_UDP) {
    if (ld16(l4 + 4) != l4len) return -1;
    if (load<u16>(l4 + 6) != 0) return -1;
    if (l4len < 16) return -1;
    const dport = <u32>load<u16>(l4 + 2); // raw
    const t = l4 + 8;
    if (dport == vxlanPortRaw) {
      if ((<u32>load<u8>(t) & VXLAN_FLAG_I) == 0) return -1; // RFC 7348 §5
      key = vniKeyAt(ENC_VXLAN, t + 4);
    } else if (dport == genevePortRaw) {
      // RFC 8926 §3.4: version 0, no options, O and C clear, Ethernet payload
      if (<u32>load<u8>(t) != 0) return -1;
      if ((<u32>load<u8>(t + 1) & (GENEVE_FLAG_O | GENEVE_FLAG_C)) != 0) return -1;
      if (<u32>load<u16>(t + 2) != raw16(ETHERTYPE_TEB)) return -1;
      key = vniKeyAt(ENC_GENEVE, t + 4);
    } else return -1;
    hl = 16;
  } else if (proto == IPPROTO_GRE) {
    // RFC 7637 §3.2: K set, C and S clear, version 0, no reserved VSID
    if (<u32>load<u16>(l4) != raw16(NVGRE_FLAGS_K)) return -1;
    if (<u32>load<u16>(l4 + 2) != raw16(ETHERTYPE_TEB)) return -1;
    const vsid = ld32(l4 + 4) >> 8;
    if (vsid <= NVGRE_VSID_RESERVED_MAX) return -1;
    if (vsid == NVGRE_VSID_RESERVED_ALL) return -1;
    key = vniKeyAt(ENC_NVGRE, l4 + 4);
    hl = 8;
  } else return -1;
  const vs = vniFind(key);
  if (vs == 0) return -1;
  const vn = load<u32>(vs, 8);
  const rs = remoteFind(4, <u64>load<u32>(ip + IP4_SRC), 0);
  if (rs == 0) return -1;
  if (!vtepAllowed(vn, <u32>load<u64>(rs, 24))) return -1;
  const inner = l4 + hl;
  const ilen = l4len - hl;
  if (ilen < 14) return -1;
  if (isTagTypeRaw(<u32>load<u16>(inner + 12))) return -1;
  if (ilen - 14 > <u32>load<u16>(vnPtr(vn), VN_MTU)) return -1;
  if (<u32>macRaw(inner) & 1) return -1;
  return <i32>vn;
}

/** The inner frame of an underlay frame underlayShape took: after NVGRE, or after UDP and VXLAN/Geneve. */
@inline export function underlayInner(p: usize): usize {
  return p + (<u32>load<u8>(p + 23) == IPPROTO_GRE ? 42 : 50);
}

/**
 * The inner frame's length (its outer IPv4 total length less the headers
 * before inner), computed where it is used rather than kept across the
 * lookup (as accessFast's tciOf; issue 18, session 11).
 */
@inline function underlayInnerLen(p: usize, inner: usize): u32 {
  return ld16(p + 14 + IP4_TOTLEN) + 14 - <u32>(inner - p);
}

/**
 * The underlay side's common case (underlayShape's, checked by the prefetch
 * pass) to an active local VNIC. Same checks, outputs and counters as
 * underlayFrame (underlay.ts); false before any write.
 */
@inline export function underlayFast(p: usize, len: u32, hh: usize): bool {
  if (slowOnly) return false;
  // The VN the prefetch pass found for this frame, every check of
  // underlayShape made, kept in the source's place; none: another shape.
  const vn = load<u32>(hh);
  if (vn == NO_HOME) return false;
  const inner = underlayInner(p);
  const v = vnPtr(vn);
  // the ACL's to-VNIC rules (PROTOCOL.md §5): a deny goes to the full path
  if ((<u32>load<u8>(v, VN_FEAT) & FEAT_ACL_TO) != 0) {
    if (aclEval(vn, DIR_TO, ld16(inner + 12), inner + 14, underlayInnerLen(p, inner) - 14) != ACL_PASS) return false;
  }
  const dv = macLookupAt(vn, macRaw(inner), load<u32>(hh, 4)); // the VN found: so is the home
  if ((dv & (MK_KIND | ML_ACTIVE)) != (MK_LOCAL | ML_ACTIVE)) return false;
  const dport = (dv >> ML_PORT_SHIFT) & ML_PORT_MASK;
  const dtag = tagOf(vn, dport);
  if (dtag == 0) return false;
  const vc = vnCtr + (<usize>vn * VN_CTR << 3);
  ctrInc(vc, VC_RX, 1);
  // qos.pcp, else the outer DSCP's class (underlay.ts)
  emitTagged(dport, dtag, deliverPcp(v, (<u32>load<u8>(p + 14 + 1) >> 5) << 13), inner, inner + 12, underlayInnerLen(p, inner) - 12, vn);
  ctrInc(vc, VC_DECAP, 1);
  return true;
}
