// Address parsing shared by the data plane host and the control plane:
// MACs per PROTOCOL.md §2 ("02:00:5e:10:00:01"), IPv4/IPv6 addresses and
// CIDR prefixes as network-order bytes.
import { isIPv4, isIPv6 } from "node:net";

export interface Mac { hi: number; lo: number; text: string }
export interface Ip { is6: boolean; bytes: Uint8Array; prefix: number | null; text: string }

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

export function parseMac(s: string): Mac | null {
  if (typeof s !== "string" || !MAC_RE.test(s)) return null;
  const b = s.split(":").map((x) => parseInt(x, 16));
  return { hi: (b[0] << 8) | b[1], lo: ((b[2] << 24) | (b[3] << 16) | (b[4] << 8) | b[5]) >>> 0, text: s.toLowerCase() };
}

/** A unicast MAC that may name a VNIC (PROTOCOL.md §2: not multicast, not all-zero). */
export function isUnicastMac(m: Mac): boolean {
  return (m.hi & 0x0100) === 0 && (m.hi !== 0 || m.lo !== 0);
}

export function macBytes(m: Mac): Uint8Array {
  return Uint8Array.of(m.hi >> 8, m.hi & 0xff, m.lo >>> 24, (m.lo >>> 16) & 0xff, (m.lo >>> 8) & 0xff, m.lo & 0xff);
}

function v6Bytes(s: string): Uint8Array {
  const out = new Uint8Array(16);
  let text = s;
  // an embedded IPv4 tail (::ffff:192.0.2.1)
  const m = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (m) {
    const q = m[2].split(".").map(Number);
    tail = [(q[0] << 8) | q[1], (q[2] << 8) | q[3]];
    text = m[1] + "0:0";
  }
  const [head, rest] = text.includes("::") ? text.split("::") : [text, null];
  const h = head ? head.split(":") : [];
  const r = rest === null ? [] : rest ? rest.split(":") : [];
  const words = rest === null ? h : [...h, ...Array(8 - h.length - r.length).fill("0"), ...r];
  words.forEach((w, i) => { const v = parseInt(w, 16); out[2 * i] = v >> 8; out[2 * i + 1] = v & 0xff; });
  if (tail.length) { out[12] = tail[0] >> 8; out[13] = tail[0] & 0xff; out[14] = tail[1] >> 8; out[15] = tail[1] & 0xff; }
  return out;
}

/** An address, or with allowPrefix a CIDR prefix; null when malformed. */
export function parseIp(s: string, allowPrefix = true): Ip | null {
  if (typeof s !== "string" || s.length > 49) return null;
  let addr = s;
  let prefix: number | null = null;
  const slash = s.indexOf("/");
  if (slash >= 0) {
    if (!allowPrefix) return null;
    addr = s.slice(0, slash);
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return null;
    prefix = Number(p);
  }
  if (isIPv4(addr)) {
    if (prefix !== null && prefix > 32) return null;
    const bytes = new Uint8Array(16);
    addr.split(".").forEach((x, i) => { bytes[i] = Number(x); });
    if (prefix !== null && hostBitsSet(bytes, 4, prefix)) return null;
    return { is6: false, bytes, prefix, text: s };
  }
  if (isIPv6(addr) && !addr.includes("%")) {
    if (prefix !== null && prefix > 128) return null;
    const bytes = v6Bytes(addr);
    if (prefix !== null && hostBitsSet(bytes, 16, prefix)) return null;
    return { is6: true, bytes, prefix, text: s };
  }
  return null;
}

/** "10.1.2.1/28" is not a prefix: host bits must be zero. */
function hostBitsSet(b: Uint8Array, len: number, prefix: number): boolean {
  for (let bit = prefix; bit < len * 8; bit++) if (b[bit >> 3] & (0x80 >> (bit & 7))) return true;
  return false;
}

export function ipText(b: Uint8Array, is6: boolean): string {
  if (!is6) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const w: string[] = [];
  for (let i = 0; i < 16; i += 2) w.push(((b[i] << 8) | b[i + 1]).toString(16));
  return w.join(":").replace(/(^|:)0(:0)+(:|$)/, "::").replace(/:{3,}/, "::");
}
