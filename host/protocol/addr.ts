// Address syntax of PROTOCOL.md §2, shared by the ajv formats and the state code:
// MACs are unicast and non-zero; IPs are IPv4/IPv6 addresses or CIDR prefixes
// whose host bits are zero. Everything is normalised to one canonical text form
// (lower-case MAC, compressed IPv6) so the same address is one key everywhere.
import { isIPv6 } from "node:net";
import { parseMac, parseIp, isUnicastMac as unicast } from "../dataplane/addr.js";

// One parser for addresses: the data plane's (host/dataplane/addr.ts), so
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
  if (!isIPv6(addr)) return s;
  const canon = new URL(`http://[${addr}]`).hostname.slice(1, -1);
  return slash < 0 ? canon : `${canon}${s.slice(slash)}`;
}
