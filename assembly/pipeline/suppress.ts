// ARP and neighbour-discovery suppression (RFC 9161 §3): the NVE answers for
// bindings it knows, out of the port and tag the request came from; and ARP
// suppression's common case (arpAnswerAt: the answered request, port
// security's checks first), which fast.ts accessFast takes without the full
// path (access.ts).
import { ld16, st16, stMac, csumAdd, csumFold, raw16, ldMac } from "../util";
import { nextHdr, commit } from "./emit";
import { ETHERTYPE_VLAN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, DOT1Q_HLEN, dot1qTypeRaw } from "../proto/ethernet";
import { ARP_OP, ARP_SHA, ARP_SPA, ARP_TPA, ARP_LEN, ARP_OP_REQUEST, ARP_OP_REPLY } from "../proto/arp";
import { vnPtr, vnCtr, ctrInc, VN_CTR, VC_RX, VN_FLAGS, VNF_PORTSEC, VNF_ARPSUP, VN_FEAT, FEAT_GLEAN } from "../state";
import { macLookupAt, ip4LookupHome, ip4LookupAt, macRaw, macWire, NO_HOME, MK_KIND, MK_LOCAL, ML_ACTIVE, ML_PORT_SHIFT, ML_PORT_MASK,
         FR_VN, FR_IP } from "../tables/index";
import { slowOnly } from "./common";
import { IPPROTO_ICMPV6 } from "../proto/ipv4";
import { ND_NS, NA_LEN } from "../proto/icmp6";
import { writeNa } from "./na";

/** Six bytes as a u32 and a u16 move: no runtime call for a MAC. */
@inline function copy6(d: usize, s: usize): void {
  store<u32>(d, load<u32>(s));
  store<u16>(d + 4, load<u16>(s + 4));
}

/**
 * The ARP reply to the request at p (RFC 826): `mac` owns the target IP.
 * Padded to 64 bytes. Written as whole words (issue 18: the bound MAC
 * byte-swapped once, by one byte shuffle (tables/index.ts macWire), not
 * twice field by field; eleven stores, not twenty):
 *   0  requester's MAC (from the request's source)  6  mac  12  0x8100  14 TCI
 *   16 0x0806  18 htype 1, ptype 0x0800, hlen 6, plen 4, op 2  26 sha = mac
 *   32 spa = the request's tpa  36 tha = the request's sha  42 tpa = its spa
 *   46 zeros to 64
 */
export function arpReply(port: u32, tci: u32, p: usize, mac: u64, vn: u32): void {
  arpReplyAt(port, tci, p, mac, vn);
}

/** arpReply, inlined into the ARP fast path (arpAnswerAt). */
@inline function arpReplyAt(port: u32, tci: u32, p: usize, mac: u64, vn: u32): void {
  const h = nextHdr();
  const a = p + 18;
  const m = macWire(mac) & 0xffffffffffff; // the MAC's 6 bytes as they lie on the wire, read little-endian
  store<u64>(h, load<u64>(p + 6)); // bytes 6..7 are overwritten next
  store<u64>(h + 6, m | (<u64>raw16(ETHERTYPE_VLAN) << 48));
  store<u64>(h + 14, <u64>(((tci << 8) | (tci >> 8)) & 0xffff) | (<u64>raw16(ETHERTYPE_ARP) << 16) |
    (<u64>raw16(1) << 32) | (<u64>raw16(ETHERTYPE_IPV4) << 48));
  store<u64>(h + 22, <u64>(raw16(0x0604) | (raw16(ARP_OP_REPLY) << 16)) | (m << 32));
  store<u16>(h + 30, <u16>(m >> 32));
  store<u32>(h + 32, load<u32>(a + ARP_TPA));
  copy6(h + 36, a + ARP_SHA); // tha = requester's sha
  store<u32>(h + 42, load<u32>(a + ARP_SPA));
  // pad to the 64-byte minimum of a tagged frame
  store<u16>(h + 46, 0);
  store<u64>(h + 48, 0);
  store<u64>(h + 56, 0);
  commit(port, 64, p, 0, vn);
}

/**
 * An ARP request that suppression answers (RFC 9161), with the full path's
 * checks before it (port security's included: seed §5); true when answered,
 * false, having written nothing, for the full path. Out of line and outside
 * fast.ts accessFast, which only declines ARP: a call on accessFast's path
 * made its registers spill on every frame (bench/README.md finding 18).
 * Called first thing by access.ts accessFrame; fast.ts accessFast (inlined into index.ts process) inlines
 * arpAnswerAt, the reply too (issue 18: three calls deep, the answered
 * request spent a quarter of its time on calls and spills).
 */
export function arpAnswer(port: u32, p: usize, len: u32, hh: usize): bool {
  return arpAnswerAt(port, p, len, hh);
}

/** arpAnswer's body, with the frame's record at hh (tables/index.ts frameRec). */
@inline export function arpAnswerAt(port: u32, p: usize, len: u32, hh: usize): bool {
  // accessVn's checks, made once by the prefetch pass (pipeline/prefetch.ts),
  // which left the VN in the frame's record (issue 16: parse once)
  if (slowOnly) return false;
  const vn1 = load<u32>(hh, FR_VN);
  if (vn1 == 0) return false;
  const vn = vn1 - 1;
  if (dot1qTypeRaw(p) != raw16(ETHERTYPE_ARP)) return false;
  const flags = <u32>load<u8>(vnPtr(vn), VN_FLAGS);
  if ((flags & VNF_ARPSUP) == 0) return false;
  if ((<u32>load<u8>(vnPtr(vn), VN_FEAT) & FEAT_GLEAN) != 0) return false; // gleaning decides the source first (glean.ts)
  if (len < DOT1Q_HLEN + ARP_LEN) return false;
  const a = p + DOT1Q_HLEN;
  if (!isArpRequest(a)) return false;
  const sv = macLookupAt(vn, macRaw(p + 6), load<u32>(hh)); // FR_VN set: both homes are in the record
  if ((sv & (MK_KIND | ML_ACTIVE)) == MK_LOCAL) return false; // an inactive VNIC: dropped there
  if ((flags & VNF_PORTSEC) != 0) {
    // seed §5 for ARP: the sender hardware address is the source MAC, the
    // sender IP is bound to it (0.0.0.0, an RFC 5227 probe, passes)
    if ((sv & MK_KIND) != MK_LOCAL) return false;
    if (((sv >> ML_PORT_SHIFT) & ML_PORT_MASK) != port) return false;
    if (macRaw(a + ARP_SHA) != macRaw(p + 6)) return false;
    if (load<u32>(a + ARP_SPA) != 0) {
      // the sender's home the prefetch pass left in the destination's place
      // (a broadcast request looks no destination up)
      const sh = (<u32>macRaw(p) & 1) != 0 ? load<u32>(hh, 4) : NO_HOME;
      if (macWire(ip4LookupHome(vn, a + ARP_SPA, sh)) != macRaw(p + 6)) return false;
    }
  }
  // The prefetch pass's home (pipeline/prefetch.ts warmIpSlots computes it
  // for every frame with a fast-path VN whose VN has ARP suppression, at
  // least this long, as checked above): no fallback's hashing on the path
  // (issue 18, session 11; as port security's source, sixth round).
  const m = ip4LookupAt(vn, a + ARP_TPA, load<u32>(hh, FR_IP));
  if (m == u64.MAX_VALUE) return false; // unknown target: flooded there
  ctrInc(vnCtr + (<usize>vn * VN_CTR << 3), VC_RX, 1);
  arpReplyAt(port, ld16(p + 14), p, m, vn);
  return true;
}

/**
 * An ARP request of Ethernet/IPv4 addresses whose sender and target IPs
 * differ (access.ts, RFC 9161). Its first 8 bytes (htype Ethernet, ptype
 * IPv4, hlen 6, plen 4, op request) as one 8-byte compare (issue 18,
 * session 11): four 16-bit compares with a constant were four loads that
 * V8 13.6's Turboshaft made twice each (a load kept for its trap, the
 * compare loading again).
 */
@inline function isArpRequest(a: usize): bool {
  if (load<u64>(a) != ARP_REQ_HEAD) return false;
  return load<u32>(a + ARP_SPA) != load<u32>(a + ARP_TPA);
}
/** htype 1, ptype 0x0800, hlen 6, plen 4, op 1 (ARP_OP at 6) as they lie on the wire, read little-endian. */
// bytes 00 01, 08 00, 06 04, 00 01
const ARP_REQ_HEAD: u64 = 0x0100_0406_0008_0100;

/**
 * True unless l3 holds a neighbour solicitation we may answer: ICMPv6 type
 * 135, code 0, hop limit 255 (RFC 4861 §7.1.1), a full target, and a source
 * that is not :: (DAD probes, RFC 4862 §5.4, are flooded so the owner can
 * defend its address).
 */
export function isDadOrNotNs(l3: usize, l3len: u32): bool {
  if (l3len < 40 + 24) return true;
  if (<u32>load<u8>(l3 + 6) != IPPROTO_ICMPV6 || <u32>load<u8>(l3 + 7) != 255) return true;
  if (<u32>load<u8>(l3 + 40) != ND_NS || <u32>load<u8>(l3 + 41) != 0) return true;
  const plen = ld16(l3 + 4);
  if (plen < 24 || <u32>40 + plen > l3len) return true;
  if (load<u8>(l3 + 48) == 0xff) return true; // a multicast target is invalid (§7.1.1)
  if (load<u64>(l3 + 8) == 0 && load<u64>(l3 + 16) == 0) return true;
  // §7.1.1: the ICMP checksum must be valid
  let s: u64 = <u64>plen + <u64>IPPROTO_ICMPV6;
  s = csumAdd(s, l3 + 8, 32);
  s = csumAdd(s, l3 + 40, plen);
  return csumFold(s) != 0xffff;
}

/** The solicited neighbour advertisement (RFC 4861 §4.4, §7.2.4) answering the NS at p. */
export function ndReply(port: u32, tci: u32, p: usize, mac: u64, vn: u32): void {
  const h = nextHdr();
  copy6(h, p + 6);
  stMac(h + 6, mac);
  st16(h + 12, ETHERTYPE_VLAN);
  st16(h + 14, tci);
  st16(h + 16, ETHERTYPE_IPV6);
  writeNa(h + 18, p + 18, mac);
  commit(port, 18 + 40 + NA_LEN, p, 0, vn);
}

export { ETHERTYPE_IPV4 };
