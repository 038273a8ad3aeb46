// The L3 service (seed §3.1.2; PROTOCOL.md §5 `service: "l3"`): the NVE is
// the default gateway of every routed VN, at the same anycast IP and MAC on
// every NVE. Three entry points, all on the full path (the fast paths hand
// these frames over: a gateway MAC's table value, MK_ROUTER, has no
// ML_ACTIVE bit, and an L3 VNI's internal VN has no MAC bindings):
//   gatewayAnswer  ARP requests / neighbour solicitations for a gateway IP
//   routeAccess    a frame from a VNIC to its VN's gateway MAC
//   routeL3Vni     a frame received on a domain's L3 VNI (symmetric IRB)
// Routing is by destination IP inside the domain: the host bindings of the
// domain's VNs (the IP table, tables/index.ts), then the longest of their
// prefix bindings (a VNIC's range). A local VNIC gets the frame with its MACs
// rewritten (destination: the VNIC; source: its VN's gateway MAC), TTL or hop
// limit - 1 (RFC 1812 §5.3.1, RFC 8200 §3) and the destination's tag; a VNIC
// behind another NVE gets it through the domain's L3 VNI with the inner
// destination MAC set to that NVE's router MAC and the inner source to ours
// (symmetric IRB, as RFC 9135 §4.1 and Linux/FRR's EVPN type-5 do it).
import { ld8, ld16, st8, st16, st32, stMac, csumAdd, csumFold } from "../util";
import { tagOf, vnPtr, vnCtr, ctrInc, tunPtr, VN_CTR, VN_MTU, VC_ENCAP, VC_DECAP } from "../state";
import { macLookupHome, macRawOf, ipBase, ipMask, prefixBase, prefixCount, NO_HOME, IP6_TAG,
         MK_KIND, MK_LOCAL, MK_REMOTE, ML_ACTIVE, ML_PORT_SHIFT, ML_PORT_MASK, MR_TUN_MASK, ip4Lookup, ip6Lookup } from "../tables/index";
import { tipFindIn } from "../tables/haship";
import { l3Info, l3Ptr, domPtr, l3TunFind, tunRemote, l3TunMac, L3_VN, L3_DOM_MASK, L3_GW4, L3_GW6, L3_GWMAC, MK_ROUTER,
         DOM_NVN, DOM_VNS, DOM_RMAC, DOM_VNI_VN } from "../tables/l3";
import { ETHERTYPE_VLAN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_ARP, PCP_SHIFT } from "../proto/ethernet";
import { IP4_TTL, IP4_CSUM, IP4_SRC, IP4_DST, IP4_TOTLEN } from "../proto/ipv4";
import { IP6_HLIM, IP6_PLEN, IP6_SRC, IP6_DST, IP6_HLEN } from "../proto/ipv6";
import { ARP_OP, ARP_SPA, ARP_TPA, ARP_LEN, ARP_OP_REQUEST } from "../proto/arp";
import { ICMP_TIME_EXCEEDED, ICMP_HLEN, ICMP_QUOTE_DATA, IPPROTO_ICMP, ICMP_ECHO, ICMP_ECHO_REPLY } from "../proto/icmp";
import { ICMP6_TIME_EXCEEDED, ICMP6_ERROR_MAX, NA_FLAG_ROUTER, ICMP6_ECHO, ICMP6_ECHO_REPLY } from "../proto/icmp6";
import { IPPROTO_ICMPV6 } from "../proto/ipv4";
import { HDR_SLOT } from "../abi";
import { hdrBase } from "../state";
import * as D from "../drops";
import { drop, trace, flowHash, TR_LOOKUP, TR_ACTION, TR_DST, LK_LOCAL, LK_REMOTE, LK_UNKNOWN,
         LK_SUPPRESSED, AC_REPLY, AC_ROUTE, AC_ICMP } from "./common";
import { emitTagged, nextHdr, commit, outCount } from "./emit";
import { emitEncap } from "./encap";
import { TN_NH_NONE } from "./nexthop";
import { arpReply, ndReply, isDadOrNotNs } from "./suppress";

// Trace codes beyond common.ts's (host/dataplane/dataplane.ts traceEnd names them).

/** A gateway MAC (raw form) as the integer stMac and the IP table use, first octet most significant. */
@inline function beOf(raw: u64): u64 { return bswap<u64>(raw << 16); }

/**
 * ARP request or neighbour solicitation for one of a routed VN's gateway
 * IPs (seed §3.1.2: the NVE is the default gateway): answered from the
 * gateway MAC out of the port and tag it came from, whether the VN suppresses
 * ARP or not. The gateway IPs are bindings of the gateway MAC in the IP table
 * (host/dataplane/l3.ts), so ARP suppression, when on, answers them alike
 * (pipeline/suppress.ts arpAnswer). True when answered.
 */
export function gatewayAnswer(port: u32, tci: u32, p: usize, vn: u32, etype: u32, l3: usize, l3len: u32): bool {
  if ((l3Info(vn) & L3_VN) == 0) return false;
  const gw = beOf(load<u64>(l3Ptr(vn), L3_GWMAC));
  if (etype == ETHERTYPE_ARP) {
    if (l3len < ARP_LEN) return false;
    if (ld16(l3 + ARP_OP) != ARP_OP_REQUEST || ld16(l3) != 1 || ld16(l3 + 2) != ETHERTYPE_IPV4 || ld16(l3 + 4) != 0x0604) return false;
    if (load<u32>(l3 + ARP_SPA) == load<u32>(l3 + ARP_TPA)) return false; // an announcement, flooded (RFC 5227)
    if (ip4Lookup(vn, l3 + ARP_TPA) != gw) return false;
    trace(TR_LOOKUP, LK_SUPPRESSED);
    trace(TR_ACTION, AC_REPLY);
    arpReply(port, tci, p, gw, vn);
    return true;
  }
  if (etype == ETHERTYPE_IPV6) {
    if (isDadOrNotNs(l3, l3len)) return false;
    if (ip6Lookup(vn, l3 + 48) != gw) return false;
    trace(TR_LOOKUP, LK_SUPPRESSED);
    trace(TR_ACTION, AC_REPLY);
    ndReply(port, tci, p, gw, vn);
    // RFC 4861 §4.4: a router sets R in its advertisements. ndReply wrote
    // S|O; R is added to the header it left, checksum updated (RFC 1624 eq. 3).
    const ic = hdrBase + <usize>(outCount - 1) * HDR_SLOT + 18 + 40;
    const old = ld16(ic + 4);
    const nw = old | (NA_FLAG_ROUTER >> 16);
    st16(ic + 4, nw);
    st16(ic + 2, csumUpdate(ld16(ic + 2), old, nw));
    return true;
  }
  return false;
}

/** RFC 1624 eq. 3: the checksum `hc` after a 16-bit word of what it covers went from m to m2. */
@inline function csumUpdate(hc: u32, m: u32, m2: u32): u32 {
  let s: u32 = (~hc & 0xffff) + (~m & 0xffff) + m2;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}

// The route lookup's result (a pair: globals, no allocation).
let rVn: u32 = 0;
let rMac: u64 = 0; // first octet most significant, as the IP table holds it

/**
 * The destination at `dst` (IPv4: 4 bytes, IPv6: 16) inside domain d: a host
 * binding of one of the domain's VNs, else the longest prefix binding among
 * them (PROTOCOL.md §2: lookups take the longest prefix). Sets rVn/rMac.
 */
function routeLookup(d: u32, dst: usize, is6: bool): bool {
  const e = domPtr(d);
  const n = load<u32>(e, DOM_NVN);
  const a0: u64 = is6 ? load<u64>(dst) : <u64>load<u32>(dst);
  const a1: u64 = is6 ? load<u64>(dst, 8) : 0;
  for (let i: u32 = 0; i < n; i++) {
    const vn = <u32>load<u16>(e + DOM_VNS + (<usize>i << 1));
    const s = tipFindIn(ipBase, ipMask, (vn + 1) | (is6 ? IP6_TAG : 0), a0, a1);
    if (s != 0) { rVn = vn; rMac = load<u64>(s, 24); return true; }
  }
  let best: i32 = -1;
  const alen: u32 = is6 ? 16 : 4;
  for (let j: u32 = 0; j < prefixCount; j++) {
    const pe = prefixBase + (<usize>j << 5);
    const tag = load<u32>(pe);
    if (((tag & IP6_TAG) != 0) != is6) continue;
    const vn = (tag & ~IP6_TAG) - 1;
    if (l3Info(vn) != (L3_VN | d)) continue;
    const plen = load<u32>(pe, 4);
    if (<i32>plen <= best) continue;
    let ok = true;
    let bits = plen;
    for (let b: u32 = 0; b < alen && bits > 0; b++) {
      const m: u32 = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
      if (((<u32>load<u8>(dst + b) ^ <u32>load<u8>(pe + 8 + b)) & m) != 0) { ok = false; break; }
      bits = bits >= 8 ? bits - 8 : 0;
    }
    if (ok) { best = <i32>plen; rVn = vn; rMac = load<u64>(pe, 24); }
  }
  return best >= 0;
}

// routeCheck's results besides a drop reason
const R_OK: u32 = 0xffffffff;
const R_TTL: u32 = 0xfffffffe;

/**
 * The IP header at l3 is one a router forwards (RFC 1812 §5.2.2: version,
 * header length, total length, checksum; RFC 8200 §3), its destination is
 * routed in domain d (rVn/rMac set), and its TTL / hop limit leaves room for
 * one more hop. Returns R_OK, R_TTL or the drop reason.
 */
function routeCheck(d: u32, etype: u32, l3: usize, l3len: u32): u32 {
  if (etype == ETHERTYPE_IPV4) {
    if (l3len < 20) return D.D_TRUNCATED;
    const vi = ld8(l3);
    const ihl = (vi & 0xf) << 2;
    const tot = ld16(l3 + IP4_TOTLEN);
    if ((vi >> 4) != 4 || ihl < 20 || tot < ihl) return D.D_BAD_IP_HEADER;
    if (tot > l3len) return D.D_TRUNCATED;
    if (csumFold(csumAdd(0, l3, ihl)) != 0xffff) return D.D_BAD_IP_CHECKSUM;
    if (!routeLookup(d, l3 + IP4_DST, false)) return D.D_NO_ROUTE;
    if (ld8(l3 + IP4_TTL) <= 1) return R_TTL;
    return R_OK;
  }
  if (etype == ETHERTYPE_IPV6) {
    if (l3len < IP6_HLEN) return D.D_TRUNCATED;
    if ((ld8(l3) >> 4) != 6) return D.D_BAD_IP_HEADER;
    if (IP6_HLEN + ld16(l3 + IP6_PLEN) > l3len) return D.D_TRUNCATED;
    if (!routeLookup(d, l3 + IP6_DST, true)) return D.D_NO_ROUTE;
    if (ld8(l3 + IP6_HLIM) <= 1) return R_TTL;
    return R_OK;
  }
  return D.D_NOT_IP;
}

/** One hop less: IPv4 TTL with the header checksum updated (RFC 1624 eq. 3), or the IPv6 hop limit. */
@inline function hopDown(etype: u32, l3: usize): void {
  if (etype == ETHERTYPE_IPV4) {
    const old = ld16(l3 + IP4_TTL); // TTL and protocol: one 16-bit word of the sum
    const nw = old - 0x100;
    st16(l3 + IP4_TTL, nw);
    st16(l3 + IP4_CSUM, csumUpdate(ld16(l3 + IP4_CSUM), old, nw));
  } else {
    st8(l3 + IP6_HLIM, ld8(l3 + IP6_HLIM) - 1);
  }
}

/** The IP packet's length from its header (l3 already checked by routeCheck). */
@inline function ipLen(etype: u32, l3: usize): u32 {
  return etype == ETHERTYPE_IPV4 ? ld16(l3 + IP4_TOTLEN) : IP6_HLEN + ld16(l3 + IP6_PLEN);
}

/**
 * A frame from a VNIC of routed VN vn to its gateway MAC (access.ts, with the
 * source checks done): routed to a local VNIC, to another NVE over the
 * domain's L3 VNI, or answered with ICMP time exceeded.
 */
export function routeAccess(port: u32, tci: u32, p: usize, len: u32, vn: u32): void {
  const d = l3Info(vn) & L3_DOM_MASK;
  const etype = ld16(p + 16);
  const l3 = p + 18;
  const l3len = len - 18;
  const why = routeCheck(d, etype, l3, l3len);
  if (why != R_OK && why != R_TTL) { drop(why); return; }
  const dv = macLookupHome(rVn, macRawOf(rMac), NO_HOME);
  trace(TR_DST, dv);
  const kind = dv & MK_KIND;
  // for a gateway address itself: an echo request is answered, whatever its TTL
  if (kind == MK_ROUTER) {
    trace(TR_LOOKUP, LK_LOCAL);
    if (!echoReply(port, tci, p, vn, etype, l3)) drop(D.D_NO_ROUTE);
    return;
  }
  if (why == R_TTL) { timeExceeded(port, tci, p, vn, etype, l3); return; }
  if (kind == MK_LOCAL) {
    trace(TR_LOOKUP, LK_LOCAL);
    if (!toLocal(dv, etype, l3, p)) return;
    // routed between VNs, a frame may go back out of the port it came in on
    // (both VMs behind one hypervisor): no same-port filter here
    trace(TR_ACTION, AC_ROUTE);
    emitTagged(outPort, outTag, tci, p, p + 16, len - 16, rVn);
    return;
  }
  if (kind == MK_REMOTE) {
    trace(TR_LOOKUP, LK_REMOTE);
    const r = load<u32>(tunRemote + (<usize>(dv & MR_TUN_MASK) << 2));
    const t = l3TunFind(d, r);
    // that NVE published no router MAC (its vtep record) for this domain
    if (t < 0) { drop(D.D_NO_ROUTE); return; }
    // never a tunnel frame to broadcast: no next hop yet, no frame (pipeline/nexthop.ts)
    if (load<u8>(tunPtr(<u32>t), 9) == TN_NH_NONE) { drop(D.D_NO_NEXT_HOP); return; }
    const dom = domPtr(d);
    // symmetric IRB: inner destination = the remote NVE's router MAC, inner source = ours
    storeMacRaw(p, load<u64>(l3TunMac + (<usize>t << 3)));
    storeMacRaw(p + 6, load<u64>(dom, DOM_RMAC));
    hopDown(etype, l3);
    trace(TR_ACTION, AC_ROUTE);
    emitEncap(<u32>t, p, len, tci >> PCP_SHIFT, flowHash(p, etype, l3, l3len), load<u32>(dom, DOM_VNI_VN) - 1);
    ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_ENCAP, 1);
    return;
  }
  // the destination's MAC is not bound here
  trace(TR_LOOKUP, LK_UNKNOWN);
  drop(D.D_NO_ROUTE);
}

/**
 * A frame received on the L3 VNI of a domain (underlay.ts; `vn` is the L3
 * VNI's internal VN, the sender checked against its flood list): routed to
 * a local VNIC of the domain, never back into the overlay (split horizon).
 * The inner destination MAC must be our router MAC.
 */
export function routeL3Vni(vn: u32, inner: usize, ilen: u32): void {
  const d = l3Info(vn) & L3_DOM_MASK;
  const dom = domPtr(d);
  if ((load<u64>(inner) & 0xffffffffffff) != load<u64>(dom, DOM_RMAC)) { drop(D.D_NOT_OUR_MAC); return; }
  const etype = ld16(inner + 12);
  const l3 = inner + 14;
  const why = routeCheck(d, etype, l3, ilen - 14);
  // the hop that expires here is no VNIC's: dropped, counted (no ICMP across the overlay)
  if (why == R_TTL) { drop(D.D_TTL_EXCEEDED); return; }
  if (why != R_OK) { drop(why); return; }
  const dv = macLookupHome(rVn, macRawOf(rMac), NO_HOME);
  trace(TR_DST, dv);
  const kind = dv & MK_KIND;
  if (kind == MK_LOCAL) {
    trace(TR_LOOKUP, LK_LOCAL);
    if (!toLocal(dv, etype, l3, inner)) return;
    trace(TR_ACTION, AC_ROUTE);
    emitTagged(outPort, outTag, 0, inner, inner + 12, ilen - 12, rVn);
    ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_DECAP, 1);
    return;
  }
  if (kind == MK_REMOTE) { trace(TR_LOOKUP, LK_REMOTE); drop(D.D_SPLIT_HORIZON); return; }
  trace(TR_LOOKUP, LK_UNKNOWN);
  drop(D.D_NO_ROUTE);
}

let outPort: u32 = 0;
let outTag: u32 = 0;

/**
 * The routed frame's last hop is local VNIC `dv` of VN rVn: checks it can
 * receive and that the packet fits its VN's MTU, then rewrites the MACs at
 * `macs` (the frame's first 12 bytes) and takes one hop off. Sets outPort/outTag.
 */
function toLocal(dv: u32, etype: u32, l3: usize, macs: usize): bool {
  const dport = (dv >> ML_PORT_SHIFT) & ML_PORT_MASK;
  const dtag = tagOf(rVn, dport);
  if ((dv & ML_ACTIVE) == 0 || dtag == 0) { drop(D.D_DST_INACTIVE); return false; }
  if (ipLen(etype, l3) > <u32>load<u16>(vnPtr(rVn), VN_MTU)) { drop(D.D_MTU_EXCEEDED); return false; }
  stMac(macs, rMac);
  storeMacRaw(macs + 6, load<u64>(l3Ptr(rVn), L3_GWMAC));
  hopDown(etype, l3);
  outPort = dport;
  outTag = dtag;
  return true;
}

/** A MAC in raw form (tables/index.ts macRaw) written at p. */
@inline function storeMacRaw(p: usize, raw: u64): void {
  store<u32>(p, <u32>raw);
  store<u16>(p + 4, <u16>(raw >> 32));
}

/**
 * ICMP time exceeded in transit (RFC 792; RFC 1812 §5.3.1) or ICMPv6 time
 * exceeded (RFC 4443 §3.3) from the ingress VN's gateway address, back to the
 * sender out of the port and tag the frame came from. It quotes the
 * offending packet from its IP header: the header and 8 bytes of data for
 * IPv4 (RFC 792), as much as keeps the ICMPv6 packet within the minimum
 * IPv6 MTU for IPv6 (RFC 4443 §2.4 (c)); the quote is the frame's own bytes
 * (the output's data piece). A VN without a gateway address of that family
 * cannot send it: the frame is dropped as ttl-exceeded.
 */
function timeExceeded(port: u32, tci: u32, p: usize, vn: u32, etype: u32, l3: usize): void {
  const x = l3Ptr(vn);
  const h = nextHdr();
  store<u32>(h, load<u32>(p + 6)); // to the sender
  store<u16>(h + 4, load<u16>(p + 10));
  storeMacRaw(h + 6, load<u64>(x, L3_GWMAC));
  st16(h + 12, ETHERTYPE_VLAN);
  st16(h + 14, tci);
  const ip = h + 18;
  if (etype == ETHERTYPE_IPV4) {
    const gw4 = load<u32>(x, L3_GW4);
    if (gw4 == 0) { drop(D.D_TTL_EXCEEDED); return; }
    const ihl = (ld8(l3) & 0xf) << 2;
    const tot = ld16(l3 + IP4_TOTLEN);
    const q = ihl + (tot - ihl < ICMP_QUOTE_DATA ? tot - ihl : ICMP_QUOTE_DATA);
    st16(h + 16, ETHERTYPE_IPV4);
    st32(ip, 0x45000000 | (20 + ICMP_HLEN + q));
    st32(ip + 4, 0);
    st32(ip + 8, (64 << 24) | (IPPROTO_ICMP << 16));
    store<u32>(ip + IP4_SRC, gw4);
    store<u32>(ip + IP4_DST, load<u32>(l3 + IP4_SRC));
    st16(ip + IP4_CSUM, ~csumFold(csumAdd(0, ip, 20)) & 0xffff);
    const ic = ip + 20;
    st32(ic, ICMP_TIME_EXCEEDED << 24); // code 0: TTL exceeded in transit
    st32(ic + 4, 0);
    st16(ic + 2, ~csumFold(csumAdd(csumAdd(0, ic, ICMP_HLEN), l3, q)) & 0xffff);
    trace(TR_ACTION, AC_ICMP);
    commit(port, 18 + 20 + ICMP_HLEN, l3, q, vn);
    return;
  }
  const g0 = load<u64>(x, L3_GW6);
  const g1 = load<u64>(x, L3_GW6 + 8);
  if (g0 == 0 && g1 == 0) { drop(D.D_TTL_EXCEEDED); return; }
  const whole = IP6_HLEN + ld16(l3 + IP6_PLEN);
  const room = ICMP6_ERROR_MAX - IP6_HLEN - ICMP_HLEN;
  const q = whole < room ? whole : room;
  st16(h + 16, ETHERTYPE_IPV6);
  st32(ip, 0x60000000);
  st16(ip + IP6_PLEN, ICMP_HLEN + q);
  st8(ip + 6, IPPROTO_ICMPV6);
  st8(ip + IP6_HLIM, 64);
  store<u64>(ip + IP6_SRC, g0);
  store<u64>(ip + IP6_SRC + 8, g1);
  v128.store(ip + IP6_DST, v128.load(l3 + IP6_SRC));
  const ic = ip + IP6_HLEN;
  st32(ic, ICMP6_TIME_EXCEEDED << 24); // code 0: hop limit exceeded in transit
  st32(ic + 4, 0);
  // RFC 8200 §8.1: over the pseudo-header, the ICMPv6 header and the quote
  let s: u64 = <u64>(ICMP_HLEN + q) + <u64>IPPROTO_ICMPV6;
  s = csumAdd(s, ip + IP6_SRC, 32);
  s = csumAdd(s, ic, ICMP_HLEN);
  s = csumAdd(s, l3, q);
  st16(ic + 2, ~csumFold(s) & 0xffff);
  trace(TR_ACTION, AC_ICMP);
  commit(port, 18 + IP6_HLEN + ICMP_HLEN, l3, q, vn);
}

/**
 * An echo request to a gateway address (the VM pings its gateway): the echo
 * reply (RFC 792 "Echo or Echo Reply"; RFC 4443 §4.2) from that address, out
 * of the port and tag the request came from, its identifier, sequence and data
 * echoed (the data as the output's data piece; a short one copied and the
 * frame padded to the 64-byte minimum). The ICMP checksum follows the type
 * change (RFC 1624 eq. 3; the ICMPv6 pseudo-header's sum does not change when
 * its addresses swap). False for anything else sent to the gateway.
 */
function echoReply(port: u32, tci: u32, p: usize, vn: u32, etype: u32, l3: usize): bool {
  let hl: u32; // the request's IP header length
  let dlen: u32; // echo data after the 8-byte ICMP header
  let type: u32;
  if (etype == ETHERTYPE_IPV4) {
    hl = (ld8(l3) & 0xf) << 2;
    const tot = ld16(l3 + IP4_TOTLEN);
    if (ld8(l3 + 9) != IPPROTO_ICMP || tot < hl + ICMP_HLEN) return false;
    if ((ld16(l3 + 6) & 0x3fff) != 0) return false; // a fragment: not reassembled here
    type = ld8(l3 + hl);
    if (type != ICMP_ECHO || ld8(l3 + hl + 1) != 0) return false;
    dlen = tot - hl - ICMP_HLEN;
  } else {
    hl = IP6_HLEN;
    const plen = ld16(l3 + IP6_PLEN);
    if (ld8(l3 + 6) != IPPROTO_ICMPV6 || plen < ICMP_HLEN) return false;
    type = ld8(l3 + hl);
    if (type != ICMP6_ECHO || ld8(l3 + hl + 1) != 0) return false;
    dlen = plen - ICMP_HLEN;
  }
  const h = nextHdr();
  store<u32>(h, load<u32>(p + 6)); // back to the sender, from the MAC it sent to
  store<u16>(h + 4, load<u16>(p + 10));
  store<u32>(h + 6, load<u32>(p));
  store<u16>(h + 10, load<u16>(p + 4));
  st16(h + 12, ETHERTYPE_VLAN);
  st16(h + 14, tci);
  st16(h + 16, etype);
  const ip = h + 18;
  let ic: usize;
  if (etype == ETHERTYPE_IPV4) {
    st32(ip, 0x45000000 | (20 + ICMP_HLEN + dlen));
    st32(ip + 4, 0);
    st32(ip + 8, (64 << 24) | (IPPROTO_ICMP << 16));
    store<u32>(ip + IP4_SRC, load<u32>(l3 + IP4_DST));
    store<u32>(ip + IP4_DST, load<u32>(l3 + IP4_SRC));
    st16(ip + IP4_CSUM, ~csumFold(csumAdd(0, ip, 20)) & 0xffff);
    ic = ip + 20;
  } else {
    st32(ip, 0x60000000);
    st16(ip + IP6_PLEN, ICMP_HLEN + dlen);
    st8(ip + 6, IPPROTO_ICMPV6);
    st8(ip + IP6_HLIM, 64);
    v128.store(ip + IP6_SRC, v128.load(l3 + IP6_DST));
    v128.store(ip + IP6_DST, v128.load(l3 + IP6_SRC));
    ic = ip + IP6_HLEN;
  }
  const rq = l3 + hl;
  const reply: u32 = etype == ETHERTYPE_IPV4 ? ICMP_ECHO_REPLY : ICMP6_ECHO_REPLY;
  store<u64>(ic, load<u64>(rq)); // type, code, checksum, identifier, sequence
  st8(ic, reply);
  st16(ic + 2, csumUpdate(ld16(rq + 2), type << 8, reply << 8));
  let hlen = <u32>(ic + ICMP_HLEN - h);
  let data = rq + ICMP_HLEN;
  let n = dlen;
  if (hlen + dlen < 64) {
    // a short echo: its data into the header, then zero padding to the minimum frame
    memory.copy(h + hlen, data, dlen);
    memory.fill(h + hlen + dlen, 0, 64 - hlen - dlen);
    hlen = 64;
    n = 0;
    data = h;
  }
  trace(TR_ACTION, AC_REPLY);
  commit(port, hlen, data, n, vn);
  return true;
}
