// Address parsing shared by the data plane host and the control plane:
// MACs per PROTOCOL.md §2 ("02:00:5e:10:00:01"), IPv4/IPv6 addresses and
// CIDR prefixes as network-order bytes.
import { isIPv6 } from "node:net";

export interface Mac { hi: number; lo: number }
export interface Ip { is6: boolean; bytes: Uint8Array; prefix: number | null; text: string }

// Hex digit values by char code (-1 = not a hex digit). Parsing is on the
// restart path (a million bindings reprogrammed), so no regex, no split.
const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) { HEX[65 + i] = 10 + i; HEX[97 + i] = 10 + i; }

function hexByte(s: string, i: number): number {
  const a = s.charCodeAt(i), b = s.charCodeAt(i + 1);
  const x = a < 128 ? HEX[a] : -1, y = b < 128 ? HEX[b] : -1;
  return x < 0 || y < 0 ? -1 : (x << 4) | y;
}

export function parseMac(s: string): Mac | null {
  if (typeof s !== "string" || s.length !== 17) return null;
  let hi = 0, lo = 0;
  for (let k = 0; k < 6; k++) {
    if (k > 0 && s.charCodeAt(3 * k - 1) !== 58) return null; // ':'
    const b = hexByte(s, 3 * k);
    if (b < 0) return null;
    if (k < 2) hi = (hi << 8) | b; else lo = ((lo << 8) | b) >>> 0;
  }
  return { hi, lo };
}

/** Dotted-quad IPv4 into b[0..4); false when malformed (no leading zeros, RFC 6943 §3.1.1). */
function parse4(s: string, b: Uint8Array): boolean {
  let part = 0, val = 0, digits = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 3) return false;
      b[part++] = val; val = 0; digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && val === 0) return false;
      val = val * 10 + (c - 48);
      if (++digits > 3 || val > 255) return false;
    } else return false;
  }
  return part === 4;
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

const TMP4 = new Uint8Array(4);

/**
 * A plain dotted-quad IPv4 address as an unsigned 32-bit number (network order:
 * the first byte is the top byte), or -1 when `s` is anything else (IPv6, a
 * prefix, malformed: use parseIp). No allocation: a restart reprograms a
 * million of them (issue 4).
 */
export function ip4Value(s: string): number {
  if (typeof s !== "string" || s.length > 15 || !parse4(s, TMP4)) return -1;
  return ((TMP4[0] << 24) | (TMP4[1] << 16) | (TMP4[2] << 8) | TMP4[3]) >>> 0;
}

/**
 * A unicast MAC (as parseMac + isUnicastMac accept) into hi[i], lo[i] (lo as
 * its signed 32-bit pattern); false otherwise. No allocation (issue 4 restart).
 */
export function unicastMacInto(s: string, hi: Int32Array, lo: Int32Array, i: number): boolean {
  if (typeof s !== "string" || s.length !== 17) return false;
  let h = 0, l = 0;
  for (let k = 0; k < 6; k++) {
    if (k > 0 && s.charCodeAt(3 * k - 1) !== 58) return false; // ':'
    const b = hexByte(s, 3 * k);
    if (b < 0) return false;
    if (k < 2) h = (h << 8) | b; else l = (l << 8) | b;
  }
  if ((h & 0x0100) !== 0 || (h === 0 && l === 0)) return false;
  hi[i] = h; lo[i] = l;
  return true;
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
  if (addr.length <= 15 && parse4(addr, TMP4)) {
    if (prefix !== null && prefix > 32) return null;
    const bytes = new Uint8Array(16);
    bytes[0] = TMP4[0]; bytes[1] = TMP4[1]; bytes[2] = TMP4[2]; bytes[3] = TMP4[3];
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
