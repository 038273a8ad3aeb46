// Address syntax of PROTOCOL.md §2, shared by the ajv formats and the state code:
// MACs are unicast and non-zero; IPs are IPv4/IPv6 addresses or CIDR prefixes
// whose host bits are zero. Everything is normalised to one canonical text form
// (lower-case MAC, compressed IPv6) so the same address is one key everywhere.
import { BlockList, isIP, isIPv6 } from "node:net";
import { parseMac, parseIp, isUnicastMac as unicast } from "./addr.js";

// One parser for addresses: host/domain/addr.ts (the data plane's too), so
// what the protocol accepts is exactly what the data plane can program.

export function isUnicastMac(s: string): boolean {
  const m = parseMac(s);
  return m !== null && unicast(m); // I/G bit clear (IEEE 802 §8.2), not all-zero
}

export function normMac(s: string): string {
  return s.toLowerCase();
}

/** An IPv4/IPv6 address or a prefix with zero host bits. */
export function isIpOrPrefix(s: string): boolean {
  return parseIp(s) !== null;
}

/** Canonical text: IPv6 compressed and lower case ("2001:DB8:0::1" → "2001:db8::1"). */
export function normIp(s: string): string {
  const slash = s.indexOf("/");
  const addr = slash < 0 ? s : s.slice(0, slash);
  // no ':' is no IPv6 address: an IPv4 one skips isIPv6's long regular expression (issue 15: ~2 µs per attach)
  if (!addr.includes(":") || !isIPv6(addr)) return s;
  const canon = new URL(`http://[${addr}]`).hostname.slice(1, -1);
  return slash < 0 ? canon : `${canon}${s.slice(slash)}`;
}

// Addresses that are not one host's unicast address: unspecified, loopback,
// multicast, limited broadcast and the reserved 240/4 (RFC 1122 §3.2.1.3,
// RFC 5771, RFC 1112 §4; RFC 4291 §2.4, §2.5.2, §2.5.3, §2.7). An underlay
// address (a VTEP, PROTOCOL.md §6) must be none of them.
const NOT_UNICAST = new BlockList();
NOT_UNICAST.addSubnet("0.0.0.0", 8, "ipv4");
NOT_UNICAST.addSubnet("127.0.0.0", 8, "ipv4");
NOT_UNICAST.addSubnet("224.0.0.0", 4, "ipv4");
NOT_UNICAST.addSubnet("240.0.0.0", 4, "ipv4");
NOT_UNICAST.addAddress("::", "ipv6");
NOT_UNICAST.addAddress("::1", "ipv6");
NOT_UNICAST.addSubnet("ff00::", 8, "ipv6");
// IPv4-mapped forms (RFC 4291 §2.5.5.2) of the IPv4 ranges above
for (const [a, n] of [["0.0.0.0", 8], ["127.0.0.0", 8], ["224.0.0.0", 4], ["240.0.0.0", 4]] as const) NOT_UNICAST.addSubnet(`::ffff:${a}`, 96 + n, "ipv6");

/** A plain IPv4/IPv6 address (no prefix) that names one host: not 0.0.0.0, loopback, multicast or broadcast. */
export function isUnicastIp(s: string): boolean {
  const v = isIP(s);
  if (v === 0) return false;
  return !NOT_UNICAST.check(s, v === 4 ? "ipv4" : "ipv6");
}
