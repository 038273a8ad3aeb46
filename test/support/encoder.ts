// An independent encoder of the frames the data plane must produce and accept.
//
// Written from STANDARDS.md and the RFCs, field by field, WITHOUT looking at
// assembly/ or host/dataplane/: the data plane tests compare the wasm output
// with these bytes, so the two must not share a line of code. It is slow and
// allocates freely on purpose: clarity over speed. Cross-checked against
// scapy and tshark in test/encoder.test.ts.
//
// Every builder returns a fresh Uint8Array. Addresses are text: MACs
// "02:00:5e:00:00:01", IPs "10.0.0.1" or "2001:db8::1".

export type Bytes = Uint8Array;

export const ETH_IPV4 = 0x0800;
export const ETH_ARP = 0x0806;
export const ETH_VLAN = 0x8100; // IEEE 802.1Q C-tag
export const ETH_QINQ = 0x88a8; // IEEE 802.1ad S-tag
export const ETH_IPV6 = 0x86dd;
export const ETH_TEB = 0x6558; // Transparent Ethernet Bridging (Geneve, NVGRE payload)
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_UDP = 17;
export const IPPROTO_GRE = 47;
export const IPPROTO_TCP = 6;
export const VXLAN_PORT = 4789; // RFC 7348 §5
export const GENEVE_PORT = 6081; // RFC 8926 §3.3

// ---------------------------------------------------------------- bytes

export function concat(...parts: Bytes[]): Bytes {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function u8(...v: number[]): Bytes {
  return Uint8Array.from(v.map((x) => x & 0xff));
}
export function be16(v: number): Bytes {
  return u8(v >>> 8, v);
}
export function be24(v: number): Bytes {
  return u8(v >>> 16, v >>> 8, v);
}
export function be32(v: number): Bytes {
  return u8(v >>> 24, v >>> 16, v >>> 8, v);
}

export function hex(b: Bytes): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
/** Hex to bytes; whitespace, colons and newlines are ignored so RFC/Wireshark dumps paste as is. */
export function fromHex(s: string): Bytes {
  const clean = s.replace(/[\s:]/g, "");
  if (clean.length % 2 || /[^0-9a-fA-F]/.test(clean)) throw new Error(`fromHex: not hex: ${s.slice(0, 40)}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** First differing offset and a hex window around it, for assertion messages; "" when equal. */
export function bytesDiff(actual: Bytes, expected: Bytes): string {
  const n = Math.min(actual.length, expected.length);
  let i = 0;
  while (i < n && actual[i] === expected[i]) i++;
  if (i === n && actual.length === expected.length) return "";
  const from = Math.max(0, i - 8);
  return `first difference at byte ${i} (lengths actual ${actual.length}, expected ${expected.length})\n` +
    `  actual   [${from}..]: ${hex(actual.subarray(from, i + 16))}\n` +
    `  expected [${from}..]: ${hex(expected.subarray(from, i + 16))}\n` +
    `  actual   full: ${hex(actual)}\n  expected full: ${hex(expected)}`;
}

// ---------------------------------------------------------------- addresses

export function mac(s: string): Bytes {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) throw new Error(`bad MAC ${s}`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}
export function macText(b: Bytes): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, "0")).join(":");
}

export function isIPv6(s: string): boolean {
  return s.includes(":");
}

export function ipv4(s: string): Bytes {
  const p = s.split(".").map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`bad IPv4 ${s}`);
  return Uint8Array.from(p);
}

/** RFC 4291 §2.2 text forms, including "::" compression and a trailing dotted IPv4. */
export function ipv6(s: string): Bytes {
  let text = s;
  const tail: number[] = [];
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const v4 = ipv4(dotted[1]);
    tail.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
    text = text.slice(0, -dotted[1].length) + "0:0"; // two placeholder words, replaced below
  }
  const halves = text.split("::");
  if (halves.length > 2) throw new Error(`bad IPv6 ${s}`);
  const groups = (h: string) => (h === "" ? [] : h.split(":").map((g) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw new Error(`bad IPv6 ${s}`);
    return parseInt(g, 16);
  }));
  let words: number[];
  if (halves.length === 2) {
    const head = groups(halves[0]);
    const rest = groups(halves[1]);
    words = [...head, ...new Array(8 - head.length - rest.length).fill(0), ...rest];
  } else {
    words = groups(halves[0]);
  }
  if (dotted) words.splice(words.length - 2, 2, ...tail);
  if (words.length !== 8) throw new Error(`bad IPv6 ${s}`);
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >>> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

export function ip(s: string): Bytes {
  return isIPv6(s) ? ipv6(s) : ipv4(s);
}

/** RFC 4291 §2.7.1: the solicited-node multicast address ff02::1:ffXX:XXXX of an IPv6 address. */
export function solicitedNode(addr: string): string {
  const b = ipv6(addr);
  const h = (i: number) => b[i].toString(16).padStart(2, "0");
  return `ff02::1:ff${h(13)}:${h(14)}${h(15)}`;
}

/** RFC 2464 §7: an IPv6 multicast address maps to MAC 33:33 + its last 32 bits. */
export function ipv6MulticastMac(addr: string): string {
  const b = ipv6(addr);
  return macText(u8(0x33, 0x33, b[12], b[13], b[14], b[15]));
}

/** RFC 4291 Appendix A: the modified EUI-64 link-local address fe80::/64 of a MAC (U/L bit inverted, ff:fe inserted). */
export function linkLocalFromMac(m: string): string {
  const b = mac(m);
  const w = (x: number, y: number) => ((x << 8) | y).toString(16);
  return `fe80::${w(b[0] ^ 0x02, b[1])}:${w(b[2], 0xff)}:${w(0xfe, b[3])}:${w(b[4], b[5])}`;
}

// ---------------------------------------------------------------- checksum

/**
 * RFC 1071 Internet checksum: the ones' complement of the ones' complement
 * sum of the 16-bit big-endian words (an odd final byte is padded with zero).
 */
export function inetChecksum(...parts: Bytes[]): number {
  const data = concat(...parts);
  let sum = 0;
  for (let i = 0; i + 1 < data.length; i += 2) sum += (data[i] << 8) | data[i + 1];
  if (data.length % 2) sum += data[data.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

// ---------------------------------------------------------------- Ethernet / 802.1Q

export interface Tag {
  /** 0x8100 (802.1Q C-tag) unless given; 0x88a8 for an 802.1ad S-tag. */
  tpid?: number;
  pcp?: number;
  dei?: number;
  vid: number;
}

/**
 * Ethernet II with zero or more tags (IEEE 802.1Q §9.6):
 *
 *   0                   1                   2                   3
 *   | dst MAC (6) | src MAC (6) | [TPID (2) | PCP:3 DEI:1 VID:12 (2)]* | EtherType (2) | payload
 *
 * `pad` pads with zeros to the 60-byte minimum (64 with one tag), as a sender
 * must (IEEE 802.3 §3.2.8 minus the 4-byte FCS, which captures do not hold).
 */
export function ethernet(o: { dst: string; src: string; tags?: Tag[]; type: number; payload: Bytes; pad?: boolean }): Bytes {
  const tags = (o.tags ?? []).map((t) => concat(be16(t.tpid ?? ETH_VLAN), be16(tci(t))));
  const frame = concat(mac(o.dst), mac(o.src), ...tags, be16(o.type), o.payload);
  const min = 60 + 4 * tags.length;
  return o.pad && frame.length < min ? concat(frame, new Uint8Array(min - frame.length)) : frame;
}

export function tci(t: Tag): number {
  if (t.vid < 0 || t.vid > 4095) throw new Error(`bad VID ${t.vid}`);
  return (((t.pcp ?? 0) & 7) << 13) | (((t.dei ?? 0) & 1) << 12) | t.vid;
}

// ---------------------------------------------------------------- IPv4

export interface Ipv4Opts {
  src: string;
  dst: string;
  protocol: number;
  payload: Bytes;
  /** Differentiated Services code point (RFC 2474): the upper 6 bits of the old TOS byte. */
  dscp?: number;
  ecn?: number;
  id?: number;
  /** Don't Fragment; default true (RFC 7348 §4.3: never fragment the overlay). */
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in 8-byte units. */
  fragOffset?: number;
  ttl?: number;
  /** Force this header checksum (tests of checksum validation); computed otherwise. */
  checksum?: number;
  /** IPv4 options (a multiple of 4 bytes), making IHL > 5. */
  options?: Bytes;
  /** Force the total-length field. */
  totalLength?: number;
  version?: number;
}

/**
 * RFC 791 §3.1:
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |Version|  IHL  |  DSCP     |ECN|          Total Length         |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |         Identification        |Flags|      Fragment Offset    |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |  Time to Live |    Protocol   |         Header Checksum       |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                       Source Address                          |
 *   |                    Destination Address                        |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Flags: bit 0 reserved, bit 1 DF, bit 2 MF (RFC 791 §3.1).
 */
export function ipv4Packet(o: Ipv4Opts): Bytes {
  const options = o.options ?? new Uint8Array(0);
  if (options.length % 4) throw new Error("IPv4 options must be a multiple of 4 bytes");
  const ihl = 5 + options.length / 4;
  const flags = ((o.df ?? true) ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOffset ?? 0) & 0x1fff);
  const header = concat(
    u8(((o.version ?? 4) << 4) | ihl, ((o.dscp ?? 0) << 2) | ((o.ecn ?? 0) & 3)),
    be16(o.totalLength ?? ihl * 4 + o.payload.length),
    be16(o.id ?? 0),
    be16(flags),
    u8(o.ttl ?? 64, o.protocol),
    be16(0), // checksum, filled below
    ipv4(o.src),
    ipv4(o.dst),
    options,
  );
  const sum = o.checksum ?? inetChecksum(header);
  header[10] = sum >>> 8;
  header[11] = sum & 0xff;
  return concat(header, o.payload);
}

// ---------------------------------------------------------------- IPv6

/**
 * RFC 8200 §3:
 *
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |Version| Traffic Class |           Flow Label                  |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |         Payload Length        |  Next Header  |   Hop Limit   |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                   Source Address (128 bits)                   |
 *   |                Destination Address (128 bits)                 |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Traffic Class = DSCP (6 bits) << 2 | ECN (RFC 2474 §3, RFC 3168).
 */
export function ipv6Packet(o: { src: string; dst: string; nextHeader: number; payload: Bytes; dscp?: number; ecn?: number;
                                flowLabel?: number; hopLimit?: number; payloadLength?: number }): Bytes {
  const tc = ((o.dscp ?? 0) << 2) | ((o.ecn ?? 0) & 3);
  const first = ((6 << 28) | (tc << 20) | ((o.flowLabel ?? 0) & 0xfffff)) >>> 0;
  return concat(be32(first), be16(o.payloadLength ?? o.payload.length), u8(o.nextHeader, o.hopLimit ?? 64),
    ipv6(o.src), ipv6(o.dst), o.payload);
}

/** An IPv4 or IPv6 packet, by the family of `src`; `dscp` goes to the DSCP / traffic class either way. */
export function ipPacket(o: { src: string; dst: string; protocol: number; payload: Bytes; dscp?: number; ecn?: number;
                              ttl?: number; flowLabel?: number; id?: number }): Bytes {
  return isIPv6(o.src)
    ? ipv6Packet({ src: o.src, dst: o.dst, nextHeader: o.protocol, payload: o.payload, dscp: o.dscp, ecn: o.ecn,
                   hopLimit: o.ttl, flowLabel: o.flowLabel })
    : ipv4Packet({ src: o.src, dst: o.dst, protocol: o.protocol, payload: o.payload, dscp: o.dscp, ecn: o.ecn, ttl: o.ttl, id: o.id });
}

/**
 * The pseudo-header an upper-layer checksum covers.
 * IPv4 (RFC 768): src (4) | dst (4) | zero (1) | protocol (1) | length (2).
 * IPv6 (RFC 8200 §8.1): src (16) | dst (16) | length (4) | zero (3) | next header (1).
 */
export function pseudoHeader(src: string, dst: string, protocol: number, length: number): Bytes {
  return isIPv6(src)
    ? concat(ipv6(src), ipv6(dst), be32(length), u8(0, 0, 0, protocol))
    : concat(ipv4(src), ipv4(dst), u8(0, protocol), be16(length));
}

// ---------------------------------------------------------------- TCP, offloads

/**
 * A TCP segment, 20-byte header (RFC 9293 §3.1: ports 40000 -> 80, ack 7,
 * window 512) + payload. `partial`: the checksum field holds the
 * pseudo-header sum only, as a sender with checksum offload or TSO leaves
 * it (CHECKSUM_PARTIAL); else the full checksum.
 */
export function tcpSegment(src: string, dst: string, seq: number, flags: number, payload: Bytes, partial: boolean): Bytes {
  const seg = concat(be16(40000), be16(80), be32(seq), be32(7), u8(5 << 4, flags), be16(512), be16(0), be16(0), payload);
  const pseudo = pseudoHeader(src, dst, 6, seg.length);
  const sum = partial ? ~inetChecksum(pseudo) & 0xffff : inetChecksum(pseudo, seg);
  seg[16] = sum >>> 8;
  seg[17] = sum & 0xff;
  return seg;
}

/** struct virtio_net_hdr (virtio 1.x §5.1.6; 10 bytes, little-endian), as PACKET_VNET_HDR and the data plane's GSO record carry it. */
export function virtioNetHdr(o: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }): Bytes {
  const b = new Uint8Array(10);
  const dv = new DataView(b.buffer);
  b[0] = o.flags ?? 0;
  b[1] = o.gsoType ?? 0;
  dv.setUint16(2, o.hdrLen ?? 0, true);
  dv.setUint16(4, o.gsoSize ?? 0, true);
  dv.setUint16(6, o.csumStart ?? 0, true);
  dv.setUint16(8, o.csumOffset ?? 0, true);
  return b;
}

// ---------------------------------------------------------------- UDP

/**
 * RFC 768:
 *
 *    0      7 8     15 16    23 24    31
 *   +--------+--------+--------+--------+
 *   |     Source      |   Destination   |
 *   |      Port       |      Port       |
 *   +--------+--------+--------+--------+
 *   |     Length      |    Checksum     |
 *   +--------+--------+--------+--------+
 *
 * `checksum`: "compute" (over the pseudo-header of `src`/`dst`; a computed 0
 * is sent as 0xffff, RFC 768), "zero" (no checksum: allowed over IPv4, RFC
 * 7348 §5), or a forced value.
 */
export function udp(o: { src: string; dst: string; srcPort: number; dstPort: number; payload: Bytes;
                         checksum?: "compute" | "zero" | number; length?: number }): Bytes {
  const length = o.length ?? 8 + o.payload.length;
  const seg = concat(be16(o.srcPort), be16(o.dstPort), be16(length), be16(0), o.payload);
  let sum: number;
  const mode = o.checksum ?? "compute";
  if (mode === "zero") sum = 0;
  else if (mode === "compute") sum = inetChecksum(pseudoHeader(o.src, o.dst, IPPROTO_UDP, seg.length), seg) || 0xffff;
  else sum = mode;
  seg[6] = sum >>> 8;
  seg[7] = sum & 0xff;
  return seg;
}

/** Whether a UDP segment's checksum verifies against its pseudo-header (0 = none sent counts as valid only over IPv4). */
export function udpChecksumOk(src: string, dst: string, segment: Bytes): boolean {
  const sent = (segment[6] << 8) | segment[7];
  if (sent === 0) return !isIPv6(src);
  return inetChecksum(pseudoHeader(src, dst, IPPROTO_UDP, segment.length), segment) === 0;
}

// ---------------------------------------------------------------- VXLAN

/**
 * RFC 7348 §5:
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |R|R|R|R|I|R|R|R|            Reserved                           |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                VXLAN Network Identifier (VNI) |   Reserved    |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * I flag 0x08 must be 1 for a valid VNI; the R bits are 0 on send.
 */
export function vxlan(o: { vni: number; flags?: number; reserved1?: number; reserved2?: number }, inner: Bytes): Bytes {
  return concat(u8(o.flags ?? 0x08), be24(o.reserved1 ?? 0), be24(o.vni), u8(o.reserved2 ?? 0), inner);
}

// ---------------------------------------------------------------- Geneve

export interface GeneveOption {
  optClass: number;
  /** Type; its high bit (0x80) is the critical bit (RFC 8926 §3.5). */
  type: number;
  /** Option data, a multiple of 4 bytes (0..124). */
  data: Bytes;
  /** Force the 5-bit length field (in 4-byte words) to a wrong value. */
  lengthField?: number;
}

/**
 * RFC 8926 §3.4:
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |        Virtual Network Identifier (VNI)       |    Reserved   |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                                                               |
 *   ~                    Variable-Length Options                    ~
 *   |                                                               |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Opt Len is in 4-byte words and excludes the 8-byte base header. C is set
 * when any option is critical (RFC 8926 §3.4); each option (§3.5):
 *
 *   |          Option Class         |      Type     |R|R|R| Length  |
 *   |                      Variable-Length Option Data              |
 */
export function geneve(o: { vni: number; protocol?: number; version?: number; oam?: boolean; critical?: boolean;
                            options?: GeneveOption[]; optLenField?: number; reserved?: number }, inner: Bytes): Bytes {
  const opts = (o.options ?? []).map((op) => {
    if (op.data.length % 4 || op.data.length > 124) throw new Error("Geneve option data must be 0..124 bytes in 4-byte words");
    return concat(be16(op.optClass), u8(op.type), u8((op.lengthField ?? op.data.length / 4) & 0x1f), op.data);
  });
  const optBytes = concat(...opts);
  const critical = o.critical ?? (o.options ?? []).some((op) => (op.type & 0x80) !== 0);
  const optLen = o.optLenField ?? optBytes.length / 4;
  return concat(
    u8(((o.version ?? 0) << 6) | (optLen & 0x3f), (o.oam ? 0x80 : 0) | (critical ? 0x40 : 0) | ((o.reserved ?? 0) & 0x3f)),
    be16(o.protocol ?? ETH_TEB),
    be24(o.vni),
    u8(0),
    optBytes,
    inner,
  );
}

// ---------------------------------------------------------------- NVGRE

/**
 * RFC 7637 §3.2 (GRE, RFC 2784 + the Key extension of RFC 2890):
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |0| |1|0|   Reserved0     | Ver |   Protocol Type 0x6558        |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |               Virtual Subnet ID (VSID)        |    FlowID     |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * C (0x8000) = 0, K (0x2000) = 1, S (0x1000) = 0.
 */
export function nvgre(o: { vsid: number; flowId?: number; flags?: number; protocol?: number }, inner: Bytes): Bytes {
  return concat(be16(o.flags ?? 0x2000), be16(o.protocol ?? ETH_TEB), be24(o.vsid), u8(o.flowId ?? 0), inner);
}

// ---------------------------------------------------------------- full overlay frames

export type EncapKind = "vxlan" | "geneve" | "nvgre";

export interface Underlay {
  /** Outer Ethernet source and destination (our underlay MAC, the next hop). */
  srcMac: string;
  dstMac: string;
  /** Outer IP source and destination (IPv4 or IPv6). */
  src: string;
  dst: string;
  dscp?: number;
  ecn?: number;
  ttl?: number;
  flowLabel?: number;
  /** Outer 802.1Q tag on the underlay (normally none). */
  tags?: Tag[];
}

export interface EncapOpts {
  kind: EncapKind;
  vni: number;
  /** UDP source port (VXLAN, Geneve) or FlowID (NVGRE): the entropy the encapsulator chose. */
  entropy: number;
  /** UDP destination port; RFC default for the kind when absent. */
  dstPort?: number;
  /** UDP checksum: default "zero" over IPv4, "compute" over IPv6 (STANDARDS.md). */
  udpChecksum?: "compute" | "zero" | number;
  geneveOptions?: GeneveOption[];
  ipv4?: Partial<Ipv4Opts>;
}

/** The encapsulation header (VXLAN, Geneve or NVGRE) around an inner Ethernet frame. */
export function tunnelHeader(e: EncapOpts, inner: Bytes): Bytes {
  if (e.kind === "vxlan") return vxlan({ vni: e.vni }, inner);
  if (e.kind === "geneve") return geneve({ vni: e.vni, options: e.geneveOptions }, inner);
  return nvgre({ vsid: e.vni, flowId: e.entropy }, inner);
}

/**
 * A whole underlay frame: outer Ethernet + IPv4/IPv6 + (UDP + VXLAN|Geneve) or
 * GRE/NVGRE + the inner frame. `tunnel` overrides the tunnel header bytes
 * (with the inner frame already appended) for malformed-header tests.
 */
export function overlayFrame(u: Underlay, e: EncapOpts, inner: Bytes, tunnel?: Bytes): Bytes {
  const body = tunnel ?? tunnelHeader(e, inner);
  let l4: Bytes;
  let protocol: number;
  if (e.kind === "nvgre") {
    l4 = body;
    protocol = IPPROTO_GRE;
  } else {
    const dstPort = e.dstPort ?? (e.kind === "vxlan" ? VXLAN_PORT : GENEVE_PORT);
    const cs = e.udpChecksum ?? (isIPv6(u.src) ? "compute" : "zero");
    l4 = udp({ src: u.src, dst: u.dst, srcPort: e.entropy, dstPort, payload: body, checksum: cs });
    protocol = IPPROTO_UDP;
  }
  const ipPkt = isIPv6(u.src)
    ? ipv6Packet({ src: u.src, dst: u.dst, nextHeader: protocol, payload: l4, dscp: u.dscp, ecn: u.ecn, hopLimit: u.ttl,
                   flowLabel: u.flowLabel })
    : ipv4Packet({ src: u.src, dst: u.dst, protocol, payload: l4, dscp: u.dscp, ecn: u.ecn, ttl: u.ttl, ...e.ipv4 });
  return ethernet({ dst: u.dstMac, src: u.srcMac, tags: u.tags, type: isIPv6(u.src) ? ETH_IPV6 : ETH_IPV4, payload: ipPkt });
}

// ---------------------------------------------------------------- ARP

/**
 * RFC 826 for Ethernet/IPv4:
 *
 *   | hrd (2) = 1 | pro (2) = 0x0800 | hln (1) = 6 | pln (1) = 4 | op (2) |
 *   | sha (6) | spa (4) | tha (6) | tpa (4) |
 *
 * op 1 = request, 2 = reply.
 */
export function arp(o: { op: 1 | 2; sha: string; spa: string; tha: string; tpa: string }): Bytes {
  return concat(be16(1), be16(ETH_IPV4), u8(6, 4), be16(o.op), mac(o.sha), ipv4(o.spa), mac(o.tha), ipv4(o.tpa));
}

// ---------------------------------------------------------------- ICMPv6 / ND

/**
 * ICMPv6 (RFC 4443 §2.1): type (1) | code (1) | checksum (2) | body, the
 * checksum over the IPv6 pseudo-header with next header 58 (§2.3).
 */
export function icmpv6(src: string, dst: string, type: number, code: number, body: Bytes): Bytes {
  const msg = concat(u8(type, code), be16(0), body);
  const sum = inetChecksum(pseudoHeader(src, dst, IPPROTO_ICMPV6, msg.length), msg);
  msg[2] = sum >>> 8;
  msg[3] = sum & 0xff;
  return msg;
}

/** RFC 4861 §4.6.1: Source (1) / Target (2) Link-Layer Address option: type | length = 1 (8 bytes) | MAC. */
export function lladdrOption(type: 1 | 2, m: string): Bytes {
  return concat(u8(type, 1), mac(m));
}

/**
 * RFC 4861 §4.3 Neighbor Solicitation: type 135, code 0,
 *   | Reserved (4) | Target Address (16) | options |
 * sent with hop limit 255 (§7.1.1). `sll` adds the Source Link-Layer Address
 * option (it must be absent when the source is :: , §4.3).
 */
export function neighborSolicitation(o: { src: string; dst: string; target: string; sll?: string }): Bytes {
  const body = concat(be32(0), ipv6(o.target), o.sll ? lladdrOption(1, o.sll) : new Uint8Array(0));
  return ipv6Packet({ src: o.src, dst: o.dst, nextHeader: IPPROTO_ICMPV6, hopLimit: 255,
                      payload: icmpv6(o.src, o.dst, 135, 0, body) });
}

/**
 * RFC 4861 §4.4 Neighbor Advertisement: type 136, code 0,
 *   |R|S|O|     Reserved (29 bits)     | Target Address (16) | options |
 * R (0x80) router, S (0x40) solicited, O (0x20) override; hop limit 255.
 */
export function neighborAdvertisement(o: { src: string; dst: string; target: string; router?: boolean; solicited?: boolean;
                                           override?: boolean; tll?: string }): Bytes {
  const flags = (o.router ? 0x80 : 0) | (o.solicited ? 0x40 : 0) | (o.override ? 0x20 : 0);
  const body = concat(u8(flags, 0, 0, 0), ipv6(o.target), o.tll ? lladdrOption(2, o.tll) : new Uint8Array(0));
  return ipv6Packet({ src: o.src, dst: o.dst, nextHeader: IPPROTO_ICMPV6, hopLimit: 255,
                      payload: icmpv6(o.src, o.dst, 136, 0, body) });
}

// ---------------------------------------------------------------- inner frames for tests

/**
 * A tagged (or untagged, with `tag` null) Ethernet frame carrying IPv4/IPv6 +
 * UDP with `payloadLen` bytes of pattern data: the typical VM traffic.
 */
export function udpFrame(o: { dst: string; src: string; tag?: Tag | null; tags?: Tag[]; srcIp: string; dstIp: string;
                              srcPort?: number; dstPort?: number; payloadLen?: number; fill?: number; dscp?: number }): Bytes {
  const payload = new Uint8Array(o.payloadLen ?? 18);
  for (let i = 0; i < payload.length; i++) payload[i] = ((o.fill ?? 0x5a) + i) & 0xff;
  const seg = udp({ src: o.srcIp, dst: o.dstIp, srcPort: o.srcPort ?? 1234, dstPort: o.dstPort ?? 5678, payload });
  const ipPkt = ipPacket({ src: o.srcIp, dst: o.dstIp, protocol: IPPROTO_UDP, payload: seg, dscp: o.dscp });
  const tags = o.tags ?? (o.tag ? [o.tag] : []);
  return ethernet({ dst: o.dst, src: o.src, tags, type: isIPv6(o.srcIp) ? ETH_IPV6 : ETH_IPV4, payload: ipPkt, pad: true });
}

/** An ARP frame on an 802.1Q trunk (broadcast for requests unless `dst` is given), padded to the minimum size. */
export function arpFrame(o: { op: 1 | 2; src: string; dst?: string; tag: Tag | null; sha?: string; spa: string; tha?: string;
                              tpa: string }): Bytes {
  const body = arp({ op: o.op, sha: o.sha ?? o.src, spa: o.spa, tha: o.tha ?? "00:00:00:00:00:00", tpa: o.tpa });
  return ethernet({ dst: o.dst ?? "ff:ff:ff:ff:ff:ff", src: o.src, tags: o.tag ? [o.tag] : [], type: ETH_ARP, payload: body, pad: true });
}

/** Removes the first 802.1Q tag of a frame (bytes 12..15), as an encapsulator does (RFC 7348 §6.1). */
export function stripTag(frame: Bytes): Bytes {
  return concat(frame.subarray(0, 12), frame.subarray(16));
}

/** Inserts an 802.1Q tag after the MAC addresses, as a decapsulator delivering to a trunk does. */
export function insertTag(frame: Bytes, t: Tag): Bytes {
  return concat(frame.subarray(0, 12), be16(t.tpid ?? ETH_VLAN), be16(tci(t)), frame.subarray(12));
}

// ---------------------------------------------------------------- reading fields back

/** Offsets of an untagged overlay frame's layers, for reading the fields an encapsulator chooses (entropy). */
export interface OverlayView {
  family: 4 | 6;
  ipOff: number;
  l4Off: number;
  /** UDP source port, or the NVGRE FlowID. */
  entropy: number;
  flowLabel: number;
  dscp: number;
  ecn: number;
  /** Start of the inner Ethernet frame. */
  innerOff: number;
  protocol: number;
}

/** Parses just enough of a well-formed overlay frame of `kind` to read what the encapsulator chose; throws otherwise. */
export function viewOverlay(f: Bytes, kind: EncapKind): OverlayView {
  const type = (f[12] << 8) | f[13];
  const ipOff = 14;
  let family: 4 | 6;
  let l4Off: number;
  let protocol: number;
  let flowLabel = 0;
  let tc: number;
  if (type === ETH_IPV4) {
    family = 4;
    l4Off = ipOff + (f[ipOff] & 0x0f) * 4;
    protocol = f[ipOff + 9];
    tc = f[ipOff + 1];
  } else if (type === ETH_IPV6) {
    family = 6;
    l4Off = ipOff + 40;
    protocol = f[ipOff + 6];
    tc = ((f[ipOff] & 0x0f) << 4) | (f[ipOff + 1] >>> 4);
    flowLabel = ((f[ipOff + 1] & 0x0f) << 16) | (f[ipOff + 2] << 8) | f[ipOff + 3];
  } else {
    throw new Error(`viewOverlay: EtherType 0x${type.toString(16)} is not IP`);
  }
  const wanted = kind === "nvgre" ? IPPROTO_GRE : IPPROTO_UDP;
  if (protocol !== wanted) throw new Error(`viewOverlay: IP protocol ${protocol}, expected ${wanted} for ${kind}`);
  let entropy: number;
  let innerOff: number;
  if (kind === "nvgre") {
    entropy = f[l4Off + 7];
    innerOff = l4Off + 8;
  } else {
    entropy = (f[l4Off] << 8) | f[l4Off + 1];
    const t = l4Off + 8;
    innerOff = kind === "geneve" ? t + 8 + (f[t] & 0x3f) * 4 : t + 8;
  }
  return { family, ipOff, l4Off, entropy, flowLabel, dscp: tc >>> 2, ecn: tc & 3, innerOff, protocol };
}

// ---------------------------------------------------------------- TCP and ICMP (issue 14: ACL cases)

/**
 * RFC 9293 §3.1, a 20-byte header without options:
 *
 *   | Source Port (2) | Destination Port (2) | Sequence Number (4) | Acknowledgment Number (4) |
 *   | Data Offset:4 Rsrvd:4 | Flags (8) | Window (2) | Checksum (2) | Urgent Pointer (2) | data
 *
 * The checksum covers the pseudo-header of `src`/`dst` (RFC 9293 §3.1, RFC 8200 §8.1).
 */
export function tcp(o: { src: string; dst: string; srcPort: number; dstPort: number; payload?: Bytes; seq?: number; ack?: number;
                         flags?: number; window?: number }): Bytes {
  const seg = concat(be16(o.srcPort), be16(o.dstPort), be32(o.seq ?? 1), be32(o.ack ?? 0), u8(5 << 4, o.flags ?? 0x02),
    be16(o.window ?? 65535), be16(0), be16(0), o.payload ?? new Uint8Array(0));
  const sum = inetChecksum(pseudoHeader(o.src, o.dst, IPPROTO_TCP, seg.length), seg);
  seg[16] = sum >>> 8;
  seg[17] = sum & 0xff;
  return seg;
}

/**
 * An ICMP (RFC 792) or, for IPv6 addresses, ICMPv6 (RFC 4443 §2.1) echo-shaped message:
 * | Type (1) | Code (1) | Checksum (2) | Identifier (2) | Sequence (2) | data.
 * ICMPv4's checksum covers the message alone; ICMPv6's the pseudo-header too.
 */
export function icmpMessage(o: { src: string; dst: string; type: number; code?: number; id?: number; seq?: number; data?: Bytes }): Bytes {
  const msg = concat(u8(o.type, o.code ?? 0), be16(0), be16(o.id ?? 1), be16(o.seq ?? 1), o.data ?? new Uint8Array(8));
  const sum = isIPv6(o.src) ? inetChecksum(pseudoHeader(o.src, o.dst, IPPROTO_ICMPV6, msg.length), msg) : inetChecksum(msg);
  msg[2] = sum >>> 8;
  msg[3] = sum & 0xff;
  return msg;
}

/** A tagged (or untagged, `tag` null) frame carrying a TCP segment or an ICMP/ICMPv6 message over IPv4/IPv6. */
export function l4Frame(o: { dst: string; src: string; tag: Tag | null; srcIp: string; dstIp: string; protocol: number; l4: Bytes }): Bytes {
  return ethernet({ dst: o.dst, src: o.src, tags: o.tag ? [o.tag] : [], type: isIPv6(o.srcIp) ? ETH_IPV6 : ETH_IPV4,
    payload: ipPacket({ src: o.srcIp, dst: o.dstIp, protocol: o.protocol, payload: o.l4 }), pad: true });
}

// ---------------------------------------------------------------- ICMP (IPv4)

export const IPPROTO_ICMP = 1;

/**
 * RFC 792: type (1) | code (1) | checksum (2) | rest, the checksum over the
 * whole ICMP message (no pseudo-header, unlike ICMPv6).
 */
export function icmpv4(type: number, code: number, body: Bytes): Bytes {
  const msg = concat(u8(type, code), be16(0), body);
  const sum = inetChecksum(msg);
  msg[2] = sum >>> 8;
  msg[3] = sum & 0xff;
  return msg;
}
