// Ranges: an `ip` that is a CIDR prefix, for a VNIC that terminates a range (a
// load balancer's VIPs, PROTOCOL.md §2 `ip`). The control plane keeps them
// apart between VNICs of a VN (address-conflict) so the data plane's
// longest-prefix lookup (assembly/tables/index.ts prefixLookup) never has to
// choose between two VNICs for one address (PROTOCOL.md §2 Authority).
import { parseIp, type Ip } from "../domain/addr.js";

/** The prefix of an `ip` text, or null for a host address (no "/", or /32 and /128, which are exact bindings). */
export function rangeOf(ip: string): Ip | null {
  if (!ip.includes("/")) return null;
  const p = parseIp(ip);
  if (!p || p.prefix === null || p.prefix === (p.is6 ? 128 : 32)) return null;
  return p;
}

/** How many ranges an address list holds. */
export function countRanges(ips: readonly string[]): number {
  let n = 0;
  for (const ip of ips) if (ip.includes("/") && rangeOf(ip)) n++;
  return n;
}

/** Whether address or prefix `a` and `b` (parsed) share an address: one contains the other. */
export function overlaps(a: Ip, b: Ip): boolean {
  if (a.is6 !== b.is6) return false;
  const full = a.is6 ? 128 : 32;
  const bits = Math.min(a.prefix ?? full, b.prefix ?? full);
  for (let i = 0; i < bits; i++) {
    const m = 0x80 >> (i & 7);
    if ((a.bytes[i >> 3] & m) !== (b.bytes[i >> 3] & m)) return false;
  }
  return true;
}
