// Loads the AF_XDP addon (host/io/native/afxdp, built by `node scripts/build.mjs
// --addon` when libbpf and clang are there) and fronts it with the calls the
// packet I/O worker makes of the AF_PACKET addon (addon.ts), so the worker's
// loop is one loop for both (`nvedge run --io afxdp|afpacket`).
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { root } from "../paths.js";
import type { OpenOptions, PacketAddon, SocketStats } from "./addon.js";

export interface XdpAddon {
  open(ifname: string, o: { netns?: string; queue?: number; program: string; zeroCopy?: number; vlan?: number }): number;
  close(h: number): void;
  mode(h: number): { socket: "zero-copy" | "copy"; xdp: "native" | "generic"; vlanMeta: boolean };
  descFlags: PacketAddon["descFlags"];
  recv: PacketAddon["recv"];
  send: PacketAddon["send"];
  poll: PacketAddon["poll"];
  stats(h: number): XdpStats;
  /** The CPU the socket's queue last received on (its XDP program notes it), or -1. */
  rxCpu(h: number): number;
  /** The calling thread off the CPUs these sockets receive on (afxdp.c AvoidRxCpus): 1 changed, 0 not, -errno refused. */
  avoidRxCpus(handles: number[]): number;
  /** The calling thread's CPUs (sched_getaffinity). */
  cpus(): number[];
  /** Sets the calling thread's CPUs (and avoidRxCpus starts from them). */
  setCpus(cpus: number[]): void;
}

/**
 * A socket's figures: AF_PACKET's, and the kernel's XDP_STATISTICS one by
 * one (afxdp.c Stats): kernelDrops = rxDropped (no fill entry) + rxRingFull.
 */
export type XdpStats = SocketStats & { txFull: number; invalidDescs: number; rxDropped: number; rxRingFull: number; fillRingEmpty: number; txRingEmpty: number };

/** The calls of the worker's loop, over AF_XDP: `queue` is the receive queue each socket binds to (the worker's id). */
export type PacketIo = Pick<PacketAddon, "close" | "recv" | "send" | "poll" | "stats" | "descFlags"> & {
  open(ifname: string, opts: OpenOptions): number;
  /** How a socket runs, for the log ("afxdp: copy mode, native XDP"). */
  mode(h: number): string;
  rxCpu: XdpAddon["rxCpu"];
  avoidRxCpus: XdpAddon["avoidRxCpus"];
};

/** The addon itself (tests: cpus/setCpus around avoidRxCpus, which changes the calling thread's CPUs). */
export function xdpAddon(): XdpAddon {
  loadXdpIo(0);
  return cached!;
}

const dir = join(root, "host", "io", "native", "afxdp", "build", "Release");
export const xdpAddonPath = join(dir, "nvedge_afxdp.node");
export const xdpProgramPath = join(dir, "xsk_redirect.bpf.o");

let cached: XdpAddon | undefined;

/** The AF_XDP I/O for queue `queue`, or a clear error saying how to build it. */
export function loadXdpIo(queue: number): PacketIo {
  if (process.platform !== "linux") throw new Error("--io afxdp needs Linux (AF_XDP)");
  if (!existsSync(xdpAddonPath) || !existsSync(xdpProgramPath))
    throw new Error(`the AF_XDP addon is not built (${xdpAddonPath} or its XDP program missing): install libbpf-dev and clang (scripts/system-deps.sh), then node scripts/build.mjs --addon`);
  const x = (cached ??= createRequire(import.meta.url)(xdpAddonPath) as XdpAddon);
  return {
    open: (ifname, o) => x.open(ifname, { netns: o.netns, queue, program: xdpProgramPath, vlan: o.vlan ?? 0 }),
    close: (h) => x.close(h),
    recv: x.recv, send: x.send, poll: x.poll, descFlags: x.descFlags,
    stats: (h) => x.stats(h),
    rxCpu: (h) => x.rxCpu(h),
    avoidRxCpus: (hs) => x.avoidRxCpus(hs),
    // vlanMeta false: an 802.1Q tag the driver leaves in the packet's metadata cannot be read (xsk_redirect.bpf.c)
    mode: (h) => { const m = x.mode(h); return `${m.socket} mode, ${m.xdp} XDP${m.vlanMeta ? "" : ", 802.1Q tags in metadata not restored"}`; },
  };
}
