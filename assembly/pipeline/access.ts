// Access side: a frame from a hypervisor's 802.1Q trunk (RFC 8394 §2: the
// End Device tags each VN with a locally significant VID negotiated per port).
//   parse tag -> (port, VID) -> VN -> source checks -> ARP/ND suppression
//   -> destination lookup -> hairpin | encapsulate | flood
import { ld16, ldMac, ld8, raw16 } from "../util";
import { vlanMap, vnPtr, tagOf, tunPtr, vnCtr, ctrInc, VN_CTR, VC_RX, VC_ENCAP, VC_FLOOD,
         VN_FLAGS, VN_MTU, VN_FLOOD_PTR, VN_FLOOD_N, VN_NLOCAL, VN_LOCAL,
         VNF_PORTSEC, VNF_ARPSUP, floodPool } from "../state";
import { macLookupHome, frameRec, macRaw, ip4Lookup, ip6Lookup, MK_KIND, MK_LOCAL, MK_REMOTE, ML_ACTIVE,
         ML_PORT_SHIFT, ML_PORT_MASK, ML_TAG_MASK, MR_TUN_MASK } from "../tables/index";
import { ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD, ETHERTYPE_IPV4, ETHERTYPE_ARP,
         ETHERTYPE_IPV6, VID_MASK, PCP_SHIFT, DOT1Q_HLEN, isTagTypeRaw, dot1qTypeRaw } from "../proto/ethernet";
import { IPPROTO_ICMPV6 } from "../proto/ipv4";
import { ND_NA } from "../proto/icmp6";
import { ARP_OP, ARP_SHA, ARP_SPA, ARP_TPA, ARP_LEN, ARP_OP_REQUEST } from "../proto/arp";
import * as D from "../drops";
import { drop, setCur, trace, flowHash, TR_VN, TR_LOOKUP, TR_ACTION, TR_DST, TR_SRC,
         LK_LOCAL, LK_REMOTE, LK_BROADCAST, LK_UNKNOWN, LK_SUPPRESSED,
         AC_HAIRPIN, AC_ENCAP, AC_FLOOD, AC_REPLY } from "./common";
import { emitTagged, outCount, curIn } from "./emit";
import { emitEncap } from "./encap";
import { TN_NH_NONE } from "./nexthop";
import { arpReply, ndReply, isDadOrNotNs, arpAnswer } from "./suppress";
import { aclCheck, aclEval, aclActive, DIR_FROM, DIR_TO, ACL_OK } from "./acl";
import { police, policerKey, deliverPcp } from "./qos";
import { VN_FEAT, FEAT_POLICE, FEAT_GLEAN } from "../state";
import { glean, GLEAN_ON, GLEAN_PASS, ML_GLEAN } from "./glean";
import { gatewayAnswer, routeAccess } from "./route";
import { MK_ROUTER } from "../tables/l3";

export function accessFrame(port: u32, p: usize, len: u32): void {
  // an ARP request that suppression answers, the quick way (fast.ts; false
  // while tracing, so the trace below records every step)
  if (arpAnswer(port, p, len, frameRec(curIn))) return;
  setCur(port, -1);
  if (len < DOT1Q_HLEN) { drop(D.D_TRUNCATED); return; }
  const tpid = <u32>load<u16>(p + 12); // raw: compared with raw16 constants
  if (tpid == raw16(ETHERTYPE_QINQ) || tpid == raw16(ETHERTYPE_QINQ_OLD)) { drop(D.D_DOUBLE_TAGGED); return; }
  if (tpid != raw16(ETHERTYPE_VLAN)) { drop(D.D_UNTAGGED); return; }
  const tci = ld16(p + 14);
  const vid = tci & VID_MASK;
  const etype = ld16(p + 16);
  // An 802.1Q frame whose payload is another tag is double-tagged too.
  if (isTagTypeRaw(dot1qTypeRaw(p))) { drop(D.D_DOUBLE_TAGGED); return; }
  if (vid == 0) { drop(D.D_PRIORITY_TAGGED); return; }
  const vn1 = <u32>load<u16>(vlanMap + ((<usize>port << 12) + vid) * 2);
  if (vn1 == 0) { drop(D.D_UNKNOWN_VID); return; } // also VID 4095: never mapped
  const vn = vn1 - 1;
  setCur(port, <i32>vn);
  trace(TR_VN, vn1);
  const v = vnPtr(vn);
  ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_RX, 1);
  // PROTOCOL.md §5: mtu is the VN's IP MTU, the inner frame minus 14 bytes.
  if (len - DOT1Q_HLEN > <u32>load<u16>(v, VN_MTU)) { drop(D.D_MTU_EXCEEDED); return; }
  const flags = <u32>load<u8>(v, VN_FLAGS);
  const l3 = p + DOT1Q_HLEN;
  const l3len = len - DOT1Q_HLEN;

  // Source: an Associated VNIC sends nothing (RFC 8394 §3: traffic flows
  // only when Activated); with port security the source MAC must be a VNIC
  // of this VN behind this port, and its source IP one bound to that MAC
  // (seed §5, anti-spoofing).
  const hh = frameRec(curIn); // the homes the prefetch pass computed
  const sv = macLookupHome(vn, macRaw(p + 6), load<u32>(hh)); // len >= 18: the 8-byte read is in the frame
  trace(TR_SRC, sv);
  if ((sv & MK_KIND) == MK_LOCAL && (sv & ML_ACTIVE) == 0) { drop(D.D_VNIC_INACTIVE); return; }
  // a gleaning VN's sources are decided first (PROTOCOL.md §5, pipeline/glean.ts)
  let g = GLEAN_ON;
  if ((<u32>load<u8>(v, VN_FEAT) & FEAT_GLEAN) != 0) {
    g = glean(vn, port, p, sv, etype, l3, l3len, load<u32>(hh));
    if (g < GLEAN_PASS) { drop(g); return; }
  }
  if ((flags & VNF_PORTSEC) != 0 && g != GLEAN_PASS) {
    if ((sv & MK_KIND) != MK_LOCAL || ((sv >> ML_PORT_SHIFT) & ML_PORT_MASK) != port) { drop(D.D_SPOOFED_MAC); return; }
    const why = sourceIpCheck(vn, ldMac(p + 6), etype, l3, l3len);
    if (why != NO_DROP) { drop(why); return; }
  }

  // seed §3.1.2: a routed VN's gateway answers for its IPs (pipeline/route.ts)
  if (gatewayAnswer(port, tci, p, vn, etype, l3, l3len)) return;

  // RFC 9161: answer ARP requests / neighbour solicitations for known
  // bindings locally; gratuitous ARP, DAD and unknown targets are flooded.
  if (flags & VNF_ARPSUP) {
    if (etype == ETHERTYPE_ARP && l3len >= ARP_LEN && ld16(l3 + ARP_OP) == ARP_OP_REQUEST
        && ld16(l3) == 1 && ld16(l3 + 2) == ETHERTYPE_IPV4 && ld16(l3 + 4) == 0x0604
        && load<u32>(l3 + ARP_SPA) != load<u32>(l3 + ARP_TPA)) {
      const m = ip4Lookup(vn, l3 + ARP_TPA);
      if (m != u64.MAX_VALUE) {
        trace(TR_LOOKUP, LK_SUPPRESSED);
        trace(TR_ACTION, AC_REPLY);
        arpReply(port, tci, p, m, vn);
        return;
      }
    } else if (etype == ETHERTYPE_IPV6 && !isDadOrNotNs(l3, l3len)) {
      const m = ip6Lookup(vn, l3 + 40 + 8);
      if (m != u64.MAX_VALUE) {
        trace(TR_LOOKUP, LK_SUPPRESSED);
        trace(TR_ACTION, AC_REPLY);
        ndReply(port, tci, p, m, vn);
        return;
      }
    }
  }

  // PROTOCOL.md §5: the VN's ACL on what the VNIC sends, then the VNIC's
  // policer (qos.rateMbps) on what the ACL let through
  const feat = <u32>load<u8>(v, VN_FEAT);
  if (feat != 0) {
    if (aclActive(vn, DIR_FROM)) {
      const why = aclCheck(vn, DIR_FROM, etype, l3, l3len);
      if (why != ACL_OK) { drop(why); return; }
    }
    if ((feat & FEAT_POLICE) != 0 && (sv & MK_KIND) == MK_LOCAL && !police(vn, policerKey(vn, port, macRaw(p + 6), (sv & ML_GLEAN) != 0), len)) { drop(D.D_POLICED); return; }
  }

  const pcp = tci >> PCP_SHIFT;
  const dst = macRaw(p);
  if (dst & 1) { trace(TR_LOOKUP, LK_BROADCAST); flood(port, tci, p, len, vn, v, etype, l3, l3len); return; }
  const dv = macLookupHome(vn, dst, load<u32>(hh, 4));
  trace(TR_DST, dv);
  const kind = dv & MK_KIND;
  if (kind == MK_ROUTER) { routeAccess(port, tci, p, len, vn); return; } // to the gateway MAC: routed
  if (kind == MK_REMOTE) {
    trace(TR_LOOKUP, LK_REMOTE);
    // never a tunnel frame to broadcast: no next hop yet, no frame (pipeline/nexthop.ts)
    if (load<u8>(tunPtr(dv & MR_TUN_MASK), 9) == TN_NH_NONE) { drop(D.D_NO_NEXT_HOP); return; }
    trace(TR_ACTION, AC_ENCAP);
    emitEncap(dv & MR_TUN_MASK, p, len, pcp, flowHash(p, etype, l3, l3len), vn);
    ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_ENCAP, 1);
    return;
  }
  if (kind == MK_LOCAL) {
    trace(TR_LOOKUP, LK_LOCAL);
    const dport = (dv >> ML_PORT_SHIFT) & ML_PORT_MASK;
    // Two End Devices behind the same port share its bridged network (RFC
    // 8394 Req-1/Req-2): that network delivers between them, so a frame for
    // a VNIC on the ingress port is filtered, as a bridge would.
    if (dport == port) { drop(D.D_SAME_PORT); return; }
    const dtag = tagOf(vn, dport);
    // inactive, or its VAP on that port is gone: it cannot receive
    if ((dv & ML_ACTIVE) == 0 || dtag == 0) { drop(D.D_DST_INACTIVE); return; }
    if (aclActive(vn, DIR_TO)) {
      const why = aclCheck(vn, DIR_TO, etype, l3, l3len);
      if (why != ACL_OK) { drop(why); return; }
    }
    trace(TR_ACTION, AC_HAIRPIN);
    emitTagged(dport, dtag, deliverPcp(v, tci), p, p + 16, len - 16, vn);
    return;
  }
  trace(TR_LOOKUP, LK_UNKNOWN);
  flood(port, tci, p, len, vn, v, etype, l3, l3len);
}

let floodHash: u32 = 0;

/** Head-end replication: one copy per remote NVE on the VN's flood list, one per other local port. */
function flood(port: u32, tci: u32, p: usize, len: u32, vn: u32, v: usize, etype: u32, l3: usize, l3len: u32): void {
  trace(TR_ACTION, AC_FLOOD);
  const before = outCount;
  const n = load<u32>(v, VN_FLOOD_N);
  if (n > 0) { // a remote with no next hop yet gets no copy (encap.ts, pipeline/nexthop.ts)
    // through a global, as in fast.ts floodFast (bench/README.md finding 17)
    floodHash = flowHash(p, etype, l3, l3len);
    const pcp = tci >> PCP_SHIFT;
    const list = floodPool + (<usize>load<u32>(v, VN_FLOOD_PTR) << 2);
    for (let i: u32 = 0; i < n; i++) emitEncap(load<u32>(list + (<usize>i << 2)), p, len, pcp, floodHash, vn);
  }
  // the local copies are delivered to VNICs: the ACL's to-VNIC rules decide
  // them all at once (one list per VN); a frame that reached nobody else is
  // then an acl-deny, not flood-empty
  const toDenied = aclActive(vn, DIR_TO) && aclEval(vn, DIR_TO, etype, l3, l3len) != -1;
  const nl: u32 = toDenied ? 0 : ld8(v + VN_NLOCAL);
  const lpcp = deliverPcp(v, tci);
  for (let i: u32 = 0; i < nl; i++) {
    const e = load<u32>(v + VN_LOCAL + (<usize>i << 2));
    const lp = e >> 16;
    if (lp == port) continue; // never back out of the ingress port
    emitTagged(lp, e & 0xfff, lpcp, p, p + 16, len - 16, vn);
  }
  if (outCount == before) {
    let why = D.D_FLOOD_EMPTY;
    if (toDenied) {
      const all = ld8(v + VN_NLOCAL);
      for (let i: u32 = 0; i < all; i++) {
        if ((load<u32>(v + VN_LOCAL + (<usize>i << 2)) >> 16) != port) { why = aclCheck(vn, DIR_TO, etype, l3, l3len); break; }
      }
    }
    drop(why);
    return;
  }
  ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_FLOOD, 1);
}

/**
 * The IPv6 address at p belongs to the VNIC with MAC `src`: bound to it, or
 * its fe80::/64 address with the modified EUI-64 of that MAC (RFC 4291 App. A).
 */
function ip6Owned(vn: u32, p: usize, src: u64): bool {
  if (load<u32>(p) == 0x80fe && load<u32>(p + 4) == 0) {
    const eui: u64 = ((src >> 24) << 40) | (<u64>0xfffe << 24) | (src & 0xffffff);
    if (bswap<u64>(load<u64>(p + 8)) == (eui ^ (<u64>0x02 << 56))) return true;
  }
  return ip6Lookup(vn, p) == src;
}

/** sourceIpCheck found nothing to drop: not a drop reason (drops.ts numbers those from 0). Not control.ts OK (0), a status. */
const NO_DROP: u32 = 0xffffffff;

/**
 * Seed §5: the source IP of IPv4, ARP and IPv6 must be bound to the source
 * MAC. Returns NO_DROP or the drop reason (a header too short to check is
 * truncated, not spoofed).
 */
@inline function sourceIpCheck(vn: u32, src: u64, etype: u32, l3: usize, l3len: u32): u32 {
  if (etype == ETHERTYPE_IPV4) {
    if (l3len < 20) return D.D_TRUNCATED;
    if (load<u32>(l3 + 12) == 0) return NO_DROP; // 0.0.0.0: DHCP discovery
    return ip4Lookup(vn, l3 + 12) == src ? NO_DROP : D.D_SPOOFED_IP;
  }
  if (etype == ETHERTYPE_ARP) {
    if (l3len < ARP_LEN) return D.D_TRUNCATED;
    if (ldMac(l3 + ARP_SHA) != src) return D.D_SPOOFED_MAC; // sender hardware address spoofed
    if (load<u32>(l3 + ARP_SPA) == 0) return NO_DROP; // ARP probe (RFC 5227)
    return ip4Lookup(vn, l3 + ARP_SPA) == src ? NO_DROP : D.D_SPOOFED_IP;
  }
  if (etype == ETHERTYPE_IPV6) {
    if (l3len < 40) return D.D_TRUNCATED;
    const a0 = load<u64>(l3 + 8);
    const a1 = load<u64>(l3 + 16);
    // :: is the source of DAD probes (RFC 4862 §5.4)
    if (!(a0 == 0 && a1 == 0) && !ip6Owned(vn, l3 + 8, src)) return D.D_SPOOFED_IP;
    // A neighbour advertisement claims its target address (RFC 4861 §4.4):
    // the target must be the sender's own, as the sender IP of ARP is.
    if (<u32>load<u8>(l3 + 6) == IPPROTO_ICMPV6 && l3len >= 40 + 24 && <u32>load<u8>(l3 + 40) == ND_NA) {
      if (!ip6Owned(vn, l3 + 48, src)) return D.D_SPOOFED_IP;
    }
    return NO_DROP;
  }
  return NO_DROP;
}
