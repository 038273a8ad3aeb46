// The tunnel-TX lab (issue 11, TCP VM -> remote): proves and measures the
// super-frame TX path of host/io/tuntx.ts against the Linux kernel's VXLAN
// and Geneve VTEPs, for test/io-tuntx.test.ts and bench/tunnel-tx.ts.
//
//   [dut]  TCP sender (10.0.0.1 on nvl-vm, a tap with TSO: the "VM")
//            -> relay (tunnel-tx-relay.ts: reads each super-frame, puts the outer header before it)
//            -> nvl-tx (tuntx tap, UDP-tunnel GSO) --tc redirect--> nvl-ul ==veth== nvl-ul [rem]
//   [rem]  nvl-vx (kernel VXLAN, 10.0.0.2) / nvl-gnv (kernel Geneve, 10.0.1.2) -> sockets
//   back:  [rem] nvl-vx -> VXLAN -> [dut] nvl-vxr (kernel VXLAN, receive only) -> the sender's stack
//
// The return path is the kernel's own (the ACKs are small; this lab is about
// the VM -> remote direction). The "VM" is the dut namespace's own TCP stack
// behind a tap with TUN_F_CSUM|TSO4|TSO6, which hands over what a VM's
// virtio-net does: whole TSO super-frames with partial checksums.
//
// Addresses: underlay 192.0.2.0/24 or 2001:db8:ffff::/64 (RFC 5737 / RFC
// 3849), overlay 10.0.0.0/24 (VXLAN) and 10.0.1.0/24 (Geneve), all inside
// the lab's namespaces (names nvl-<id>-dut/-rem); `txLabDown` removes them.
import { randomBytes } from "node:crypto";
import { sh, netnsList, netnsPids, killPids } from "../sys/sh.js";
import { LAB_PREFIX } from "./topology.js";

export interface TxLab {
  id: string;
  family: 4 | 6;
  vni: number;
  /** The overlay's IP MTU (1500 less the tunnel's 50 or 70 bytes). */
  mtu: number;
  dut: { ns: string; nsPath: string; uplink: string; mac: string; ip: string; vmTap: string; txTap: string; rxVx: string; rxMac: string; vmIp: string };
  rem: { ns: string; uplink: string; mac: string; ip: string; vx: string; hostIp: string; hostMac: string; gnv: string; gnvIp: string; gnvMac: string };
  /** Why the remote has no Geneve VTEP (a kernel built without geneve), or undefined when it has one. */
  noGeneve?: string;
}

/** Builds the lab's namespaces and the remote's VTEPs (the taps come with the relay). On failure removes what it made and throws. */
export function txLabUp(o: { family?: 4 | 6 } = {}): TxLab {
  const family = o.family ?? 4;
  const v6 = family === 6;
  const id = "t" + randomBytes(3).toString("hex");
  const dutNs = `${LAB_PREFIX}${id}-dut`;
  const l: TxLab = {
    id, family, vni: 5000, mtu: v6 ? 1430 : 1450,
    dut: { ns: dutNs, nsPath: `/run/netns/${dutNs}`, uplink: "nvl-ul", mac: "02:00:00:00:01:01", ip: v6 ? "2001:db8:ffff::1" : "192.0.2.1",
           vmTap: "nvl-vm", txTap: "nvl-tx", rxVx: "nvl-vxr", rxMac: "02:00:5e:00:01:01", vmIp: "10.0.0.1" },
    rem: { ns: `${LAB_PREFIX}${id}-rem`, uplink: "nvl-ul", mac: "02:00:00:00:02:01", ip: v6 ? "2001:db8:ffff::20" : "192.0.2.20",
           vx: "nvl-vx", hostIp: "10.0.0.2", hostMac: "02:00:5e:00:02:01", gnv: "nvl-gnv", gnvIp: "10.0.1.2", gnvMac: "02:00:5e:00:03:01" },
  };
  const plen = v6 ? "64" : "24";
  try {
    for (const ns of [l.dut.ns, l.rem.ns]) {
      sh(["ip", "netns", "add", ns]);
      sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
      // no router solicitations or MLD on the links under test; reverse-path
      // filtering off: the sender's ACKs come back on another device (nvl-vxr)
      sh(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1",
          "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"], { ns });
    }
    const { dut: d, rem: r } = l;
    const ip = (ns: string, ...a: string[]) => sh(["ip", "-n", ns, ...a]);
    ip(d.ns, "link", "add", d.uplink, "address", d.mac, "type", "veth", "peer", "name", r.uplink, "address", r.mac, "netns", r.ns);
    if (v6) for (const ns of [d.ns, r.ns]) sh(["sysctl", "-qw", "net.ipv6.conf.nvl-ul.disable_ipv6=0", "net.ipv6.conf.nvl-ul.accept_dad=0"], { ns });
    for (const [ns, a] of [[d.ns, d.ip], [r.ns, r.ip]]) {
      ip(ns, "addr", "add", `${a}/${plen}`, "dev", "nvl-ul", ...(v6 ? ["nodad"] : []));
      ip(ns, "link", "set", "nvl-ul", "up");
    }
    // static neighbours: the lab is about the tunnel, not resolution
    ip(d.ns, "neigh", "replace", r.ip, "lladdr", r.mac, "dev", d.uplink, "nud", "permanent");
    ip(r.ns, "neigh", "replace", d.ip, "lladdr", d.mac, "dev", r.uplink, "nud", "permanent");
    // the remote VTEPs: Linux defaults (over IPv6 that includes UDP checksums, which it then requires)
    ip(r.ns, "link", "add", r.vx, "address", r.hostMac, "mtu", String(l.mtu), "type", "vxlan", "id", String(l.vni), "local", r.ip, "remote", d.ip,
       "dstport", "4789", "dev", r.uplink);
    const g = sh(["ip", "-n", r.ns, "link", "add", r.gnv, "address", r.gnvMac, "mtu", String(l.mtu), "type", "geneve", "id", String(l.vni), "remote", d.ip], { allowFail: true });
    if (g.code !== 0) l.noGeneve = `this kernel has no Geneve device (${g.stderr.trim()})`;
    for (const [dev, a] of l.noGeneve ? [[r.vx, r.hostIp]] : [[r.vx, r.hostIp], [r.gnv, r.gnvIp]]) {
      ip(r.ns, "addr", "add", `${a}/24`, "dev", dev);
      ip(r.ns, "link", "set", dev, "up");
      ip(r.ns, "neigh", "replace", dev === r.vx ? d.vmIp : "10.0.1.1", "lladdr", d.rxMac, "dev", dev, "nud", "permanent");
    }
    // the return path: the kernel's VXLAN (the sender's ACKs); also the
    // kernel's own encap for comparison (txLabKernelSender), with UDP checksum
    // 0 over IPv4 as tuntx sends it (RFC 7348 section 5)
    ip(d.ns, "link", "add", d.rxVx, "address", d.rxMac, "mtu", String(l.mtu), "type", "vxlan", "id", String(l.vni), "local", d.ip, "remote", r.ip,
       "dstport", "4789", "dev", d.uplink, ...(v6 ? [] : ["noudpcsum"]));
    ip(d.ns, "link", "set", d.rxVx, "up");
    sh(["sysctl", "-qw", `net.ipv4.conf.${d.rxVx}.rp_filter=0`], { ns: d.ns });
    return l;
  } catch (e) {
    // nothing runs in the namespaces yet: removing them removes everything
    for (const ns of [l.dut.ns, l.rem.ns]) sh(["ip", "netns", "del", ns], { allowFail: true });
    throw e;
  }
}

/** The "VM" side, once the relay has made its tap: its address, MTU and the remote host as a static neighbour. */
export function txLabVmUp(l: TxLab): void {
  const ip = (...a: string[]) => sh(["ip", "-n", l.dut.ns, ...a]);
  ip("addr", "add", `${l.dut.vmIp}/24`, "dev", l.dut.vmTap);
  ip("link", "set", l.dut.vmTap, "mtu", String(l.mtu), "up");
  ip("neigh", "replace", l.rem.hostIp, "lladdr", l.rem.hostMac, "dev", l.dut.vmTap, "nud", "permanent");
}

/**
 * The kernel as the sender's NVE instead (bench/tunnel-tx.ts's comparison):
 * the sender's address on the kernel VXLAN device nvl-vxr, which then
 * encapsulates its TSO super-frames itself (UDP-tunnel GSO to the veth);
 * `on` false takes it off again. Not while the relay's "VM" tap has the address.
 */
export function txLabKernelSender(l: TxLab, on: boolean): void {
  const ip = (...a: string[]) => sh(["ip", "-n", l.dut.ns, ...a]);
  if (on) {
    ip("addr", "add", `${l.dut.vmIp}/24`, "dev", l.dut.rxVx);
    ip("neigh", "replace", l.rem.hostIp, "lladdr", l.rem.hostMac, "dev", l.dut.rxVx, "nud", "permanent");
  } else {
    ip("addr", "del", `${l.dut.vmIp}/24`, "dev", l.dut.rxVx);
  }
}

/** Removes the lab's namespaces and every process left in them; the namespaces still there after (none when all went). */
export async function txLabDown(l: TxLab): Promise<string[]> {
  const mine = [l.dut.ns, l.rem.ns];
  const present = new Set(netnsList());
  const ours = mine.filter((n) => present.has(n));
  await killPids(ours.flatMap(netnsPids));
  for (const ns of ours) sh(["ip", "netns", "del", ns], { allowFail: true });
  const left = new Set(netnsList());
  return mine.filter((n) => left.has(n));
}

// ---- headers ----------------------------------------------------------------------

const macBytes = (m: string) => m.split(":").map((x) => parseInt(x, 16));
function ipBytes(a: string): number[] {
  if (!a.includes(":")) return a.split(".").map(Number);
  const [h, t = ""] = a.split("::");
  const hs = h ? h.split(":") : [], ts = t ? t.split(":") : [];
  const words = [...hs, ...Array(8 - hs.length - ts.length).fill("0"), ...ts].map((w) => parseInt(w, 16));
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

/**
 * The outer header of a frame from the lab's NVE to its remote VTEP:
 * Ethernet, IPv4 (DF, TTL 64) or IPv6 (hop limit 64), UDP from `srcPort`,
 * then the VXLAN header (RFC 7348 section 5: I flag, VNI) or the Geneve base
 * header without options (RFC 8926 section 3.4: protocol 0x6558). Lengths and
 * checksums are left 0: tuntx finalises them. Its UDP header is at outerTh.
 */
export function outerHeader(l: TxLab, encap: "vxlan" | "geneve", srcPort = 49152): { bytes: Uint8Array; outerTh: number } {
  const v6 = l.family === 6;
  const eth = [...macBytes(l.rem.mac), ...macBytes(l.dut.mac), v6 ? 0x86 : 0x08, v6 ? 0xdd : 0x00];
  const ipH = v6
    ? [0x60, 0, 0, 0, 0, 0, 17, 64, ...ipBytes(l.dut.ip), ...ipBytes(l.rem.ip)]
    : [0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, ...ipBytes(l.dut.ip), ...ipBytes(l.rem.ip)];
  const udpH = [srcPort >> 8, srcPort & 0xff, ...(encap === "vxlan" ? [0x12, 0xb5] : [0x17, 0xc1]), 0, 0, 0, 0];
  const vni = [(l.vni >> 16) & 0xff, (l.vni >> 8) & 0xff, l.vni & 0xff];
  const tun = encap === "vxlan" ? [0x08, 0, 0, 0, ...vni, 0] : [0, 0, 0x65, 0x58, ...vni, 0];
  return { bytes: Uint8Array.from([...eth, ...ipH, ...udpH, ...tun]), outerTh: eth.length + ipH.length };
}

/** The inner Ethernet + IPv4 + UDP header of a datagram from the lab's "VM" to a remote host (lengths and checksums left 0). */
export function innerUdpHeader(srcMac: string, dstMac: string, src: string, dst: string, srcPort: number, dstPort: number): Uint8Array {
  return Uint8Array.from([...macBytes(dstMac), ...macBytes(srcMac), 0x08, 0x00,
    0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, ...ipBytes(src), ...ipBytes(dst),
    srcPort >> 8, srcPort & 0xff, dstPort >> 8, dstPort & 0xff, 0, 0, 0, 0]);
}
