// Classic libpcap capture files: the format `tcpdump -w` and `tshark -F pcap`
// write, and the one `nvedge pcap` reads and writes (INTERFACES.md).
//
// File layout (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html §4, §5):
//
//   global header, 24 bytes
//     0  u32 magic         0xa1b2c3d4 (µs timestamps) or 0xa1b23c4d (ns), in
//                          the writer's byte order: read as 0xd4c3b2a1 the
//                          file is the other endianness
//     4  u16 version major 2
//     6  u16 version minor 4
//     8  u32 reserved      (thiszone, ignored)
//    12  u32 reserved      (sigfigs, ignored)
//    16  u32 snaplen
//    20  u32 link type     1 = LINKTYPE_ETHERNET (the only one accepted here)
//
//   per packet, 16-byte record header then incl_len bytes of frame
//     0  u32 ts_sec
//     4  u32 ts_usec (ts_nsec in a nanosecond file)
//     8  u32 incl_len      bytes stored
//    12  u32 orig_len      bytes on the wire
//
// We always write little-endian, microsecond, LINKTYPE_ETHERNET. We read both
// byte orders and both timestamp resolutions (nanoseconds are truncated to
// microseconds). Every malformed file is rejected with a PcapError naming the
// file and the byte offset at fault; nothing is returned from a bad file.
import { readFileSync, writeFileSync } from "node:fs";
import { parsePcapng } from "./pcapng.js";

export const PCAP_MAGIC_USEC = 0xa1b2c3d4;
export const PCAP_MAGIC_NSEC = 0xa1b23c4d;
export const LINKTYPE_ETHERNET = 1;
export const GLOBAL_HEADER_LEN = 24;
export const RECORD_HEADER_LEN = 16;
/** Largest snaplen libpcap itself writes (MAXIMUM_SNAPLEN in pcap-int.h); larger records mean a corrupt file. */
export const MAX_SNAPLEN = 262144;
const PCAPNG_MAGIC = 0x0a0d0d0a;

export interface PcapPacket {
  /** The captured bytes (a copy, never a view into the file buffer). */
  frame: Uint8Array;
  /** Seconds since the epoch. */
  tsSec: number;
  /** Microseconds within the second, 0..999999. */
  tsUsec: number;
  /** Length on the wire; >= frame.length (larger when the capture was truncated by its snaplen). */
  origLen: number;
}

export interface PcapFile {
  linkType: number;
  snaplen: number;
  /** True when the file was written big-endian. */
  bigEndian: boolean;
  /** True when the file's timestamps were in nanoseconds (converted to microseconds in `packets`). */
  nanosecond: boolean;
  packets: PcapPacket[];
}

export class PcapError extends Error {
  constructor(public file: string, public offset: number, public reason: string) {
    super(`${file}: offset ${offset}: ${reason}`);
    this.name = "PcapError";
  }
}

/** Parses a classic pcap file (or a pcapng one, host/pcap/pcapng.ts) held in memory. `file` only names it in errors. */
export function parsePcap(input: Uint8Array, file = "<buffer>"): PcapFile {
  // A plain Uint8Array view: Buffer#slice would share memory, and packets must be copies.
  const buf = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  if (buf.length < GLOBAL_HEADER_LEN)
    throw new PcapError(file, 0, `truncated global header: ${buf.length} of ${GLOBAL_HEADER_LEN} bytes`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magicLE = dv.getUint32(0, true);
  let little: boolean;
  let nanosecond: boolean;
  if (magicLE === PCAP_MAGIC_USEC || magicLE === PCAP_MAGIC_NSEC) {
    little = true;
    nanosecond = magicLE === PCAP_MAGIC_NSEC;
  } else {
    const magicBE = dv.getUint32(0, false);
    if (magicBE === PCAP_MAGIC_USEC || magicBE === PCAP_MAGIC_NSEC) {
      little = false;
      nanosecond = magicBE === PCAP_MAGIC_NSEC;
    } else if (magicLE === PCAPNG_MAGIC) {
      // pcapng (what Wireshark writes by default; issue 13): its own reader.
      return parsePcapng(buf, file);
    } else {
      throw new PcapError(file, 0, `bad magic 0x${magicBE.toString(16).padStart(8, "0")} (not a pcap file)`);
    }
  }
  const major = dv.getUint16(4, little);
  const minor = dv.getUint16(6, little);
  if (major !== 2) throw new PcapError(file, 4, `unsupported pcap version ${major}.${minor} (expected 2.4)`);
  const snaplen = dv.getUint32(16, little);
  // The upper bits of the link-type field carry the FCS length and flags
  // (draft-ietf-opsawg-pcap §4, LinkType and additional information); the
  // link type proper is the low 16 bits.
  const linkField = dv.getUint32(20, little);
  const linkType = linkField & 0xffff;
  if (linkType !== LINKTYPE_ETHERNET)
    throw new PcapError(file, 20, `link type ${linkType} is not Ethernet (1)`);
  if (linkField >>> 28 & 1)
    throw new PcapError(file, 20, `frames carry a ${(linkField >>> 29) * 2}-byte FCS, which is not supported`);

  const packets: PcapPacket[] = [];
  let off = GLOBAL_HEADER_LEN;
  while (off < buf.length) {
    if (buf.length - off < RECORD_HEADER_LEN)
      throw new PcapError(file, off, `truncated record header of packet ${packets.length + 1}: ${buf.length - off} of ${RECORD_HEADER_LEN} bytes`);
    const tsSec = dv.getUint32(off, little);
    let tsFrac = dv.getUint32(off + 4, little);
    const inclLen = dv.getUint32(off + 8, little);
    const origLen = dv.getUint32(off + 12, little);
    if (nanosecond) {
      if (tsFrac > 999_999_999) throw new PcapError(file, off + 4, `packet ${packets.length + 1}: nanoseconds ${tsFrac} out of range`);
      tsFrac = Math.floor(tsFrac / 1000);
    } else if (tsFrac > 999_999) {
      throw new PcapError(file, off + 4, `packet ${packets.length + 1}: microseconds ${tsFrac} out of range`);
    }
    if (inclLen > MAX_SNAPLEN)
      throw new PcapError(file, off + 8, `packet ${packets.length + 1}: captured length ${inclLen} exceeds ${MAX_SNAPLEN} (corrupt file)`);
    if (inclLen > origLen)
      throw new PcapError(file, off + 8, `packet ${packets.length + 1}: captured length ${inclLen} exceeds original length ${origLen}`);
    const data = off + RECORD_HEADER_LEN;
    if (buf.length - data < inclLen)
      throw new PcapError(file, data, `truncated packet ${packets.length + 1}: ${buf.length - data} of ${inclLen} bytes`);
    packets.push({ frame: buf.slice(data, data + inclLen), tsSec, tsUsec: tsFrac, origLen });
    off = data + inclLen;
  }
  return { linkType, snaplen, bigEndian: !little, nanosecond, packets };
}

/** Reads a classic pcap or a pcapng file; throws PcapError (file and offset) when it is unreadable or malformed. */
export function readPcap(file: string): PcapFile {
  let buf: Uint8Array;
  try {
    buf = readFileSync(file);
  } catch (e) {
    throw new PcapError(file, 0, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parsePcap(buf, file);
}

export interface EncodeOptions {
  snaplen?: number;
  /** Big-endian output (for tests of the reader; the default is little-endian). */
  bigEndian?: boolean;
}

/**
 * Encodes frames as a little-endian, microsecond, Ethernet pcap file. A bare
 * Uint8Array gets timestamp 0 and origLen = its length. A frame longer than
 * the snaplen is stored truncated, with its full length in origLen.
 */
export function encodePcap(packets: Iterable<Uint8Array | PcapPacket>, opts: EncodeOptions = {}): Uint8Array {
  const snaplen = opts.snaplen ?? MAX_SNAPLEN;
  const little = !opts.bigEndian;
  const list = [...packets].map((p) => (p instanceof Uint8Array ? { frame: p, tsSec: 0, tsUsec: 0, origLen: p.length } : p));
  let total = GLOBAL_HEADER_LEN;
  for (const p of list) total += RECORD_HEADER_LEN + Math.min(p.frame.length, snaplen);
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, PCAP_MAGIC_USEC, little);
  dv.setUint16(4, 2, little);
  dv.setUint16(6, 4, little);
  dv.setUint32(16, snaplen, little);
  dv.setUint32(20, LINKTYPE_ETHERNET, little);
  let off = GLOBAL_HEADER_LEN;
  list.forEach((p, i) => {
    if (!Number.isInteger(p.tsUsec) || p.tsUsec < 0 || p.tsUsec > 999_999)
      throw new RangeError(`packet ${i + 1}: tsUsec ${p.tsUsec} is not in 0..999999`);
    const incl = Math.min(p.frame.length, snaplen);
    dv.setUint32(off, p.tsSec >>> 0, little);
    dv.setUint32(off + 4, p.tsUsec, little);
    dv.setUint32(off + 8, incl, little);
    dv.setUint32(off + 12, Math.max(p.origLen, p.frame.length), little);
    out.set(p.frame.subarray(0, incl), off + RECORD_HEADER_LEN);
    off += RECORD_HEADER_LEN + incl;
  });
  return out;
}

/** Writes frames to `file` as classic pcap (see encodePcap). */
export function writePcap(file: string, packets: Iterable<Uint8Array | PcapPacket>, opts: EncodeOptions = {}): void {
  writeFileSync(file, encodePcap(packets, opts));
}
