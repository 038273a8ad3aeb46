// Underlay side: a frame from the underlay interface. Accept only overlay
// traffic addressed to us, check each header per its RFC, find the VN by
// its VNI/VSID, check the sender is on the VN's flood list, and deliver the
// inner frame to local ports only (split horizon: never back into the overlay).
import { ld16, ld32, raw16, csumAdd, csumFold } from "../util";
import { vnPtr, tagOf, vnCtr, ctrInc, VN_CTR, VC_RX, VC_DECAP, VC_FLOOD, VN_MTU, VN_NLOCAL, VN_LOCAL,
         vtepAllowed, ENC_VXLAN, ENC_GENEVE, ENC_NVGRE } from "../state";
import { macLookupHome, underlayHome, frameRec, vniFind, vniKey, remoteFind, MK_KIND, MK_LOCAL, MK_REMOTE, ML_ACTIVE, ML_PORT_SHIFT,
         ML_PORT_MASK, ML_TAG_MASK, IP6_TAG, macRaw } from "../tables/index";
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD,
         ETHERTYPE_TEB, ETHERTYPE_ARP, isTagTypeRaw } from "../proto/ethernet";
import { underlayArp, underlayNd, OK_NOT_ND } from "./host";
import { PUNTED } from "./punt";
import { IP4_FRAG, IP4_MF, IP4_OFFMASK, IP4_PROTO, IP4_TOTLEN, IP4_DST, IP4_SRC,
         IPPROTO_UDP, IPPROTO_GRE } from "../proto/ipv4";
import { IPPROTO_FRAGMENT } from "../proto/ipv6";
import { VXLAN_FLAG_I } from "../proto/vxlan";
import { GENEVE_FLAG_O, GENEVE_FLAG_C, GENEVE_OPT_CRITICAL } from "../proto/geneve";
import { NVGRE_FLAGS_K, NVGRE_VSID_RESERVED_MAX, NVGRE_VSID_RESERVED_ALL } from "../proto/nvgre";
import * as D from "../drops";
import { drop, setCur, trace, TR_VN, TR_VNI, TR_LOOKUP, TR_ACTION, TR_DST,
         LK_LOCAL, LK_BROADCAST, LK_UNKNOWN, LK_REMOTE, AC_DECAP, AC_FLOOD } from "./common";
import { emitTagged, outCount, curIn } from "./emit";
import { aclCheck, aclActive, DIR_TO, ACL_OK } from "./acl";
import { deliverPcp } from "./qos";
import { routeL3Vni } from "./route";
import { l3Info, L3_VNI } from "../tables/l3";

// The underlay's identity, set by control.ts setUnderlay.
export let ulMac: u64 = 0;
export let ulIs6: bool = false;
export let ulIp0: u64 = 0; // our address as two raw 8-byte words (IPv4: first 4 bytes)
export let ulIp1: u64 = 0;
export let vxlanPort: u32 = 4789;
export let genevePort: u32 = 6081;
// the same as a raw (little-endian) load of the wire field sees them
export let vxlanPortRaw: u32 = <u32>bswap<u16>(4789);
export let genevePortRaw: u32 = <u32>bswap<u16>(6081);
export function setUlIdentity(mac: u64, is6: bool, a0: u64, a1: u64, vx: u32, gn: u32): void {
  ulMac = mac; ulIs6 = is6; ulIp0 = a0; ulIp1 = a1; vxlanPort = vx; genevePort = gn;
  vxlanPortRaw = <u32>bswap<u16>(<u16>vx); genevePortRaw = <u32>bswap<u16>(<u16>gn);
}

/**
 * The folded ones' complement sum of a 20-byte IPv4 header, straight-line,
 * in the byte order it was loaded (little-endian): its callers only compare
 * it with 0xffff, its own byte swap (RFC 1071 §2(B): the sum is byte-order
 * independent), so the swap back is left out (issue 18, sixth round).
 */
@inline export function ip4Sum20(ip: usize): u32 {
  let s: u64 = (<u64>load<u32>(ip) + <u64>load<u32>(ip, 4)) + (<u64>load<u32>(ip, 8) + <u64>load<u32>(ip, 12)) + <u64>load<u32>(ip, 16);
  return csumFold(s);
}

export function underlayFrame(port: u32, p: usize, len: u32): void {
  setCur(port, -1);
  if (len < 14) { drop(D.D_TRUNCATED); return; }
  // The NVE is a host on the underlay (pipeline/host.ts): ARP, and neighbour
  // discovery for our IPv6 address, come before the "for our MAC" check
  // (requests and solicitations are multicast).
  const et0 = <u32>load<u16>(p + 12);
  if (et0 == raw16(ETHERTYPE_ARP)) {
    const r = underlayArp(port, p, len);
    if (r != PUNTED) drop(r);
    return;
  }
  if (et0 == raw16(ETHERTYPE_IPV6)) {
    const r = underlayNd(port, p, len);
    if (r != OK_NOT_ND) {
      if (r != PUNTED) drop(r);
      return;
    }
  }
  // ulMac is in the raw form setUnderlay stores (len >= 14: the 8-byte read is in the frame)
  if (macRaw(p) != ulMac) { drop(D.D_NOT_OUR_MAC); return; }
  const et = <u32>load<u16>(p + 12); // raw: compared with raw16 constants
  if (et == raw16(ETHERTYPE_VLAN) || et == raw16(ETHERTYPE_QINQ) || et == raw16(ETHERTYPE_QINQ_OLD)) { drop(D.D_UNDERLAY_TAGGED); return; }
  const ip = p + 14;
  let l4: usize;
  let l4len: u32;
  let proto: u32;
  let srcTag: u32;
  let s0: u64;
  let s1: u64;
  let addrs: usize; // source+destination addresses, for the UDP pseudo-header
  let alen: u32;
  let tclass: u32; // the outer DSCP/ECN byte (IPv4 TOS, IPv6 traffic class)
  if (et == raw16(ETHERTYPE_IPV4)) {
    if (ulIs6) { drop(D.D_NOT_OUR_IP); return; }
    if (len < 14 + 20) { drop(D.D_TRUNCATED); return; }
    const vi = <u32>load<u8>(ip);
    const ihl = (vi & 0xf) << 2;
    const tot = ld16(ip + IP4_TOTLEN);
    if ((vi >> 4) != 4 || ihl < 20 || tot < ihl) { drop(D.D_BAD_IP_HEADER); return; }
    if (<u32>14 + tot > len) { drop(D.D_TRUNCATED); return; }
    // RFC 791: the header checksum over the whole header sums to 0xffff
    if (ihl == 20 ? ip4Sum20(ip) != 0xffff : csumFold(csumAdd(0, ip, ihl)) != 0xffff) { drop(D.D_BAD_IP_CHECKSUM); return; }
    if (<u64>load<u32>(ip + IP4_DST) != ulIp0) { drop(D.D_NOT_OUR_IP); return; }
    // RFC 7348 §4.3: VTEPs never fragment; a fragment is not reassembled here
    // (MF or a fragment offset: the raw field against the swapped mask)
    if ((<u32>load<u16>(ip + IP4_FRAG) & raw16(IP4_MF | IP4_OFFMASK)) != 0) { drop(D.D_FRAGMENT); return; }
    proto = <u32>load<u8>(ip + IP4_PROTO);
    l4 = ip + ihl;
    l4len = tot - ihl;
    srcTag = 4;
    s0 = <u64>load<u32>(ip + IP4_SRC);
    s1 = 0;
    addrs = ip + IP4_SRC;
    alen = 8;
    tclass = <u32>load<u8>(ip + 1);
  } else if (et == raw16(ETHERTYPE_IPV6)) {
    if (!ulIs6) { drop(D.D_NOT_OUR_IP); return; }
    if (len < 14 + 40) { drop(D.D_TRUNCATED); return; }
    if ((<u32>load<u8>(ip) >> 4) != 6) { drop(D.D_BAD_IP_HEADER); return; }
    const plen = ld16(ip + 4);
    if (<u32>54 + plen > len) { drop(D.D_TRUNCATED); return; }
    if (load<u64>(ip + 24) != ulIp0 || load<u64>(ip + 32) != ulIp1) { drop(D.D_NOT_OUR_IP); return; }
    proto = <u32>load<u8>(ip + 6);
    if (proto == IPPROTO_FRAGMENT) { drop(D.D_FRAGMENT); return; }
    l4 = ip + 40;
    l4len = plen;
    srcTag = 6;
    s0 = load<u64>(ip + 8);
    s1 = load<u64>(ip + 16);
    addrs = ip + 8;
    alen = 32;
    tclass = ((<u32>load<u8>(ip) & 0xf) << 4) | (<u32>load<u8>(ip + 1) >> 4);
  } else { drop(D.D_NOT_IP); return; }

  let enc: u32;
  let vni: u32;
  let inner: usize;
  let ilen: u32;
  if (proto == IPPROTO_UDP) {
    if (l4len < 8) { drop(D.D_BAD_UDP_LENGTH); return; }
    const ul = ld16(l4 + 4);
    if (ul != l4len) { drop(D.D_BAD_UDP_LENGTH); return; }
    const dport = ld16(l4 + 2);
    if (dport != vxlanPort && dport != genevePort) { drop(D.D_NOT_OVERLAY); return; }
    // RFC 7348 §5 / RFC 8926 §3.3: a zero checksum is accepted (RFC 6935 for
    // IPv6 tunnels); a non-zero one must be right.
    // (the pseudo-header is summed only then: VXLAN over IPv4 sends 0)
    if (load<u16>(l4 + 6) != 0) {
      const pseudo = csumAdd(<u64>IPPROTO_UDP + <u64>l4len, addrs, alen);
      if (csumFold(csumAdd(pseudo, l4, l4len)) != 0xffff) { drop(D.D_BAD_UDP_CHECKSUM); return; }
    }
    const t = l4 + 8;
    const tl = l4len - 8;
    if (dport == vxlanPort) {
      if (tl < 8) { drop(D.D_TRUNCATED); return; }
      if ((<u32>load<u8>(t) & VXLAN_FLAG_I) == 0) { drop(D.D_VXLAN_FLAGS); return; }
      enc = ENC_VXLAN;
      vni = ld32(t + 4) >> 8;
      inner = t + 8;
      ilen = tl - 8;
    } else {
      if (tl < 8) { drop(D.D_TRUNCATED); return; }
      const b0 = <u32>load<u8>(t);
      const b1 = <u32>load<u8>(t + 1);
      if ((b0 >> 6) != 0) { drop(D.D_GENEVE_VERSION); return; }
      // RFC 8926 §3.4: O = control packet, never forwarded as data
      if (b1 & GENEVE_FLAG_O) { drop(D.D_GENEVE_OAM); return; }
      if (ld16(t + 2) != ETHERTYPE_TEB) { drop(D.D_GENEVE_PROTOCOL); return; }
      const optLen = (b0 & 0x3f) << 2;
      if (<u32>8 + optLen > tl) { drop(D.D_GENEVE_OPTION_LENGTH); return; }
      // §3.5: walk the options; their lengths must add up to Opt Len, and
      // an option we do not understand that is critical means drop (§3.5.1).
      let o: u32 = 0;
      let critical = false;
      while (o < optLen) {
        if (o + 4 > optLen) break;
        const ot = <u32>load<u8>(t + 8 + o + 2);
        if (ot & GENEVE_OPT_CRITICAL) critical = true;
        o += 4 + ((<u32>load<u8>(t + 8 + o + 3) & 0x1f) << 2);
      }
      if (o != optLen) { drop(D.D_GENEVE_OPTION_LENGTH); return; }
      if (critical || (b1 & GENEVE_FLAG_C) != 0) { drop(D.D_GENEVE_CRITICAL_OPTION); return; }
      enc = ENC_GENEVE;
      vni = ld32(t + 4) >> 8;
      inner = t + 8 + optLen;
      ilen = tl - 8 - optLen;
    }
  } else if (proto == IPPROTO_GRE) {
    if (l4len < 8) { drop(D.D_TRUNCATED); return; }
    // RFC 7637 §3.2: K set, C and S clear, version 0: exactly 0x2000
    if (ld16(l4) != NVGRE_FLAGS_K) { drop(D.D_NVGRE_FLAGS); return; }
    if (ld16(l4 + 2) != ETHERTYPE_TEB) { drop(D.D_NVGRE_PROTOCOL); return; }
    vni = ld32(l4 + 4) >> 8;
    if (vni <= NVGRE_VSID_RESERVED_MAX || vni == NVGRE_VSID_RESERVED_ALL) { drop(D.D_NVGRE_RESERVED_VSID); return; }
    enc = ENC_NVGRE;
    inner = l4 + 8;
    ilen = l4len - 8;
  } else { drop(D.D_NOT_OVERLAY); return; }

  trace(TR_VNI, vni);
  const vs = vniFind(vniKey(enc, vni));
  if (vs == 0) { drop(D.D_UNKNOWN_VNI); return; }
  const vn = load<u32>(vs, 8);
  setCur(port, <i32>vn);
  trace(TR_VN, vn + 1);
  const v = vnPtr(vn);
  ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_RX, 1);
  // Only NVEs on the VN's flood list send us its traffic (issue 2).
  const rs = remoteFind(srcTag, s0, s1);
  if (rs == 0 || !vtepAllowed(vn, <u32>load<u64>(rs, 24))) { drop(D.D_UNKNOWN_VTEP); return; }
  if (ilen < 14) { drop(D.D_TRUNCATED); return; }
  const iet = <u32>load<u16>(inner + 12); // raw
  // STANDARDS.md: the decapsulator drops an inner 802.1Q-tagged frame (RFC 7348 §6.1, RFC 7637 §4)
  if (isTagTypeRaw(iet)) { drop(D.D_INNER_TAGGED); return; }
  if (ilen - 14 > <u32>load<u16>(v, VN_MTU)) { drop(D.D_MTU_EXCEEDED); return; }
  // PROTOCOL.md §5: what is delivered to the VN's VNICs passes the ACL's
  // to-VNIC rules, and takes qos.pcp, else the outer DSCP's class (DSCP >> 3:
  // encap.ts's PCP << 3 in reverse)
  const pcp = deliverPcp(v, (tclass >> 5) << 13);
  if ((l3Info(vn) & L3_VNI) != 0) { routeL3Vni(vn, inner, ilen); return; } // a domain's L3 VNI: routed (pipeline/route.ts)
  const dst = macRaw(inner); // ilen >= 14
  if (dst & 1) { trace(TR_LOOKUP, LK_BROADCAST); floodLocal(vn, v, inner, ilen, pcp); return; }
  const dv = macLookupHome(vn, dst, underlayHome(frameRec(curIn), vn));
  trace(TR_DST, dv);
  const kind = dv & MK_KIND;
  if (kind == MK_LOCAL) {
    trace(TR_LOOKUP, LK_LOCAL);
    const dport = (dv >> ML_PORT_SHIFT) & ML_PORT_MASK;
    const dtag = tagOf(vn, dport);
    if ((dv & ML_ACTIVE) == 0 || dtag == 0) { drop(D.D_DST_INACTIVE); return; }
    if (toVnicDenied(vn, inner, ilen)) return;
    trace(TR_ACTION, AC_DECAP);
    emitTagged(dport, dtag, pcp, inner, inner + 12, ilen - 12, vn);
    ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_DECAP, 1);
    return;
  }
  if (kind == MK_REMOTE) { trace(TR_LOOKUP, LK_REMOTE); drop(D.D_SPLIT_HORIZON); return; }
  trace(TR_LOOKUP, LK_UNKNOWN);
  floodLocal(vn, v, inner, ilen, pcp);
}

/** The ACL's to-VNIC rules deny the inner frame: dropped and counted (true), or it goes on. */
function toVnicDenied(vn: u32, inner: usize, ilen: u32): bool {
  if (!aclActive(vn, DIR_TO)) return false;
  const why = aclCheck(vn, DIR_TO, ld16(inner + 12), inner + 14, ilen - 14);
  if (why == ACL_OK) return false;
  drop(why);
  return true;
}

/** Broadcast/unknown from the overlay: every local port of the VN, never the overlay. */
function floodLocal(vn: u32, v: usize, inner: usize, ilen: u32, pcp: u32): void {
  trace(TR_ACTION, AC_FLOOD);
  const before = outCount;
  const nl = <u32>load<u8>(v + VN_NLOCAL);
  if (nl != 0 && toVnicDenied(vn, inner, ilen)) return;
  for (let i: u32 = 0; i < nl; i++) {
    const e = load<u32>(v + VN_LOCAL + (<usize>i << 2));
    emitTagged(e >> 16, e & 0xfff, pcp, inner, inner + 12, ilen - 12, vn);
  }
  if (outCount == before) { drop(D.D_FLOOD_EMPTY); return; }
  ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_DECAP, 1);
  ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_FLOOD, 1);
}

export { ML_ACTIVE, ML_TAG_MASK, ML_PORT_MASK, ML_PORT_SHIFT, MK_REMOTE, IP6_TAG, LK_REMOTE };
