// The tunnel super-frame TX path (host/io/native/tuntx.c, issue 11 TCP VM ->
// remote): ONE VXLAN/Geneve frame carrying a whole TCP/UDP super-frame goes
// to the uplink with a UDP-tunnel GSO request, through a tap whose ingress a
// tc program redirects to the uplink (Linux 6.17 or later). The kernel cuts it
// only where the uplink cannot carry it whole (a veth can); today's
// alternative is ~45 frames through AF_PACKET.
//
// A batch is a run of TX_DESC-byte descriptors in an ArrayBuffer (the data
// plane's memory, or any buffer) naming each frame's headers and payload in
// the same buffer; `send` writes one frame per writev() and leaves each
// descriptor's status. A frame refused is counted under its reason, and
// nothing of it reaches the tap.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { addonPath } from "../paths.js";

/** Descriptor flags (tuntx.c TT_*). */
export const TX_OUTER6 = 1;
export const TX_INNER6 = 2;
/** The outer UDP checksum computed per segment (else 0, RFC 7348 section 5 for IPv4); implied by an IPv6 outer header. Needs open's udpCsum. */
export const TX_UDP_CSUM = 4;
/** The inner L4 is UDP (USO), else TCP. */
export const TX_INNER_UDP = 8;
/** The inner TCP super-frame carries CWR (VIRTIO_NET_HDR_GSO_ECN). */
export const TX_ECN = 16;
/** Not a super-frame: one frame whose checksums the module completes in software (gsoSize unused). */
export const TX_PLAIN = 32;

/** Bytes per descriptor and the offsets of its little-endian fields (tuntx.c). */
export const TX_DESC = 32;
export const TD = { hdr: 0, hdrLen: 4, gsoSize: 6, data: 8, dataLen: 12, outerTh: 16, innerNh: 18, innerTh: 20, flags: 22, status: 24 } as const;

/** A descriptor's status after send (index into the addon's reason names). */
export const TX_STATUS = [
  "ok", "gsoSizeZero", "singleSegment", "headersShort", "badProtocol", "tooLong", "csumNotEnabled", "outsideMemory",
  "badFlags", "writeError", "busy", "segmentOverMtu",
] as const;
export type TxStatus = (typeof TX_STATUS)[number];

/** What each refusal means, for errors a person reads. */
export const TX_STATUS_TEXT: Record<TxStatus, string> = {
  ok: "sent",
  gsoSizeZero: "gso_size is 0 (a super-frame needs its segment size)",
  singleSegment: "the payload fits in one segment of gso_size (send it as TX_PLAIN or the ordinary way)",
  headersShort: "the headers are shorter than their offsets say, or the offsets are out of order (outer UDP >= Ethernet + IP, inner IP >= outer UDP + 8, inner L4 >= inner IP + its header, headers end with the inner TCP/UDP header)",
  badProtocol: "a header is not what the flags say (EtherType, IP version, header length or next protocol)",
  tooLong: "the frame is longer than an IP length field holds (65535)",
  csumNotEnabled: "an outer UDP checksum is asked (TX_UDP_CSUM or an IPv6 outer header) but the tap was opened without udpCsum",
  outsideMemory: "the headers or the payload lie outside the memory",
  badFlags: "unknown flag bits",
  writeError: "the tap refused the write (stats().lastErrno)",
  busy: "the tap was busy (EAGAIN/ENOBUFS)",
  segmentOverMtu: "a segment (the headers after Ethernet + gso_size, or a plain frame) would be longer than the uplink's MTU: a wrong gso_size",
};

export interface TunTxStats {
  frames: number; bytes: number; segments: number; lastErrno: number; tapIndex: number; uplinkIndex: number;
  /** The uplink's MTU at open: no segment may be longer (segmentOverMtu). */
  mtu: number;
  errors: Record<Exclude<TxStatus, "ok">, number>;
}

export interface TunTxOpenOptions {
  /** The network namespace (a path such as /run/netns/X) of the uplink; the tap is made there. */
  netns?: string;
  /** Negotiate TUN_F_UDP_TUNNEL_GSO_CSUM too: outer UDP checksums per segment (IPv6 underlays need it). */
  udpCsum?: boolean;
}

/** A tap being made on a thread of the addon's (openStart). */
type TapJob = { readonly __tapJob: unique symbol };

interface Addon {
  open(tap: string, uplink: string, o?: TunTxOpenOptions): number;
  openStart(tap: string, uplink: string, o?: TunTxOpenOptions): TapJob;
  openFinish(job: TapJob): number;
  close(h: number): void;
  send(h: number, mem: ArrayBuffer, descBase: number, count: number): number;
  stats(h: number): TunTxStats;
  fd(h: number): number;
  sendVnet(h: number, mem: ArrayBuffer, hdr: number, hdrLen: number, vnet: number, outerTh: number, innerNh: number, data: number, dataLen: number): number;
  reasons: string[];
  labOpen(tap: string, netns: string): number;
  labRead(fd: number, mem: ArrayBuffer, slotBase: number, slotSize: number, max: number, lenBase: number, timeoutMs: number): number;
  labClose(fd: number): void;
}

export const tunTxAddonPath = join(dirname(addonPath()), "nvedge_tuntx.node");

let cached: Addon | undefined;

/** The addon, or a clear error saying how to build it. */
export function loadTunTxAddon(): Addon {
  if (cached) return cached;
  if (process.platform !== "linux") throw new Error("the tunnel TX path needs Linux (tun with UDP tunnel GSO)");
  if (!existsSync(tunTxAddonPath)) throw new Error(`the tunnel TX addon is not built (${tunTxAddonPath} missing): run node scripts/build.mjs --addon`);
  const a = createRequire(import.meta.url)(tunTxAddonPath) as Addon;
  // one list of reasons: the addon's and this file's must agree
  if (a.reasons.join() !== TX_STATUS.join()) throw new Error(`the tunnel TX addon ${tunTxAddonPath} is stale (its reasons differ): run node scripts/build.mjs --addon`);
  cached = a;
  return a;
}

/** One frame for `TunTx.sendFrame`: headers (outer Ethernet .. inner L4 header) and payload as separate buffers. */
export interface TxFrame {
  headers: Uint8Array;
  payload: Uint8Array;
  gsoSize: number;
  outerTh: number;
  innerNh: number;
  innerTh: number;
  flags?: number;
}

/** Writes descriptor i at `base` of `dv`. */
export function putTxDesc(dv: DataView, base: number, d: { hdr: number; hdrLen: number; data: number; dataLen: number; gsoSize: number; outerTh: number; innerNh: number; innerTh: number; flags: number }): void {
  dv.setUint32(base + TD.hdr, d.hdr, true);
  dv.setUint16(base + TD.hdrLen, d.hdrLen, true);
  dv.setUint16(base + TD.gsoSize, d.gsoSize, true);
  dv.setUint32(base + TD.data, d.data, true);
  dv.setUint32(base + TD.dataLen, d.dataLen, true);
  dv.setUint16(base + TD.outerTh, d.outerTh, true);
  dv.setUint16(base + TD.innerNh, d.innerNh, true);
  dv.setUint16(base + TD.innerTh, d.innerTh, true);
  dv.setUint16(base + TD.flags, d.flags, true);
  dv.setUint32(base + TD.status, 0, true);
}

export class TunTx {
  private scratch?: ArrayBuffer;
  private constructor(private readonly a: Addon, readonly handle: number, readonly tap: string) {}

  /**
   * Makes tap `tap` beside `uplink` and redirects it there. Throws with the
   * reason when this kernel cannot (no UDP tunnel GSO in tun before 6.17, no
   * tcx before 6.6, no CAP_NET_ADMIN/CAP_BPF): the caller then segments.
   */
  static open(tap: string, uplink: string, o: TunTxOpenOptions = {}): TunTx {
    const a = loadTunTxAddon();
    return new TunTx(a, a.open(tap, uplink, o), tap);
  }

  /**
   * The same, made on a thread of the addon's while the caller goes on
   * (issue 15: a packet I/O worker restores its table image meanwhile; the
   * tap's tcx attaches and TUNSETIFF wait 30-45 ms inside the kernel);
   * returns the finish, which waits for it and returns the tap or throws as
   * open() would. Call it exactly once.
   */
  static openStart(tap: string, uplink: string, o: TunTxOpenOptions = {}): () => TunTx {
    const a = loadTunTxAddon();
    const job = a.openStart(tap, uplink, o);
    return () => new TunTx(a, a.openFinish(job), tap);
  }

  /** Sends descriptors [descBase, descBase + count * TX_DESC) of mem; the frames sent. Each descriptor's status is left in it. */
  send(mem: ArrayBuffer, descBase: number, count: number): number {
    return this.a.send(this.handle, mem, descBase, count);
  }

  /** One frame from separate buffers (tests, tools: copies them); throws, having sent nothing, when the module refuses it. */
  sendFrame(f: TxFrame): void {
    const need = TX_DESC + f.headers.length + f.payload.length;
    if (!this.scratch || this.scratch.byteLength < need) this.scratch = new ArrayBuffer(Math.max(need, 1 << 17));
    const u = new Uint8Array(this.scratch);
    u.set(f.headers, TX_DESC);
    u.set(f.payload, TX_DESC + f.headers.length);
    const dv = new DataView(this.scratch);
    putTxDesc(dv, 0, { hdr: TX_DESC, hdrLen: f.headers.length, data: TX_DESC + f.headers.length, dataLen: f.payload.length,
                       gsoSize: f.gsoSize, outerTh: f.outerTh, innerNh: f.innerNh, innerTh: f.innerTh, flags: f.flags ?? 0 });
    this.a.send(this.handle, this.scratch, 0, 1);
    const st = TX_STATUS[dv.getUint32(TD.status, true)] ?? "badFlags";
    if (st !== "ok") throw new Error(`tuntx ${this.tap}: frame not sent: ${st}: ${TX_STATUS_TEXT[st]}`);
  }

  /**
   * One frame described as the data plane describes a whole super-frame
   * output (assembly/abi.ts OG_*): its headers at mem[hdr, hdr + hdrLen), a
   * 10-byte struct virtio_net_hdr at mem[vnet] (gso_type TCPV4/TCPV6/UDP_L4,
   * with or without the UDP tunnel bits; gso_size; csum_start = the inner L4
   * header's offset; NONE for a plain frame), the outer UDP and inner IP
   * offsets (OG_OUTER_TH, OG_INNER_NH), the payload at mem[data, data +
   * dataLen). The same path (tuntx_core.h ttFlagsOf + ttSend) the AF_PACKET
   * addon takes for the data plane's OGK_TUNNEL outputs. Returns the status.
   */
  sendVnet(mem: ArrayBuffer, hdr: number, hdrLen: number, vnet: number, outerTh: number, innerNh: number, data: number, dataLen: number): TxStatus {
    return TX_STATUS[this.a.sendVnet(this.handle, mem, hdr, hdrLen, vnet, outerTh, innerNh, data, dataLen)] ?? "badFlags";
  }

  /** The status send left in descriptor `base` of `mem`. */
  static status(mem: ArrayBuffer, base: number): TxStatus {
    return TX_STATUS[new DataView(mem).getUint32(base + TD.status, true)] ?? "badFlags";
  }

  stats(): TunTxStats { return this.a.stats(this.handle); }

  /** The tap's fd, for another addon of this process to send through (tuntx_core.h); closed by close(). */
  get fd(): number { return this.a.fd(this.handle); }

  /** Removes the tap and its programs. */
  close(): void { this.a.close(this.handle); }
}
