// The data plane test fixture: one NVE with two access ports (acc1, acc2),
// an underlay port (uplink), four VNs (VXLAN, Geneve, NVGRE, and a VXLAN VN
// with a QoS profile and a small MTU), local VNICs on both ports (one of them
// only Associated), three remote NVEs on every VN's flood list, two of which
// hold MAC/IP bindings. The same fixture exists for an IPv4 and an IPv6
// underlay; a test builds one DataPlane per family.
//
// Everything is given twice on purpose: as the configuration file of
// INTERFACES.md (for `nvedge pcap|trace` through the real CLI) and as the DpOp
// list of host/dataplane/ops.ts (for DataPlane.apply), derived here by a
// plain reading of INTERFACES.md ("a VN's flood list is every remote that
// lists the VN, plus the VN's other local ports").
import type { DpOp, VnProfile } from "../../host/dataplane/ops.js";
import * as E from "./encoder.js";

export type Family = 4 | 6;

export const ACC1 = "acc1";
export const ACC2 = "acc2";
export const UPLINK = "uplink";
export const ACCESS_PORTS = [ACC1, ACC2];

export const UNDERLAY_MAC = "02:00:00:00:01:01";
export const GATEWAY_MAC = "02:00:00:00:01:fe";
export const VXLAN_PORT = 4789;
export const GENEVE_PORT = 6081;

export function underlayIp(f: Family): string {
  return f === 4 ? "192.0.2.1" : "2001:db8:ffff::1";
}

export interface RemoteNve {
  name: string;
  ip4: string;
  ip6: string;
  /** Index used in the MACs/IPs it holds (0 = flood-only, holds nothing). */
  host: number;
}
export const REMOTES: RemoteNve[] = [
  { name: "nve-r1", ip4: "192.0.2.11", ip6: "2001:db8:ffff::11", host: 0x0b },
  { name: "nve-r2", ip4: "192.0.2.12", ip6: "2001:db8:ffff::12", host: 0x0c },
  { name: "nve-r3", ip4: "192.0.2.13", ip6: "2001:db8:ffff::13", host: 0 },
];
export function remoteIp(r: RemoteNve, f: Family): string {
  return f === 4 ? r.ip4 : r.ip6;
}
/** An underlay address that is on no flood list (decap from it: unknown-vtep). */
export function strangerIp(f: Family): string {
  return f === 4 ? "192.0.2.99" : "2001:db8:ffff::99";
}

export interface VnFixture {
  id: number;
  vni: number;
  alias: string;
  profile: VnProfile;
  /** Tag of this VN on acc1 and acc2 (deliberately different: hairpin re-tags). */
  tags: Record<string, number>;
}

export const VNS: VnFixture[] = [
  { id: 100, vni: 5000, alias: "blue", tags: { [ACC1]: 10, [ACC2]: 20 },
    profile: { encap: "vxlan", service: "l2", mtu: 1500, portSecurity: true, arpSuppress: true, learn: "explicit" } },
  { id: 200, vni: 6000, alias: "green", tags: { [ACC1]: 11, [ACC2]: 21 },
    profile: { encap: "geneve", service: "l2", mtu: 1500, portSecurity: true, arpSuppress: true, learn: "explicit" } },
  // NVGRE: a VSID above the reserved 0..0xFFF (RFC 7637 §3.2).
  { id: 300, vni: 7000, alias: "red", tags: { [ACC1]: 12, [ACC2]: 22 },
    profile: { encap: "nvgre", service: "l2", mtu: 1500, portSecurity: true, arpSuppress: true, learn: "explicit" } },
  // A profile DSCP (EF) overrides the inner PCP; no port security; a small MTU.
  { id: 400, vni: 8000, alias: "qos", tags: { [ACC1]: 13, [ACC2]: 23 },
    profile: { encap: "vxlan", service: "l2", mtu: 1400, portSecurity: false, arpSuppress: false, learn: "explicit", qos: { dscp: 46 } } },
];
export function vn(id: number): VnFixture {
  const v = VNS.find((x) => x.id === id);
  if (!v) throw new Error(`no fixture VN ${id}`);
  return v;
}
export function vnByEncap(kind: E.EncapKind): VnFixture {
  return VNS.find((v) => v.profile.encap === kind && !v.profile.qos)!;
}

/** A VNIC (local or remote) with its MAC and IPs in one VN. */
export interface Host {
  vn: number;
  mac: string;
  ip4: string;
  ip6: string;
  /** Local: the access port; remote: undefined. */
  port?: string;
  /** Local: Activated (true) or only Associated (false). */
  active?: boolean;
  /** Remote: the NVE holding it. */
  nve?: RemoteNve;
}

function hostAddrs(vnId: number, n: number): { mac: string; ip4: string; ip6: string } {
  const v = vnId / 100;
  const h = (x: number) => x.toString(16).padStart(2, "0");
  return { mac: `02:00:5e:${h(v)}:${h(n)}:01`, ip4: `10.${v}.0.${n}`, ip6: `2001:db8:${v}::${n.toString(16)}` };
}

/** The local VNICs of a VN: L1 (acc1), L2 (acc2), L3 (acc1, Associated only), L4 (acc1, second VNIC on the port). */
export function locals(vnId: number): { L1: Host; L2: Host; L3: Host; L4: Host } {
  return {
    L1: { vn: vnId, ...hostAddrs(vnId, 1), port: ACC1, active: true },
    L2: { vn: vnId, ...hostAddrs(vnId, 2), port: ACC2, active: true },
    L3: { vn: vnId, ...hostAddrs(vnId, 3), port: ACC1, active: false },
    L4: { vn: vnId, ...hostAddrs(vnId, 4), port: ACC1, active: true },
  };
}
/** The remote VNICs of a VN: R1 behind nve-r1, R2 behind nve-r2. */
export function remotes(vnId: number): { R1: Host; R2: Host } {
  return {
    R1: { vn: vnId, ...hostAddrs(vnId, REMOTES[0].host), nve: REMOTES[0] },
    R2: { vn: vnId, ...hostAddrs(vnId, REMOTES[1].host), nve: REMOTES[1] },
  };
}
/** A MAC nobody has in the VN (unknown unicast). */
export function unknownMac(vnId: number): string {
  return hostAddrs(vnId, 0x77).mac;
}

/** The DpOp list that programs the fixture into a DataPlane for one underlay family (a fresh copy each call). */
export function fixtureOps(f: Family): DpOp[] {
  return structuredClone(buildOps(f));
}
function buildOps(f: Family): DpOp[] {
  const ops: DpOp[] = [
    { op: "underlay", port: UPLINK, ip: underlayIp(f), mac: UNDERLAY_MAC, gatewayMac: GATEWAY_MAC, udpPort: VXLAN_PORT,
      genevePort: GENEVE_PORT },
    ...ACCESS_PORTS.map((port): DpOp => ({ op: "port", port })),
  ];
  for (const v of VNS) {
    ops.push({ op: "vn", vn: v.id, vni: v.vni, profile: v.profile });
    for (const port of ACCESS_PORTS) ops.push({ op: "tag", port, tag: v.tags[port], vn: v.id });
    for (const h of Object.values(locals(v.id))) {
      ops.push({ op: "mac.local", vn: v.id, mac: h.mac, port: h.port!, active: h.active! });
      ops.push({ op: "ip", vn: v.id, ip: h.ip4, mac: h.mac }, { op: "ip", vn: v.id, ip: h.ip6, mac: h.mac });
    }
    for (const h of Object.values(remotes(v.id))) {
      ops.push({ op: "mac.remote", vn: v.id, mac: h.mac, nve: remoteIp(h.nve!, f) });
      ops.push({ op: "ip", vn: v.id, ip: h.ip4, mac: h.mac }, { op: "ip", vn: v.id, ip: h.ip6, mac: h.mac });
    }
    for (const r of REMOTES) ops.push({ op: "flood.join", vn: v.id, nve: remoteIp(r, f) });
  }
  return ops;
}

/** Deterministic VNIC UUIDs (the config schema wants UUIDs). */
function uuid(vnId: number, n: number): string {
  return `00000000-0000-4000-8000-${vnId.toString(16).padStart(6, "0")}${n.toString(16).padStart(6, "0")}`;
}

/** The same fixture as an INTERFACES.md configuration file (JSON-serialisable; a fresh copy each call, free to edit). */
export function fixtureConfig(f: Family): Record<string, unknown> {
  return structuredClone(buildConfig(f));
}
function buildConfig(f: Family): Record<string, unknown> {
  return {
    nve: "nve-test",
    underlay: { port: UPLINK, ip: underlayIp(f), mac: UNDERLAY_MAC, gatewayMac: GATEWAY_MAC, udpPort: VXLAN_PORT, genevePort: GENEVE_PORT },
    ports: ACCESS_PORTS.map((name) => ({ name, hypervisors: [`hv-${name}`] })),
    vns: VNS.map((v) => ({ id: v.id, alias: v.alias, vni: v.vni, profile: v.profile })),
    vnics: VNS.flatMap((v) => Object.values(locals(v.id)).map((h, i) => ({
      vnic: uuid(v.id, i + 1), port: h.port, state: h.active ? "active" : "associated",
      vns: [{ vn: v.id, tag: v.tags[h.port!], addrs: [{ mac: h.mac, ips: [h.ip4, h.ip6] }] }],
    }))),
    remotes: REMOTES.map((r) => ({
      nve: r.name, ip: remoteIp(r, f), vns: VNS.map((v) => v.id),
      addrs: r.host ? VNS.map((v) => {
        const h = hostAddrs(v.id, r.host);
        return { vn: v.id, mac: h.mac, ips: [h.ip4, h.ip6] };
      }) : [],
    })),
  };
}

// ---------------------------------------------------------------- frames

/** A tagged UDP frame from local host `from` (on its port, with that port's tag for the VN) to MAC/IP `to`. */
export function accessFrame(from: Host, to: { mac: string; ip4: string; ip6: string }, o: { family?: Family; pcp?: number;
  payloadLen?: number; srcPort?: number; dstPort?: number; fill?: number } = {}): E.Bytes {
  const fam = o.family ?? 4;
  return E.udpFrame({ dst: to.mac, src: from.mac, tag: { vid: vn(from.vn).tags[from.port!], pcp: o.pcp ?? 0 },
    srcIp: fam === 4 ? from.ip4 : from.ip6, dstIp: fam === 4 ? to.ip4 : to.ip6, payloadLen: o.payloadLen,
    srcPort: o.srcPort, dstPort: o.dstPort, fill: o.fill });
}

/** The underlay header of the fixture NVE toward remote `r` (what we must send), or from `r` to us (what we receive). */
export function underlayTo(r: RemoteNve | string, f: Family, dscp = 0): E.Underlay {
  return { srcMac: UNDERLAY_MAC, dstMac: GATEWAY_MAC, src: underlayIp(f), dst: typeof r === "string" ? r : remoteIp(r, f), dscp };
}
export function underlayFrom(r: RemoteNve | string, f: Family): E.Underlay {
  return { srcMac: GATEWAY_MAC, dstMac: UNDERLAY_MAC, src: typeof r === "string" ? r : remoteIp(r, f), dst: underlayIp(f) };
}

/** An overlay frame as a remote NVE would send it to us, carrying `inner` (untagged) in VN `vnId`'s encapsulation. */
export function fromRemote(r: RemoteNve | string, f: Family, vnId: number, inner: E.Bytes, o: Partial<E.EncapOpts> = {},
                           tunnel?: E.Bytes): E.Bytes {
  const v = vn(vnId);
  const kind = v.profile.encap;
  return E.overlayFrame(underlayFrom(r, f), { kind, vni: v.vni, entropy: kind === "nvgre" ? 0x11 : 51000, ...o }, inner, tunnel);
}

/** An untagged inner frame from remote host `from` to MAC/IP `to`. */
export function innerFrame(from: { mac: string; ip4: string; ip6: string }, to: { mac: string; ip4: string; ip6: string },
                           o: { family?: Family; payloadLen?: number; fill?: number } = {}): E.Bytes {
  const fam = o.family ?? 4;
  return E.udpFrame({ dst: to.mac, src: from.mac, tag: null, srcIp: fam === 4 ? from.ip4 : from.ip6,
    dstIp: fam === 4 ? to.ip4 : to.ip6, payloadLen: o.payloadLen, fill: o.fill });
}

/** The 802.1Q tag of VN `vnId` on `port`, with PCP `pcp`. */
export function tagOf(vnId: number, port: string, pcp = 0): E.Tag {
  return { vid: vn(vnId).tags[port], pcp };
}

export const BROADCAST = { mac: "ff:ff:ff:ff:ff:ff", ip4: "10.255.255.255", ip6: "ff02::1" };

// ---------------------------------------------------------------- running frames

/** The part of host/dataplane's DataPlane the tests drive (kept structural so this file needs no import of it). */
export interface Counters {
  frames: { rx: number; forwarded: number; outputs: number; dropped: number };
  drops: Record<string, number>;
  ports: Record<string, { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; drops: number }>;
  vns: Record<string, { rxFrames: number; txFrames: number; encap: number; decap: number; flood: number; drops: number }>;
}
export interface DpLike {
  apply(ops: DpOp[]): void;
  run(port: string, frames: Uint8Array[]): { port: string; frame: Uint8Array; in: number }[];
  counters(): Counters;
}

/** The drop reasons whose counters grew between two snapshots, with by how much. */
export function dropDelta(before: Counters, after: Counters): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.drops)) if (v !== (before.drops[k] ?? 0)) out[k] = v - (before.drops[k] ?? 0);
  return out;
}

export interface Sent {
  outs: { port: string; frame: E.Bytes }[];
  /** The one reason counted for the frame, or undefined if none was. */
  drop?: string;
  drops: Record<string, number>;
}

/** Feeds one frame into `port`; returns what left and what drop counter moved. */
export function send(dp: DpLike, port: string, frame: E.Bytes): Sent {
  const before = dp.counters();
  const outs = dp.run(port, [frame]).map((o) => ({ port: o.port, frame: o.frame }));
  const drops = dropDelta(before, dp.counters());
  const names = Object.keys(drops);
  return { outs, drops, drop: names.length === 1 && drops[names[0]] === 1 ? names[0] : undefined };
}
