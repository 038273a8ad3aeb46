// Address syntax of PROTOCOL.md §2, shared by the ajv formats and the state code:
// MACs are unicast and non-zero; IPs are IPv4/IPv6 addresses or CIDR prefixes
// whose host bits are zero. Everything is normalised to one canonical text form
// (lower-case MAC, compressed IPv6) so the same address is one key everywhere.
import { isIPv4, isIPv6 } from "node:net";

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

export function isUnicastMac(s: string): boolean {
  if (!MAC_RE.test(s)) return false;
  const first = parseInt(s.slice(0, 2), 16);
  if (first & 1) return false; // I/G bit: group address (IEEE 802 §8.2)
  return s.replace(/[:0]/g, "") !== "";
}

export function normMac(s: string): string {
  return s.toLowerCase();
}

function v4ToInt(s: string): number {
  return s.split(".").reduce((a, o) => a * 256 + Number(o), 0);
}

function v6ToBig(s: string): bigint {
  const canon = new URL(`http://[${s}]`).hostname.slice(1, -1);
  let [head, tail] = canon.includes("::") ? canon.split("::") : [canon, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  return groups.reduce((a, g) => (a << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** An IPv4/IPv6 address or a prefix with zero host bits. */
export function isIpOrPrefix(s: string): boolean {
  if (s.length > 49) return false;
  const slash = s.indexOf("/");
  const addr = slash < 0 ? s : s.slice(0, slash);
  const v4 = isIPv4(addr);
  const v6 = !v4 && isIPv6(addr) && !addr.includes("%");
  if (!v4 && !v6) return false;
  if (slash < 0) return true;
  const lenText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText)) return false;
  const len = Number(lenText);
  if (v4) {
    if (len > 32) return false;
    const hostBits = 32 - len;
    return hostBits === 0 || v4ToInt(addr) % 2 ** hostBits === 0;
  }
  if (len > 128) return false;
  const hostMask = (1n << BigInt(128 - len)) - 1n;
  return (v6ToBig(addr) & hostMask) === 0n;
}

/** Canonical text: IPv6 compressed and lower case ("2001:DB8:0::1" → "2001:db8::1"). */
export function normIp(s: string): string {
  const slash = s.indexOf("/");
  const addr = slash < 0 ? s : s.slice(0, slash);
  if (!isIPv6(addr)) return s;
  const canon = new URL(`http://[${addr}]`).hostname.slice(1, -1);
  return slash < 0 ? canon : `${canon}${s.slice(slash)}`;
}
