// Loads the native AF_PACKET addon (host/io/native, built by
// `node scripts/build.mjs --addon` and at `npm install`) and types its API.
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { addonPath as addonFile } from "../paths.js";
import { ABI_HASH } from "../dataplane/abi.js";

export interface OpenOptions {
  /** The receive ring's block size in bytes: a power of two, at least one page; it holds blockSize / 2048 frames (TPACKET_V2). */
  blockSize?: number;
  /** The ring's blocks (default 64 with vnetHdr, else 16). */
  blockCount?: number;
  /**
   * Ignored: a TPACKET_V3 ring's block timer. The ring is TPACKET_V2 since
   * issue 11 (session 8), each frame handed over on its own (afpacket.c).
   */
  blockTimeoutMs?: number;
  /** PACKET_FANOUT (hash) group id 0..65535; omit for a socket of its own. */
  fanout?: number;
  /** Open the socket in this network namespace (e.g. /run/netns/nvl-x); the calling thread stays where it is. */
  netns?: string;
  /** PACKET_QDISC_BYPASS: 1 sends straight to the driver. */
  qdiscBypass?: number;
  /**
   * PACKET_VNET_HDR: 1 passes each frame's offload state (partial checksum,
   * GSO) to the data plane and cuts GSO super-frames into segments (needs
   * descFlags first). 0: such frames go on unfinished, super-frames are `oversize`.
   */
  vnetHdr?: number;
  /**
   * underlay.vlan: the link is a tagged uplink. Frames leave with this 802.1Q
   * tag after the MACs; only frames with it are received, without it (others
   * are counted as `vlanOther`). 0 or absent: untagged.
   */
  vlan?: number;
  /**
   * With vnetHdr: offer a TCP super-frame's segment 0 to the data plane whole
   * (IF_GSO_WHOLE, assembly/pipeline/gso.ts) rather than cutting it at once
   * (default 1; 0: always cut).
   */
  whole?: number;
}

export interface SocketStats {
  rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; txErrors: number;
  /** Frames longer than a slot (or truncated by the ring): dropped before the data plane. */
  oversize: number;
  /** Frames whose L4 checksum the sender left to offload (TP_STATUS_CSUMNOTREADY): the data plane completes it (with vnetHdr). */
  csumNotReady: number;
  /** GSO super-frames cut into segments, the segments they gave, and super-frames that could not be cut (bad gso_size). */
  gsoFrames: number;
  gsoSegments: number;
  gsoBad: number;
  /**
   * TCP super-frames sent whole (assembly/pipeline/gso.ts: the data plane took
   * segment 0's output whole, send() gathered the rest from this socket's
   * ring); their segment 0 counts in gsoSegments, the rest in no segment.
   * Stale: a whole output whose super-frame was no longer at the ring's head
   * (not sent). Errors: one whose output socket cannot take it (lost).
   */
  gsoWholeSent: number;
  gsoWholeStale: number;
  gsoWholeErrors: number;
  /** PACKET_STATISTICS: frames the kernel dropped because the ring was full. */
  kernelDrops: number;
  kernelFreezes: number;
  /**
   * Frames longer than a ring frame (2048 bytes: GSO super-frames, jumbo
   * frames) taken whole from the socket's copy queue (TPACKET_V2 with
   * PACKET_COPY_THRESH, afpacket.c); one that found the queue full is `oversize`.
   */
  copied?: number;
  /**
   * 64 KiB buffers the socket holds for such frames (afpacket.c takeBuf /
   * giveBuf): the last one given back is the next one taken, so a stream of
   * super-frames sent whole one by one uses 1-2 (at most 18: 16 offered whole
   * in one batch, one being cut, one receiving).
   */
  bigBuffers?: number;
  /** On a tagged uplink (vlan): frames that came untagged or with another VLAN id, dropped. */
  vlanOther: number;
  /**
   * Encap super-frames sent whole through the socket's tunnel TX tap
   * (tunnelTx; one VXLAN/Geneve frame with a UDP-tunnel GSO request each,
   * counted in txFrames/txBytes as one frame of its whole length, as the
   * uplink counts the GSO skb), and those the tap refused (lost; in txErrors
   * too), with the last refusal's reason (tuntx.ts TX_STATUS).
   */
  gsoTunnelSent: number;
  gsoTunnelErrors: number;
  gsoTunnelLastError?: string;
}

export interface PacketAddon {
  open(ifname: string, opts?: OpenOptions): number;
  close(handle: number): void;
  recv(handle: number, mem: ArrayBuffer, slotBase: number, slotSize: number, headroom: number,
       inDescBase: number, first: number, max: number, port: number, timeoutMs: number): number;
  send(handlesByPort: number[], mem: ArrayBuffer, outDescBase: number, hdrBase: number, hdrSlot: number, count: number): number;
  /** spinUs: poll without waiting for up to that long first (worker.ts, after a batch). */
  poll(handles: number[], timeoutMs: number, wakeFd?: number, spinUs?: number): number;
  /** The in-desc flag bits the data plane uses (DataPlane layout.descFlags), before any open with vnetHdr. */
  descFlags(vnet: number, gsoSeg: number, gsoLast: number, segShift: number): void;
  eventfd(): number;
  wake(fd: number): void;
  closeFd(fd: number): void;
  stats(handle: number): SocketStats;
  /**
   * Encap super-frames (the data plane's OGK_TUNNEL outputs) this socket
   * sends go whole through the tuntx tap `fd` (host/io/tuntx.ts TunTx.fd on
   * the same interface; -1 detaches); udpCsum: the tap was opened with it;
   * mtu: the uplink's. Set GSO_CAP_TUNNEL on the port only after this.
   */
  tunnelTx(handle: number, fd: number, udpCsum: number, mtu: number): void;
  /** madvise(MADV_HUGEPAGE) on the whole 2 MiB pages of buf[offset, offset+length); the bytes advised. */
  adviseHuge(buf: ArrayBuffer, offset: number, length: number): number;
  /**
   * Faults in buf's [offset, length] ranges (pairs in `ranges`) on a thread of
   * its own (madvise MADV_POPULATE_WRITE), the last first, each from its end
   * down; buf must stay alive until prefaultJoin. Issue 15: native/afpacket.c.
   */
  prefault(buf: ArrayBuffer, ranges: Float64Array): PrefaultHandle;
  /** Waits for a prefault thread: the bytes it faulted in (the whole 4 KiB pages covering the ranges); throws with errno's text (MADV_POPULATE_WRITE before Linux 5.14: EINVAL). */
  prefaultJoin(h: PrefaultHandle): number;
  /** The calling thread's scheduling (afpacket.c SchedSelf): policy 0 SCHED_OTHER at nice with an EEVDF slice, 1 SCHED_FIFO at rtPrio; "" or why not. */
  schedSelf(policy: 0 | 1, nice: number, sliceUs: number, rtPrio: number): string;
  /** The hash of the data plane ABI (host/io/native/abi.h) the addon was compiled with. */
  readonly abiHash: number;
}

/** A running prefault thread (an N-API external). */
export type PrefaultHandle = { readonly __prefault: unique symbol };

export const addonPath = addonFile();

let cached: PacketAddon | undefined;

/** The addon, or a clear error saying how to build it. */
export function loadAddon(): PacketAddon {
  if (cached) return cached;
  if (process.platform !== "linux") throw new Error("--io afpacket needs Linux (AF_PACKET)");
  if (!existsSync(addonPath)) throw new Error(`the packet I/O addon is not built (${addonPath} missing): run node scripts/build.mjs --addon`);
  const a = createRequire(import.meta.url)(addonPath) as PacketAddon;
  // Slots and descriptors are written by the addon at the offsets it was
  // compiled with: an addon built before the data plane's layout changed
  // would corrupt frames, so it is refused (scripts/abi.mjs).
  if (a.abiHash !== ABI_HASH) {
    throw new Error(`the packet I/O addon ${addonPath} was built for another data plane ABI (${a.abiHash === undefined ? "none" : `0x${(a.abiHash >>> 0).toString(16)}`}, this data plane is 0x${ABI_HASH.toString(16)}): run node scripts/build.mjs --addon`);
  }
  cached = a;
  return cached;
}
