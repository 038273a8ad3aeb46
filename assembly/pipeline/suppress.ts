// ARP and neighbour-discovery suppression (RFC 9161 §3): the NVE answers for
// bindings it knows, out of the port and tag the request came from.
import { ld16, st16, stMac, csumAdd, csumFold, raw16 } from "../util";
import { nextHdr, commit } from "./emit";
import { ETHERTYPE_VLAN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../proto/ethernet";
import { ARP_SHA, ARP_SPA, ARP_TPA, ARP_OP_REPLY } from "../proto/arp";
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
 * byte-swapped once, not twice field by field; eleven stores, not twenty):
 *   0  requester's MAC (from the request's source)  6  mac  12  0x8100  14 TCI
 *   16 0x0806  18 htype 1, ptype 0x0800, hlen 6, plen 4, op 2  26 sha = mac
 *   32 spa = the request's tpa  36 tha = the request's sha  42 tpa = its spa
 *   46 zeros to 64
 */
export function arpReply(port: u32, tci: u32, p: usize, mac: u64, vn: u32): void {
  const h = nextHdr();
  const a = p + 18;
  const m = bswap<u64>(mac) >> 16; // the MAC's 6 bytes as they lie on the wire, read little-endian
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
