// The encap super-frame output of an AF_PACKET worker (issue 11, TCP VM ->
// remote): a VM's TSO super-frame goes through the data plane whole
// (assembly/pipeline/gso.ts) and leaves as ONE VXLAN/Geneve frame with a
// UDP-tunnel GSO request, through a tuntx tap (host/io/tuntx.ts, native/tuntx.c)
// whose ingress a tc program redirects to the uplink, instead of ~45 frames
// cut in software. Each worker opens its own tap (a fd per thread, no lock):
// the AF_PACKET addon writes each encap super-frame to it in its socket's
// output order (native/afpacket.c sendTunnel), and the data plane is told the
// uplink can take them (GSO_CAP_TUNNEL) only once the tap is open.
//
// When the kernel cannot (tun without TUN_F_UDP_TUNNEL_GSO before Linux 6.17,
// no tcx before 6.6, no CAP_BPF) or the configuration says no
// (underlay.tunnelGso "off"), encap super-frames are cut in software as
// before; the returned text says which, for the log. A tagged uplink
// (underlay.vlan) is served too: the socket puts the tag after the MACs as
// for every frame it sends and the offsets move by 4 (afpacket.c sendTunnel);
// the kernel's tunnel segmentation handles a tagged super-frame (test/io-tuntx).
import type { PacketAddon } from "./addon.js";
import { TunTx } from "./tuntx.js";

export interface TunnelOutputOptions {
  /** The uplink (underlay.port) and its socket in this worker. */
  uplink: string;
  handle: number;
  /** This worker's index (names the tap). */
  worker: number;
  /** underlay.tunnelGso: "auto" (the tap when the kernel has it) or "off" (always cut in software). */
  mode: "auto" | "off";
  /** underlay.vlan (0: untagged; the socket tags, the tap path follows). */
  vlan: number;
  /** The namespace the sockets are opened in (OpenOptions.netns). */
  netns?: string;
}

export interface TunnelOutput {
  /** The open tap (undefined: encap super-frames are cut in software). */
  tx?: TunTx;
  /** For the log: whole via which tap, or cut in software and why. */
  mode: string;
}

/**
 * A tap name of at most 15 characters, unique per process and worker in the
 * namespace (a second nvedge in the same namespace has another pid).
 */
export function tunnelTapName(pid: number, worker: number): string {
  return `nvtx${pid % 10_000_000}w${worker}`.slice(0, 15);
}

/** Opens the worker's tunnel TX tap and attaches it to the uplink's socket, or says why not. */
export function openTunnelOutput(addon: Pick<PacketAddon, "tunnelTx">, o: TunnelOutputOptions): TunnelOutput {
  return startTunnelOutput(addon, o)();
}

/**
 * The same, the tap made on a thread of the tuntx addon's while the caller
 * goes on (TunTx.openStart; issue 15: a worker restores its table image
 * meanwhile); returns the finish, which attaches it (or says why not).
 * Call the finish exactly once, also on the way out of a failed start: it
 * owns the tap until then.
 */
export function startTunnelOutput(addon: Pick<PacketAddon, "tunnelTx">, o: TunnelOutputOptions): () => TunnelOutput {
  const cut = (why: string) => ({ mode: `${o.uplink}: encap TCP super-frames cut in software (${why})` });
  if (o.mode === "off") return () => cut("underlay.tunnelGso is off");
  const tap = tunnelTapName(process.pid, o.worker);
  let finish: () => TunTx;
  try {
    // the outer UDP checksum per segment: IPv6 underlays need it (RFC 8200 section 8.1)
    finish = TunTx.openStart(tap, o.uplink, { udpCsum: true, ...(o.netns ? { netns: o.netns } : {}) });
  } catch (e) {
    return () => cut(`no tunnel TX tap: ${(e as Error).message}`);
  }
  return () => {
    let tx: TunTx;
    try {
      tx = finish();
    } catch (e) {
      return cut(`no tunnel TX tap: ${(e as Error).message}`);
    }
    try {
      addon.tunnelTx(o.handle, tx.fd, 1, tx.stats().mtu);
    } catch (e) {
      tx.close();
      return cut(`no tunnel TX tap: ${(e as Error).message}`);
    }
    return { tx, mode: `${o.uplink}: encap TCP super-frames sent whole via tap ${tap} (UDP-tunnel GSO${o.vlan ? `, tagged ${o.vlan}` : ""})` };
  };
}
