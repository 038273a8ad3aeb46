// pcapng capture files (draft-ietf-opsawg-pcapng): what Wireshark and tshark
// write by default. `nvedge pcap` reads them (issue 13) and `nvedge capture
// --drops` writes them, with each frame's drop reason as its comment.
//
// A file is a sequence of blocks, each
//     0  u32 block type
//     4  u32 block total length  (a multiple of 4, repeated at the end)
//     8  body ...
//   -4  u32 block total length
// in the byte order set by the Section Header Block that opens each section:
//   SHB  0x0A0D0D0A  u32 byte-order magic 0x1A2B3C4D, u16 major 1, u16 minor,
//                    i64 section length (-1 = unknown), options
//   IDB  0x00000001  u16 link type, u16 reserved, u32 snaplen, options
//                    (if_name 2, if_tsresol 9: 10^-n or, top bit set, 2^-n s; default µs)
//   EPB  0x00000006  u32 interface id, u32 ts high, u32 ts low, u32 captured
//                    length, u32 original length, data padded to 4, options (opt_comment 1)
//   SPB  0x00000003  u32 original length, data (captured = min(orig, snaplen)), padded
// Options: u16 code, u16 length, value padded to 4; code 0 ends them.
// Other blocks (name resolution, statistics, ...) are skipped. Every
// malformed file is refused with a PcapError naming the file and the offset.
import { PcapError, LINKTYPE_ETHERNET, MAX_SNAPLEN, type PcapFile, type PcapPacket } from "./pcap.js";

export const PCAPNG_SHB = 0x0a0d0d0a;
const BOM = 0x1a2b3c4d;
const IDB = 1, SPB = 3, EPB = 6;
const OPT_COMMENT = 1, IF_NAME = 2, IF_TSRESOL = 9;

export interface PcapngPacket extends PcapPacket {
  /** opt_comment, when the block has one. */
  comment?: string;
  /** The interface's if_name, when it has one. */
  iface?: string;
}

interface Iface { linkType: number; snaplen: number; name?: string; /** timestamp units per second */ perSec: bigint }

/** Parses a pcapng file held in memory (every section; Ethernet interfaces only). */
export function parsePcapng(input: Uint8Array, file = "<buffer>"): Omit<PcapFile, "packets"> & { packets: PcapngPacket[] } {
  const buf = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const packets: PcapngPacket[] = [];
  let little = true;
  let ifaces: Iface[] = [];
  let sawShb = false;
  let bigEndian = false;
  let snaplen = 0;
  let off = 0;
  const text = new TextDecoder("utf-8", { fatal: false });
  while (off < buf.length) {
    if (buf.length - off < 12) throw new PcapError(file, off, `pcapng: truncated block header: ${buf.length - off} bytes`);
    const typeLE = dv.getUint32(off, true);
    if (typeLE === PCAPNG_SHB) {
      const bom = dv.getUint32(off + 8, true);
      if (bom === BOM) little = true;
      else if (bom === 0x4d3c2b1a) little = false;
      else throw new PcapError(file, off + 8, `pcapng: bad byte-order magic 0x${bom.toString(16)}`);
      sawShb = true;
      bigEndian ||= !little;
      ifaces = [];
    } else if (!sawShb) throw new PcapError(file, off, "pcapng: the file does not start with a Section Header Block");
    const type = dv.getUint32(off, little);
    const len = dv.getUint32(off + 4, little);
    if (len < 12 || len % 4 !== 0) throw new PcapError(file, off + 4, `pcapng: block total length ${len} is not a multiple of 4 of at least 12`);
    if (buf.length - off < len) throw new PcapError(file, off, `pcapng: truncated block: ${buf.length - off} of ${len} bytes`);
    if (dv.getUint32(off + len - 4, little) !== len) throw new PcapError(file, off + len - 4, `pcapng: the block's trailing length differs from ${len}`);
    const body = off + 8, end = off + len - 4;
    const options = (at: number, f: (code: number, v: Uint8Array) => void) => {
      while (at + 4 <= end) {
        const code = dv.getUint16(at, little), l = dv.getUint16(at + 2, little);
        if (code === 0) break;
        if (at + 4 + l > end) throw new PcapError(file, at, `pcapng: option ${code} of ${l} bytes runs past its block`);
        f(code, buf.subarray(at + 4, at + 4 + l));
        at += 4 + ((l + 3) & ~3);
      }
    };
    if (type === PCAPNG_SHB) {
      if (len < 28) throw new PcapError(file, off, `pcapng: section header of ${len} bytes (at least 28)`);
      const major = dv.getUint16(body + 4, little);
      if (major !== 1) throw new PcapError(file, body + 4, `pcapng: unsupported version ${major} (expected 1)`);
    } else if (type === IDB) {
      if (len < 20) throw new PcapError(file, off, `pcapng: interface block of ${len} bytes (at least 20)`);
      const linkType = dv.getUint16(body, little);
      if (linkType !== LINKTYPE_ETHERNET) throw new PcapError(file, body, `pcapng: interface ${ifaces.length}: link type ${linkType} is not Ethernet (1)`);
      const iface: Iface = { linkType, snaplen: dv.getUint32(body + 4, little), perSec: 1_000_000n };
      options(body + 8, (code, v) => {
        if (code === IF_NAME) iface.name = text.decode(v).replace(/\0+$/, "");
        if (code === IF_TSRESOL && v.length >= 1) {
          const r = v[0];
          iface.perSec = r & 0x80 ? 1n << BigInt(r & 0x7f) : 10n ** BigInt(r);
        }
      });
      snaplen = Math.max(snaplen, iface.snaplen);
      ifaces.push(iface);
    } else if (type === EPB || type === SPB) {
      const n = packets.length + 1;
      let iface: Iface, data: number, incl: number, orig: number, ts = 0n;
      if (type === EPB) {
        if (len < 32) throw new PcapError(file, off, `pcapng: packet ${n}: enhanced packet block of ${len} bytes (at least 32)`);
        const id = dv.getUint32(body, little);
        if (!ifaces[id]) throw new PcapError(file, body, `pcapng: packet ${n}: unknown interface ${id}`);
        iface = ifaces[id];
        ts = (BigInt(dv.getUint32(body + 4, little)) << 32n) | BigInt(dv.getUint32(body + 8, little));
        incl = dv.getUint32(body + 12, little);
        orig = dv.getUint32(body + 16, little);
        data = body + 20;
      } else {
        if (!ifaces[0]) throw new PcapError(file, body, `pcapng: packet ${n}: a simple packet block before any interface`);
        iface = ifaces[0];
        orig = dv.getUint32(body, little);
        incl = Math.min(orig, iface.snaplen || orig, end - (body + 4));
        data = body + 4;
      }
      if (incl > MAX_SNAPLEN) throw new PcapError(file, data - 8, `pcapng: packet ${n}: captured length ${incl} exceeds ${MAX_SNAPLEN} (corrupt file)`);
      if (data + incl > end) throw new PcapError(file, data, `pcapng: packet ${n}: ${incl} bytes run past its block`);
      if (incl > orig) throw new PcapError(file, data - 8, `pcapng: packet ${n}: captured length ${incl} exceeds original length ${orig}`);
      const sec = ts / iface.perSec;
      const usec = ((ts % iface.perSec) * 1_000_000n) / iface.perSec;
      const p: PcapngPacket = { frame: buf.slice(data, data + incl), tsSec: Number(sec), tsUsec: Number(usec), origLen: orig };
      if (iface.name !== undefined) p.iface = iface.name;
      if (type === EPB) options(data + ((incl + 3) & ~3), (code, v) => { if (code === OPT_COMMENT) p.comment = text.decode(v); });
      packets.push(p);
    }
    off += len;
  }
  if (!sawShb) throw new PcapError(file, 0, "pcapng: empty file");
  return { linkType: LINKTYPE_ETHERNET, snaplen, bigEndian, nanosecond: false, packets };
}

export interface PcapngOut extends PcapPacket {
  /** Interface (port) name: one Interface Description Block per distinct name, in order of appearance. */
  iface: string;
  comment?: string;
}

/** Encodes frames as a little-endian pcapng file: one section, an Ethernet interface per port (if_name), µs timestamps, comments. */
export function encodePcapng(packets: PcapngOut[], o: { app?: string } = {}): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const block = (type: number, body: Uint8Array) => {
    const len = 12 + body.length;
    const b = new Uint8Array(len);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, type, true);
    dv.setUint32(4, len, true);
    b.set(body, 8);
    dv.setUint32(len - 4, len, true);
    parts.push(b);
  };
  const opts = (list: [number, Uint8Array][]) => {
    if (!list.length) return new Uint8Array(0);
    const size = list.reduce((n, [, v]) => n + 4 + ((v.length + 3) & ~3), 4);
    const b = new Uint8Array(size);
    const dv = new DataView(b.buffer);
    let at = 0;
    for (const [code, v] of list) {
      dv.setUint16(at, code, true);
      dv.setUint16(at + 2, v.length, true);
      b.set(v, at + 4);
      at += 4 + ((v.length + 3) & ~3);
    }
    return b; // the last 4 bytes are opt_endofopt (zeros)
  };
  const cat = (...xs: Uint8Array[]) => {
    const out = new Uint8Array(xs.reduce((n, x) => n + x.length, 0));
    let at = 0;
    for (const x of xs) { out.set(x, at); at += x.length; }
    return out;
  };
  // SHB: byte-order magic, version 1.0, section length unknown; shb_userappl (4).
  const shb = new Uint8Array(16);
  const sdv = new DataView(shb.buffer);
  sdv.setUint32(0, BOM, true);
  sdv.setUint16(4, 1, true);
  sdv.setUint16(6, 0, true);
  sdv.setBigInt64(8, -1n, true);
  block(PCAPNG_SHB, cat(shb, opts([[4, enc.encode(o.app ?? "nvedge")]])));
  const ifIndex = new Map<string, number>();
  for (const p of packets) {
    if (ifIndex.has(p.iface)) continue;
    ifIndex.set(p.iface, ifIndex.size);
    const idb = new Uint8Array(8);
    const idv = new DataView(idb.buffer);
    idv.setUint16(0, LINKTYPE_ETHERNET, true);
    idv.setUint32(4, MAX_SNAPLEN, true);
    block(IDB, cat(idb, opts([[IF_NAME, enc.encode(p.iface)], [IF_TSRESOL, Uint8Array.of(6)]])));
  }
  for (const p of packets) {
    const head = new Uint8Array(20);
    const hdv = new DataView(head.buffer);
    const ts = BigInt(p.tsSec) * 1_000_000n + BigInt(p.tsUsec);
    hdv.setUint32(0, ifIndex.get(p.iface)!, true);
    hdv.setUint32(4, Number(ts >> 32n), true);
    hdv.setUint32(8, Number(ts & 0xffffffffn), true);
    hdv.setUint32(12, p.frame.length, true);
    hdv.setUint32(16, Math.max(p.origLen, p.frame.length), true);
    const data = new Uint8Array((p.frame.length + 3) & ~3);
    data.set(p.frame);
    block(EPB, cat(head, data, opts(p.comment !== undefined ? [[OPT_COMMENT, enc.encode(p.comment)]] : [])));
  }
  return cat(...parts);
}
