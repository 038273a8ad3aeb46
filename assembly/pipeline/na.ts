// The solicited neighbour advertisement (RFC 4861 §4.4, §7.2.4), written by
// both answerers of a neighbour solicitation: ARP/ND suppression for a VNIC's
// address (suppress.ts ndReply, RFC 9161 §3) and the underlay host for
// underlay.ip (host.ts underlayNd). Each writes its own Ethernet header (an
// 802.1Q-tagged one toward a VNIC, an untagged one on the underlay).
import { st16, st32, stMac, csumAdd, csumFold } from "../util";
import { IPPROTO_ICMPV6 } from "../proto/ipv4";
import { ND_NA, ND_OPT_TARGET_LLADDR, NA_FLAG_SOLICITED, NA_FLAG_OVERRIDE, NA_LEN } from "../proto/icmp6";

/**
 * Writes at ip the IPv6 header and the NA answering the solicitation whose
 * IPv6 header is at ns (already checked by the caller): from the solicited
 * target address to the soliciting node, Solicited and Override set, with
 * `mac` (big-endian, as stMac takes it) as the target link-layer address
 * option. 40 + NA_LEN bytes.
 */
export function writeNa(ip: usize, ns: usize, mac: u64): void {
  const target = ns + 40 + 8; // the NS's target address (RFC 4861 §4.3)
  st32(ip, 0x60000000);
  st16(ip + 4, NA_LEN);
  store<u8>(ip + 6, <u8>IPPROTO_ICMPV6);
  store<u8>(ip + 7, 255); // hop limit 255 (§7.1.2)
  v128.store(ip + 8, v128.load(target)); // source: the target address
  v128.store(ip + 24, v128.load(ns + 8)); // destination: the soliciting node
  const ic = ip + 40;
  st32(ic, ND_NA << 24); // type, code 0, checksum 0 for now
  st32(ic + 4, NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE);
  v128.store(ic + 8, v128.load(target));
  store<u8>(ic + 24, <u8>ND_OPT_TARGET_LLADDR);
  store<u8>(ic + 25, 1);
  stMac(ic + 26, mac);
  // checksum over the pseudo-header (RFC 8200 §8.1) and the message
  let s: u64 = <u64>NA_LEN + <u64>IPPROTO_ICMPV6;
  s = csumAdd(s, ip + 8, 32);
  s = csumAdd(s, ic, NA_LEN);
  st16(ic + 2, ~csumFold(s) & 0xffff);
}
