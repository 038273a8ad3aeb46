// The ARP and neighbour-discovery frames the NVE's underlay neighbour cache
// sends and reads (issue 11; neighbours.ts). The data plane answers requests
// for underlay.ip itself (assembly/pipeline/host.ts) and hands every ARP
// packet / NS / NA for it to the host; this file builds the requests and reads
// what was handed over.
import { parseIp, parseMac, macBytes, ipText } from "../domain/addr.js";

const macText = (b: Uint8Array, o: number) => [...b.subarray(o, o + 6)].map((x) => x.toString(16).padStart(2, "0")).join(":");

/** RFC 1071 checksum of the concatenated parts. */
function inetSum(...parts: Uint8Array[]): number {
  let s = 0;
  for (const p of parts) {
    for (let i = 0; i + 1 < p.length; i += 2) s += (p[i] << 8) | p[i + 1];
    if (p.length & 1) s += p[p.length - 1] << 8;
  }
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/**
 * A request for `target` from (ourMac, ourIp): an ARP request (RFC 826),
 * broadcast or unicast to `to` (a probe), or an IPv6 neighbour solicitation
 * (RFC 4861 §4.3) to the target's solicited-node multicast address, or
 * unicast to `to`, with our link-layer address as its option.
 */
export function neighbourRequest(ourMac: string, ourIp: string, target: string, to?: string): Uint8Array {
  const me = macBytes(parseMac(ourMac)!);
  const src = parseIp(ourIp, false)!, dst = parseIp(target, false)!;
  if (src.is6 !== dst.is6) throw new Error(`next hop ${target} is not of underlay.ip's family (${ourIp})`);
  if (!src.is6) {
    const f = new Uint8Array(60);
    f.set(to ? macBytes(parseMac(to)!) : new Uint8Array(6).fill(0xff), 0);
    f.set(me, 6);
    f.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1], 12);
    f.set(me, 22);
    f.set(src.bytes, 28);
    f.set(dst.bytes, 38);
    return f;
  }
  // solicited-node multicast ff02::1:ffXX:XXXX and its MAC 33:33:ff:XX:XX:XX (RFC 4291 §2.7.1, RFC 2464 §7)
  const t = dst.bytes;
  const ipDst = to ? t : Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15]);
  const macDst = to ? macBytes(parseMac(to)!) : Uint8Array.of(0x33, 0x33, 0xff, t[13], t[14], t[15]);
  const icmp = new Uint8Array(32);
  icmp[0] = 135;
  icmp.set(t, 8);
  icmp[24] = 1; // source link-layer address option, 1 x 8 bytes
  icmp[25] = 1;
  icmp.set(me, 26);
  const pseudo = new Uint8Array(40);
  pseudo.set(src.bytes, 0);
  pseudo.set(ipDst, 16);
  pseudo[35] = 32;
  pseudo[39] = 58;
  const c = inetSum(pseudo, icmp);
  icmp[2] = c >> 8;
  icmp[3] = c & 0xff;
  const f = new Uint8Array(14 + 40 + 32);
  f.set(macDst, 0);
  f.set(me, 6);
  f.set([0x86, 0xdd, 0x60, 0, 0, 0, 0, 32, 58, 255], 12);
  f.set(src.bytes, 22);
  f.set(ipDst, 38);
  f.set(icmp, 54);
  return f;
}

/** What an ARP packet or NS/NA handed over by the data plane says: `ip` is at `mac`; `reply` for ARP replies and NAs. */
export function readNeighbourFrame(f: Uint8Array): { ip: string; mac: string; reply: boolean } | null {
  if (f.length < 14) return null;
  const type = (f[12] << 8) | f[13];
  if (type === 0x0806 && f.length >= 42) {
    const op = (f[20] << 8) | f[21];
    if (op !== 1 && op !== 2) return null;
    return { ip: ipText(f.subarray(28, 32), false), mac: macText(f, 22), reply: op === 2 };
  }
  if (type === 0x86dd && f.length >= 14 + 40 + 24) {
    const icmp = 54, t = f[icmp];
    // options after the 24-byte body: the source (NS, type 1) or target (NA, type 2) link-layer address
    let mac: string | undefined;
    for (let o = icmp + 24; o + 8 <= f.length && f[o + 1] > 0; o += f[o + 1] * 8) {
      if ((t === 135 && f[o] === 1) || (t === 136 && f[o] === 2)) mac = macText(f, o + 2);
    }
    if (t === 136 && mac) return { ip: ipText(f.subarray(icmp + 8, icmp + 24), true), mac, reply: true };
    if (t === 135 && mac) return { ip: ipText(f.subarray(22, 38), true), mac, reply: false };
  }
  return null;
}
