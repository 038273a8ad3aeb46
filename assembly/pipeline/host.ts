// The underlay as a host on its network (issue 11): the NVE owns underlay.ip,
// so it answers ARP (RFC 826) and IPv6 neighbour solicitation (RFC 4861
// §7.2.3) for it itself, and hands the ARP replies and neighbour
// advertisements addressed to it to the host's neighbour cache (the punt
// area below; host/underlay/neighbours.ts), which resolves the next hops.
import { ld16, st16, st32, stMac, csumAdd, csumFold, raw16 } from "../util";
import { nextHdr, commitHost } from "./emit";
import { ETHERTYPE_ARP, ETHERTYPE_IPV6 } from "../proto/ethernet";
import { ARP_OP, ARP_SHA, ARP_SPA, ARP_TPA, ARP_LEN, ARP_OP_REQUEST, ARP_OP_REPLY } from "../proto/arp";
import { IPPROTO_ICMPV6 } from "../proto/ipv4";
import { ND_NS, ND_NA, NA_LEN } from "../proto/icmp6";
import { writeNa } from "./na";
import { ulMac, ulIs6, ulIp0, ulIp1 } from "./underlay";
import { punt, PUNTED } from "./punt";
import { macRaw } from "../tables/index";
import * as D from "../drops";

/** True when the frame was ARP (answered, punted or dropped here). */
export function underlayArp(port: u32, p: usize, len: u32): u32 {
  if (len < 14 + ARP_LEN) return D.D_TRUNCATED;
  const a = p + 14;
  // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4
  if (ld16(a) != 1 || ld16(a + 2) != 0x0800 || ld16(a + 4) != 0x0604) return D.D_BAD_ARP;
  if (ulIs6) return D.D_ARP_NOT_FOR_US;
  // A gratuitous ARP (sender IP = target IP, RFC 5227 §3 "ARP Announcement")
  // is for every host: a neighbour announcing a new MAC (a router replaced,
  // a VRRP failover) updates our cache (RFC 826 merge; the cache decides).
  if (load<u32>(a + ARP_SPA) == load<u32>(a + ARP_TPA) && <u64>load<u32>(a + ARP_TPA) != ulIp0) {
    punt(port, p, len);
    return PUNTED;
  }
  if (<u64>load<u32>(a + ARP_TPA) != ulIp0) return D.D_ARP_NOT_FOR_US;
  const op = ld16(a + ARP_OP);
  if (op == ARP_OP_REQUEST) {
    // RFC 826 "Packet Reception": swap, fill in our address, answer the sender
    const h = nextHdr();
    store<u32>(h, load<u32>(a + ARP_SHA));
    store<u16>(h + 4, load<u16>(a + ARP_SHA + 4));
    stMac(h + 6, ulMacBe());
    st16(h + 12, ETHERTYPE_ARP);
    const r = h + 14;
    st32(r, 0x00010800);
    st32(r + 4, 0x06040000 | ARP_OP_REPLY);
    stMac(r + ARP_SHA, ulMacBe());
    store<u32>(r + ARP_SPA, load<u32>(a + ARP_TPA));
    store<u32>(r + 18, load<u32>(a + ARP_SHA));
    store<u16>(r + 22, load<u16>(a + ARP_SHA + 4));
    store<u32>(r + ARP_TPA, load<u32>(a + ARP_SPA));
    // pad to the 60-byte minimum (IEEE 802.3, without FCS)
    store<u16>(h + 42, 0);
    store<u64>(h + 44, 0);
    store<u64>(h + 52, 0);
    commitHost(port, 60);
    // The requester's address is worth knowing too (RFC 826: "merge"): the cache decides.
    punt(port, p, len);
    return PUNTED;
  }
  if (op == ARP_OP_REPLY) {
    if (macRaw(p) != ulMac) return D.D_NOT_OUR_MAC;
    punt(port, p, len);
    return PUNTED;
  }
  return D.D_BAD_ARP;
}

/** Our MAC as the 48-bit big-endian number stMac takes. */
@inline function ulMacBe(): u64 {
  return bswap<u64>(ulMac << 16);
}

/**
 * A neighbour solicitation for underlay.ip (answered) or an advertisement to
 * us (punted) in the IPv6 frame at p; returns OK_NOT_ND when it is neither, so
 * the frame goes on to the tunnel checks.
 */
export const OK_NOT_ND: u32 = 0xfffffffe;
export function underlayNd(port: u32, p: usize, len: u32): u32 {
  if (!ulIs6 || len < 14 + 40 + 24) return OK_NOT_ND;
  const ip = p + 14;
  if (<u32>load<u8>(ip + 6) != IPPROTO_ICMPV6) return OK_NOT_ND;
  const ic = ip + 40;
  const type = <u32>load<u8>(ic);
  if (type != ND_NS && type != ND_NA) return OK_NOT_ND;
  // RFC 4861 §7.1.1 / §7.1.2: hop limit 255, code 0, a valid checksum
  const plen = ld16(ip + 4);
  if (<u32>load<u8>(ip + 7) != 255 || <u32>load<u8>(ic + 1) != 0 || plen < 24 || <u32>54 + plen > len) return D.D_BAD_ND;
  let s: u64 = <u64>plen + <u64>IPPROTO_ICMPV6;
  s = csumAdd(s, ip + 8, 32);
  s = csumAdd(s, ic, plen);
  if (csumFold(s) != 0xffff) return D.D_BAD_ND;
  if (type == ND_NA) {
    // An advertisement of a neighbour's address (its target), solicited by
    // us (sent to underlay.ip) or unsolicited to all nodes (RFC 4861 §7.2.6,
    // a new MAC announced): the cache decides.
    const toUs = load<u64>(ip + 24) == ulIp0 && load<u64>(ip + 32) == ulIp1;
    const toAll = load<u64>(ip + 24) == 0x02ff && load<u64>(ip + 32) == <u64>0x0100000000000000; // ff02::1
    if (!toUs && !toAll) return D.D_ARP_NOT_FOR_US;
    punt(port, p, len);
    return PUNTED;
  }
  if (load<u64>(ic + 8) != ulIp0 || load<u64>(ic + 16) != ulIp1) return D.D_ARP_NOT_FOR_US;
  // An NS from :: is a DAD probe (RFC 4862 §5.4): our address is taken by
  // us, and the prober learns it from the NA we would send to all nodes;
  // kept simple: probes are left unanswered and counted.
  if (load<u64>(ip + 8) == 0 && load<u64>(ip + 16) == 0) return D.D_ARP_NOT_FOR_US;
  const h = nextHdr();
  store<u32>(h, load<u32>(p + 6)); // to the soliciting node's MAC
  store<u16>(h + 4, load<u16>(p + 10));
  stMac(h + 6, ulMacBe());
  st16(h + 12, ETHERTYPE_IPV6);
  writeNa(h + 14, ip, ulMacBe());
  commitHost(port, 14 + 40 + NA_LEN);
  punt(port, p, len); // the solicitor's link-layer address (RFC 4861 §7.2.3)
  return PUNTED;
}

export { raw16 };
