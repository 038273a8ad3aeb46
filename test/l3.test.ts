// The L3 service (seed §3.1.2; PROTOCOL.md §5 `service: "l3"`, §6 `l3domain`):
// the anycast gateway's ARP/ND answers, routing between the VNs of a domain
// to a local VNIC and to another NVE by symmetric IRB over the L3 VNI, the L3
// VNI's receive side, ICMP / ICMPv6 time exceeded, no-route. Every frame is
// checked byte for byte against the independent encoder (test/support/
// encoder.ts), which builds each expected frame from its RFC layout, never by
// calling the data plane; once through `nvedge pcap` as a child process, then
// in process for what the command line cannot reach (prefix routes, profile
// changes, the fast paths against the full path, refused ops).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { readPcap, writePcap } from "../host/pcap/pcap.js";
import { parseConfig, ConfigError } from "../host/config/load.js";
import { offlineOps } from "../host/control/static.js";
import { DataPlane, DataPlaneError } from "../host/dataplane/dataplane.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { ImaCore, DEFAULT_IMA_SETTINGS } from "../host/ima/core.js";
import { staticDiff } from "../host/cli/reload.js";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { eqBytes, dropped, fixtureLoader } from "./support/dp-fixture.js";
import { dissectFile, problems, stack, tsharkAvailable } from "./support/tshark.js";
import { requireTool } from "./support/tools.js";

const TSHARK = requireTool("tshark", tsharkAvailable, "the tshark dissection of the routed frames");

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = join(ROOT, "bin", "nvedge.js");

const UL_MAC = "02:00:00:00:01:01"; // also our router MAC (underlay.routerMac absent)
const UL_GW = "02:00:00:00:01:fe";
const UL_IP = "192.0.2.1";
const B_IP = "192.0.2.2";
const B_RMAC = "02:00:00:00:02:01"; // nve-b's router MAC, as its vtep record publishes it
const GW = "00:00:5e:00:01:01"; // the anycast gateway MAC, the same for both VNs
const L3VNI = 9001;
const BLUE = { id: 100, vni: 5100, gw4: "10.1.0.1", gw6: "2001:db8:1::1" };
const RED = { id: 200, vni: 5200, gw4: "10.2.0.1", gw6: "2001:db8:2::1" };
// A (blue) behind acc1, B (red) behind acc2, C (red) behind acc1 too, D (red) behind nve-b
const A = { mac: "02:00:5e:00:01:0a", ip4: "10.1.0.10", ip6: "2001:db8:1::a", port: "acc1", tag: 10 };
const B = { mac: "02:00:5e:00:02:0b", ip4: "10.2.0.11", ip6: "2001:db8:2::b", port: "acc2", tag: 20 };
const C = { mac: "02:00:5e:00:02:0c", ip4: "10.2.0.12", ip6: "2001:db8:2::c", port: "acc1", tag: 21 };
const D = { mac: "02:00:5e:00:02:0d", ip4: "10.2.0.13", ip6: "2001:db8:2::d" };

function l3Profile(v: typeof BLUE, o: Record<string, unknown> = {}) {
  return { encap: "vxlan", service: "l3", mtu: 1500, gateway: { ips: [`${v.gw4}/24`, `${v.gw6}/64`], mac: GW }, l3domain: 1, ...o };
}

function config(): Record<string, any> {
  return {
    nve: "nve-a",
    underlay: { port: "uplink", ip: UL_IP, mac: UL_MAC, gatewayMac: UL_GW },
    ports: [{ name: "acc1", hypervisors: ["hv-1"] }, { name: "acc2", hypervisors: ["hv-2"] }],
    l3domains: [{ id: 1, vni: L3VNI }],
    vns: [
      // blue: port security, no ARP suppression (the gateway answers anyway); red: ARP suppression
      { id: BLUE.id, alias: "blue", vni: BLUE.vni, profile: l3Profile(BLUE, { portSecurity: true }) },
      { id: RED.id, alias: "red", vni: RED.vni, profile: l3Profile(RED, { arpSuppress: true }) },
    ],
    vnics: [A, B, C].map((h, i) => ({
      vnic: `00000000-0000-4000-8000-00000000000${i + 1}`, port: h.port,
      vns: [{ vn: h === A ? BLUE.id : RED.id, tag: h.tag, addrs: [{ mac: h.mac, ips: [h.ip4, h.ip6] }] }],
    })),
    remotes: [{ nve: "nve-b", ip: B_IP, routerMac: B_RMAC, vns: [RED.id], addrs: [{ vn: RED.id, mac: D.mac, ips: [D.ip4, D.ip6] }] }],
  };
}

const PAYLOAD = Uint8Array.from({ length: 18 }, (_, i) => (0x5a + i) & 0xff);

/** An IPv4 or IPv6 packet carrying UDP 1234 -> 5678 with PAYLOAD. */
function ipUdp(src: string, dst: string, ttl = 64): E.Bytes {
  const seg = E.udp({ src, dst, srcPort: 1234, dstPort: 5678, payload: PAYLOAD });
  return E.ipPacket({ src, dst, protocol: E.IPPROTO_UDP, payload: seg, ttl });
}
/** An Ethernet frame (tagged with `vid` unless null) carrying IP packet `pkt`. */
function eth(dst: string, src: string, vid: number | null, pkt: E.Bytes): E.Bytes {
  return E.ethernet({ dst, src, tags: vid === null ? [] : [{ vid }], type: pkt[0] >> 4 === 6 ? E.ETH_IPV6 : E.ETH_IPV4, payload: pkt, pad: true });
}
/** From a VNIC to its gateway MAC, for `dst`. */
function toGw(from: typeof A, dst: string, ttl = 64): E.Bytes {
  return eth(GW, from.mac, from.tag, ipUdp(dst.includes(":") ? from.ip6 : from.ip4, dst, ttl));
}

/** RFC 792: Time Exceeded (11, code 0) from `gw` quoting the header and 8 data bytes of `pkt`, to its sender. */
function icmpTe4(to: typeof A, gw: string, pkt: E.Bytes): E.Bytes {
  const quote = pkt.subarray(0, (pkt[0] & 0xf) * 4 + 8);
  const icmp = E.icmpv4(11, 0, E.concat(E.be32(0), quote));
  return eth(to.mac, GW, to.tag, E.ipv4Packet({ src: gw, dst: to.ip4, protocol: E.IPPROTO_ICMP, ttl: 64, df: false, id: 0, payload: icmp }));
}
/** RFC 4443 §3.3: Time Exceeded (3, code 0) from `gw` quoting the whole of `pkt` (it is far below the 1280-byte limit). */
function icmpTe6(to: typeof A, gw: string, pkt: E.Bytes): E.Bytes {
  const icmp = E.icmpv6(gw, to.ip6, 3, 0, E.concat(E.be32(0), pkt));
  return eth(to.mac, GW, to.tag, E.ipv6Packet({ src: gw, dst: to.ip6, nextHeader: E.IPPROTO_ICMPV6, hopLimit: 64, payload: icmp }));
}

/** An echo request (RFC 792 type 8 / RFC 4443 type 128) from `from` to its gateway MAC for `dst`, id 0x1234 seq 7, `n` data bytes. */
function echoBody(n: number): E.Bytes {
  return E.concat(E.be16(0x1234), E.be16(7), Uint8Array.from({ length: n }, (_, i) => (i * 7 + 1) & 0xff));
}
function echo(from: typeof A, dst: string, n: number, ttl = 64): E.Bytes {
  const v6 = dst.includes(":");
  const src = v6 ? from.ip6 : from.ip4;
  const pkt = v6
    ? E.ipv6Packet({ src, dst, nextHeader: E.IPPROTO_ICMPV6, hopLimit: ttl, payload: E.icmpv6(src, dst, 128, 0, echoBody(n)) })
    : E.ipv4Packet({ src, dst, protocol: E.IPPROTO_ICMP, ttl, id: 77, payload: E.icmpv4(8, 0, echoBody(n)) });
  return eth(GW, from.mac, from.tag, pkt);
}
/** The echo reply from gateway address `gw` (type 0 / 129, TTL 64, a fresh IPv4 header), the request's id, sequence and data. */
function echoReply(to: typeof A, gw: string, n: number): E.Bytes {
  const v6 = gw.includes(":");
  const dst = v6 ? to.ip6 : to.ip4;
  const pkt = v6
    ? E.ipv6Packet({ src: gw, dst, nextHeader: E.IPPROTO_ICMPV6, hopLimit: 64, payload: E.icmpv6(gw, dst, 129, 0, echoBody(n)) })
    : E.ipv4Packet({ src: gw, dst, protocol: E.IPPROTO_ICMP, ttl: 64, df: false, id: 0, payload: E.icmpv4(0, 0, echoBody(n)) });
  return eth(to.mac, GW, to.tag, pkt);
}

const U_TO_B: E.Underlay = { srcMac: UL_MAC, dstMac: UL_GW, src: UL_IP, dst: B_IP };
const U_FROM_B: E.Underlay = { srcMac: UL_GW, dstMac: UL_MAC, src: B_IP, dst: UL_IP };
/** A frame nve-b routes to us over the L3 VNI (inner: its router MAC to ours). */
function fromB(src: string, dst: string, ttl: number): E.Bytes {
  return E.overlayFrame(U_FROM_B, { kind: "vxlan", vni: L3VNI, entropy: 51000 }, eth(UL_MAC, B_RMAC, null, ipUdp(src, dst, ttl)));
}

// The cases, each an input on a port and what must leave (null: dropped, counted as `drop`).
interface Case { name: string; port: string; frame: E.Bytes; out: { port: string; frame: E.Bytes } | null; drop?: string; remote?: boolean }
function cases(): Case[] {
  return [
    { name: "routed local IPv4 (blue A -> red B, other port)", port: "acc1", frame: toGw(A, B.ip4),
      out: { port: "acc2", frame: eth(B.mac, GW, B.tag, ipUdp(A.ip4, B.ip4, 63)) } },
    { name: "routed local IPv4 (blue A -> red C, back out of the same port)", port: "acc1", frame: toGw(A, C.ip4),
      out: { port: "acc1", frame: eth(C.mac, GW, C.tag, ipUdp(A.ip4, C.ip4, 63)) } },
    { name: "routed local IPv6 (A -> B)", port: "acc1", frame: toGw(A, B.ip6),
      out: { port: "acc2", frame: eth(B.mac, GW, B.tag, ipUdp(A.ip6, B.ip6, 63)) } },
    // symmetric IRB: the L3 VNI, inner destination nve-b's router MAC, inner source ours (entropy read back)
    { name: "routed remote IPv4 (A -> D behind nve-b)", port: "acc1", frame: toGw(A, D.ip4), remote: true,
      out: { port: "uplink", frame: eth(B_RMAC, UL_MAC, null, ipUdp(A.ip4, D.ip4, 63)) } },
    { name: "routed remote IPv6 (A -> D)", port: "acc1", frame: toGw(A, D.ip6), remote: true,
      out: { port: "uplink", frame: eth(B_RMAC, UL_MAC, null, ipUdp(A.ip6, D.ip6, 63)) } },
    { name: "gateway ARP reply (blue: no suppression)", port: "acc1",
      frame: E.arpFrame({ op: 1, src: A.mac, tag: { vid: A.tag }, spa: A.ip4, tpa: BLUE.gw4 }),
      out: { port: "acc1", frame: E.arpFrame({ op: 2, src: GW, dst: A.mac, tag: { vid: A.tag }, spa: BLUE.gw4, tha: A.mac, tpa: A.ip4 }) } },
    { name: "gateway ARP reply (red: suppression on, the fast path's answer)", port: "acc1",
      frame: E.arpFrame({ op: 1, src: C.mac, tag: { vid: C.tag }, spa: C.ip4, tpa: RED.gw4 }),
      out: { port: "acc1", frame: E.arpFrame({ op: 2, src: GW, dst: C.mac, tag: { vid: C.tag }, spa: RED.gw4, tha: C.mac, tpa: C.ip4 }) } },
    // RFC 4861 §4.4: the router flag set, solicited, override, the gateway MAC as target link-layer address
    { name: "gateway ND reply", port: "acc1",
      frame: E.ethernet({ dst: E.ipv6MulticastMac(E.solicitedNode(BLUE.gw6)), src: A.mac, tags: [{ vid: A.tag }], type: E.ETH_IPV6,
        payload: E.neighborSolicitation({ src: A.ip6, dst: E.solicitedNode(BLUE.gw6), target: BLUE.gw6, sll: A.mac }) }),
      out: { port: "acc1", frame: E.ethernet({ dst: A.mac, src: GW, tags: [{ vid: A.tag }], type: E.ETH_IPV6,
        payload: E.neighborAdvertisement({ src: BLUE.gw6, dst: A.ip6, target: BLUE.gw6, router: true, solicited: true, override: true, tll: GW }) }) } },
    { name: "TTL expiry: ICMP time exceeded from the gateway", port: "acc1", frame: toGw(A, B.ip4, 1),
      out: { port: "acc1", frame: icmpTe4(A, BLUE.gw4, ipUdp(A.ip4, B.ip4, 1)) } },
    { name: "hop limit expiry: ICMPv6 time exceeded from the gateway", port: "acc1", frame: toGw(A, B.ip6, 1),
      out: { port: "acc1", frame: icmpTe6(A, BLUE.gw6, ipUdp(A.ip6, B.ip6, 1)) } },
    { name: "no binding for the destination", port: "acc1", frame: toGw(A, "10.1.0.99"), out: null, drop: "no-route" },
    { name: "echo to the gateway: answered from it", port: "acc1", frame: echo(A, BLUE.gw4, 32), out: { port: "acc1", frame: echoReply(A, BLUE.gw4, 32) } },
    { name: "echo to the other VN's gateway address, TTL 1: answered (it is ours)", port: "acc1", frame: echo(A, RED.gw4, 56, 1),
      out: { port: "acc1", frame: echoReply(A, RED.gw4, 56) } },
    { name: "a short echo: the reply padded to the minimum frame", port: "acc1", frame: echo(A, BLUE.gw4, 0), out: { port: "acc1", frame: echoReply(A, BLUE.gw4, 0) } },
    { name: "ICMPv6 echo to the gateway", port: "acc1", frame: echo(A, BLUE.gw6, 40), out: { port: "acc1", frame: echoReply(A, BLUE.gw6, 40) } },
    { name: "UDP to the gateway: not served", port: "acc1", frame: toGw(A, BLUE.gw4), out: null, drop: "no-route" },
    { name: "no binding for the IPv6 destination", port: "acc1", frame: toGw(A, "2001:db8:9::9"), out: null, drop: "no-route" },
    { name: "L3 VNI receive IPv4 (D -> A)", port: "uplink", frame: fromB(D.ip4, A.ip4, 63),
      out: { port: "acc1", frame: eth(A.mac, GW, A.tag, ipUdp(D.ip4, A.ip4, 62)) } },
    { name: "L3 VNI receive IPv6 (D -> C)", port: "uplink", frame: fromB(D.ip6, C.ip6, 63),
      out: { port: "acc1", frame: eth(C.mac, GW, C.tag, ipUdp(D.ip6, C.ip6, 62)) } },
    { name: "L3 VNI receive with the hop spent: dropped", port: "uplink", frame: fromB(D.ip4, A.ip4, 1), out: null, drop: "ttl-exceeded" },
  ];
}

/** What case `c` expects to leave, the encapsulator's entropy copied from `actual` (it chooses it, per flow). */
function expected(c: Case, actual: Uint8Array | undefined): E.Bytes {
  if (!c.remote) return c.out!.frame;
  const v = E.viewOverlay(actual ?? new Uint8Array(100), "vxlan");
  return E.overlayFrame(U_TO_B, { kind: "vxlan", vni: L3VNI, entropy: v.entropy }, c.out!.frame);
}

async function dataPlane(cfg = config()): Promise<DataPlane> {
  const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12, loader: fixtureLoader });
  dp.apply(offlineOps(parseConfig(JSON.stringify(cfg), "l3.json")));
  return dp;
}

function check(dp: DataPlane, c: Case, label = c.name): void {
  const s = F.send(dp, c.port, c.frame);
  if (!c.out) return dropped(s, c.drop!, label);
  assert.is(s.outs.length, 1, `${label}: one frame out (drops ${JSON.stringify(s.drops)})`);
  assert.is(s.outs[0].port, c.out.port, `${label}: port`);
  eqBytes(s.outs[0].frame, expected(c, s.outs[0].frame), label);
  assert.equal(s.drops, {}, `${label}: no drop counted`);
}

test("nvedge pcap: routed local and remote, L3 VNI receive, gateway ARP/ND, ICMP time exceeded, no-route, byte for byte", () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-l3-"));
  try {
    const cfg = join(dir, "nve.json");
    writeFileSync(cfg, JSON.stringify(config(), null, 2));
    const cs = cases();
    const ins = new Map<string, { frame: Uint8Array; tsSec: number; tsUsec: number; origLen: number }[]>();
    cs.forEach((c, i) => {
      const l = ins.get(c.port) ?? [];
      l.push({ frame: c.frame, tsSec: 100 + i, tsUsec: 0, origLen: c.frame.length });
      ins.set(c.port, l);
    });
    const args = ["pcap", "--config", cfg, "--out-dir", join(dir, "out")];
    for (const [port, pkts] of ins) {
      writePcap(join(dir, `${port}-in.pcap`), pkts);
      args.push("--in", `${port}=${join(dir, `${port}-in.pcap`)}`);
    }
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 60_000 });
    assert.is(r.status, 0, r.stderr);
    const outs = new Map<string, Uint8Array[]>();
    for (const port of ["acc1", "acc2", "uplink"]) outs.set(port, readPcap(join(dir, "out", `${port}.pcap`)).packets.map((p) => p.frame));
    // the command runs each capture in turn, in its time order: each port's outputs come in the cases' order
    const seen = new Map<string, number>();
    const order = [...cs.filter((c) => c.port !== "uplink"), ...cs.filter((c) => c.port === "uplink")];
    for (const c of order) {
      if (!c.out) continue;
      const k = seen.get(c.out.port) ?? 0;
      seen.set(c.out.port, k + 1);
      const got = outs.get(c.out.port)![k];
      assert.ok(got, `${c.name}: missing from ${c.out.port}.pcap`);
      eqBytes(got, expected(c, got), `${c.name} (${c.out.port}.pcap #${k + 1})`);
    }
    for (const [port, l] of outs) assert.is(l.length, seen.get(port) ?? 0, `${port}.pcap holds exactly the expected frames`);
    // tshark, checksums validated, finds nothing wrong with what left (a second opinion, sharing no code with the encoder)
    if (TSHARK) {
      for (const port of ["acc1", "acc2", "uplink"]) {
        const d = dissectFile(join(dir, "out", `${port}.pcap`));
        for (const fr of d) assert.equal(problems(fr), [], `${port}.pcap frame ${fr.number} (${stack(fr)})`);
        if (port === "uplink") assert.ok(d.length > 0 && d.every((fr) => stack(fr).includes(":udp:vxlan:eth:")), "uplink.pcap holds VXLAN");
        if (port === "acc1") assert.ok(d.some((fr) => stack(fr).includes(":icmp")) && d.some((fr) => stack(fr).includes(":icmpv6")), "acc1.pcap holds the ICMP errors");
      }
    }
    const counters = JSON.parse(readFileSync(join(dir, "out", "counters.json"), "utf8"));
    assert.is(counters.drops["no-route"], 3, "no-route counted");
    assert.is(counters.drops["ttl-exceeded"], 1, "the spent hop from the L3 VNI counted");
    assert.is(counters.frames.dropped, 4, "nothing else dropped");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("in process, with and without the fast paths: the same bytes and counters for every case", async () => {
  for (const fast of [true, false]) {
    const dp = await dataPlane();
    dp.fastPaths(fast);
    for (const c of cases()) check(dp, c, `${c.name} (fast paths ${fast ? "on" : "off"})`);
  }
});

test("nvedge trace names the routing decisions: route, the L3 VNI's domain, ICMP time exceeded, no-route", async () => {
  const dp = await dataPlane();
  let t = dp.trace("acc1", toGw(A, B.ip4));
  assert.ok(t.steps.includes("action: route"), t.steps.join("\n"));
  t = dp.trace("uplink", fromB(D.ip4, A.ip4, 63));
  assert.ok(t.steps.includes("l3domain 1 (L3 VNI 9001)") && t.steps.includes("action: route"), t.steps.join("\n"));
  t = dp.trace("acc1", toGw(A, B.ip4, 1));
  assert.ok(t.steps.includes("action: ICMP time exceeded from the gateway"), t.steps.join("\n"));
  t = dp.trace("acc1", toGw(A, "10.1.0.99"));
  assert.is(t.drop, "no-route");
});

test("reload: a domain added comes before its VNs; one removed is deleted, and the data plane takes the diff", async () => {
  const cur = parseConfig(JSON.stringify(config()), "a.json");
  const c2 = config();
  c2.l3domains.push({ id: 2, vni: 9002 });
  c2.vns[1].profile.l3domain = 2;
  const next = parseConfig(JSON.stringify(c2), "b.json");
  const ops = (c: typeof cur) => offlineOps(c).filter((o) => o.op !== "underlay" && o.op !== "port");
  let d = staticDiff(ops(cur), ops(next));
  assert.equal(d.map((o) => o.op), ["l3domain", "vn"], JSON.stringify(d));
  const c3 = config();
  c3.l3domains = [];
  for (const v of c3.vns) v.profile = { encap: "vxlan", mtu: 1500 };
  delete c3.remotes[0].routerMac;
  d = staticDiff(ops(cur), ops(parseConfig(JSON.stringify(c3), "c.json")));
  assert.ok(d.some((o) => o.op === "l3domain.del" && o.id === 1), JSON.stringify(d));
  const dp = await dataPlane();
  dp.apply(d);
  check(dp, { name: "after the reload", port: "acc1", frame: toGw(A, B.ip4), out: null, drop: "flood-empty" });
});

test("a prefix binding (a VNIC's range) is a route; the longest prefix wins; a host binding beats both", async () => {
  const dp = await dataPlane();
  dp.apply([{ op: "ip", vn: RED.id, ip: "10.7.0.0/16", mac: B.mac }, { op: "ip", vn: RED.id, ip: "10.7.1.0/24", mac: C.mac },
            { op: "ip", vn: RED.id, ip: "2001:db8:77::/48", mac: B.mac }]);
  check(dp, { name: "/16", port: "acc1", frame: toGw(A, "10.7.2.2"), out: { port: "acc2", frame: eth(B.mac, GW, B.tag, ipUdp(A.ip4, "10.7.2.2", 63)) } });
  check(dp, { name: "/24 inside the /16", port: "acc1", frame: toGw(A, "10.7.1.5"), out: { port: "acc1", frame: eth(C.mac, GW, C.tag, ipUdp(A.ip4, "10.7.1.5", 63)) } });
  check(dp, { name: "IPv6 /48", port: "acc1", frame: toGw(A, "2001:db8:77::5"), out: { port: "acc2", frame: eth(B.mac, GW, B.tag, ipUdp(A.ip6, "2001:db8:77::5", 63)) } });
  dp.apply([{ op: "ip", vn: RED.id, ip: "10.7.1.9", mac: B.mac }]);
  check(dp, { name: "host binding inside the /24", port: "acc1", frame: toGw(A, "10.7.1.9"), out: { port: "acc2", frame: eth(B.mac, GW, B.tag, ipUdp(A.ip4, "10.7.1.9", 63)) } });
});

test("a VN made L2 again stops routing and answering for its gateway; deleted, it leaves the domain; a remote without a router MAC is not routed to", async () => {
  const cfg = config();
  const dp = await dataPlane(cfg);
  dp.apply([{ op: "vn", vn: RED.id, vni: RED.vni, profile: { encap: "vxlan", mtu: 1500, arpSuppress: true } }]);
  check(dp, { name: "to red: no route now", port: "acc1", frame: toGw(A, B.ip4), out: null, drop: "no-route" });
  // ARP for the old gateway IP: no binding left, so suppression floods it (acc2 and nve-b)
  const s = F.send(dp, "acc1", E.arpFrame({ op: 1, src: C.mac, tag: { vid: C.tag }, spa: C.ip4, tpa: RED.gw4 }));
  assert.equal(s.outs.map((o) => o.port).sort(), ["acc2", "uplink"], "flooded, not answered");
  // routed again, then deleted
  dp.apply([{ op: "vn", vn: RED.id, vni: RED.vni, profile: l3Profile(RED, { arpSuppress: true }) as any }]);
  check(dp, cases()[0]);
  dp.apply([{ op: "vn.del", vn: RED.id }]);
  check(dp, { name: "to a deleted VN", port: "acc1", frame: toGw(A, B.ip4), out: null, drop: "no-route" });
  // a remote that published no router MAC: its hosts are not reachable by routing
  delete cfg.remotes[0].routerMac;
  const dp2 = await dataPlane(cfg);
  check(dp2, { name: "remote without router MAC", port: "acc1", frame: toGw(A, D.ip4), out: null, drop: "no-route" });
  check(dp2, { name: "nor accepted on the L3 VNI", port: "uplink", frame: fromB(D.ip4, A.ip4, 63), out: null, drop: "unknown-vtep" });
});

test("a VN whose domain is declared later (the IMA publishes them in any order, a restart programs cached VNs first) is routed from then on", async () => {
  const ops = offlineOps(parseConfig(JSON.stringify(config()), "l3.json"));
  const dom = ops.filter((o) => o.op === "l3domain");
  assert.is(dom.length, 1);
  const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12, loader: fixtureLoader });
  dp.apply(ops.filter((o) => o.op !== "l3domain"));
  // not routed yet: the gateway MAC is no one's, so the frame is unknown unicast in blue, whose flood list is empty
  dropped(F.send(dp, "acc1", toGw(A, B.ip4)), "flood-empty", "before the domain");
  dp.apply(dom);
  for (const c of cases()) check(dp, c);
});

function configError(edit: (c: Record<string, any>) => void): ConfigError {
  const c = config();
  edit(c);
  try {
    parseConfig(JSON.stringify(c), "l3.json");
  } catch (e) {
    assert.instance(e, ConfigError);
    return e as ConfigError;
  }
  assert.unreachable("the configuration was accepted");
  throw new Error("unreachable");
}

test("bad input: one clear error naming the key (gateway outside its prefix, undeclared domain, L3 VNI = an L2 VNI)", async () => {
  let e = configError((c) => { c.vns[0].profile.gateway.ips[0] = "10.1.0.0/24"; });
  assert.is(e.key, "vns.0.profile.gateway.ips.0");
  assert.match(e.message, /10\.1\.0\.0\/24 is outside the VN's prefix/);
  e = configError((c) => { c.vns[1].profile.gateway.ips[1] = "2001:db8:2::1"; });
  assert.is(e.key, "vns.1.profile.gateway.ips.1");
  assert.match(e.message, /has no prefix length/);
  e = configError((c) => { c.vns[1].profile.l3domain = 7; });
  assert.is(e.key, "vns.1.profile.l3domain");
  assert.match(e.message, /l3domain 7, which l3domains does not declare/);
  e = configError((c) => { c.l3domains[0].vni = BLUE.vni; });
  assert.is(e.key, "l3domains.0.vni");
  assert.match(e.message, /L3 VNI 5100 of l3domain 1 is also the VNI of VN 100/);
  e = configError((c) => { delete c.vns[0].profile.gateway; });
  assert.is(e.key, "vns.0.profile.gateway");
  // the data plane refuses the same as ops, applying nothing
  const dp = await dataPlane();
  const refuse = (ops: DpOp[], field: RegExp, msg: RegExp) => {
    const before = F.send(dp, "acc1", toGw(A, B.ip4)).outs.length;
    try { dp.apply(ops); assert.unreachable("applied"); } catch (err) {
      assert.instance(err, DataPlaneError);
      assert.match((err as Error).message, field);
      assert.match((err as Error).message, msg);
    }
    assert.is(F.send(dp, "acc1", toGw(A, B.ip4)).outs.length, before, "still routed as before");
  };
  refuse([{ op: "l3domain", id: 2, vni: RED.vni, routerMac: UL_MAC }], /\(vni\)/, /is the VNI of VN 200/);
  refuse([{ op: "vn", vn: 300, vni: L3VNI, profile: { encap: "vxlan", mtu: 1500 } }], /\(vni\)/, /L3 VNI of l3domain 1/);
  refuse([{ op: "vn", vn: RED.id, vni: RED.vni, profile: l3Profile(RED, { gateway: { ips: ["10.2.0.255/24"], mac: GW } }) as any }],
    /profile\.gateway\.ips\.0/, /broadcast address/);
  // and through the command line: exit 2, the file and key on stderr
  const dir = mkdtempSync(join(tmpdir(), "nvl-l3-"));
  try {
    const c = config();
    c.vns[0].profile.l3domain = 3;
    writeFileSync(join(dir, "bad.json"), JSON.stringify(c));
    writePcap(join(dir, "in.pcap"), [new Uint8Array(60)]);
    const r = spawnSync(process.execPath, [BIN, "pcap", "--config", join(dir, "bad.json"), "--in", `acc1=${join(dir, "in.pcap")}`,
      "--out-dir", join(dir, "out")], { encoding: "utf8", timeout: 60_000 });
    assert.is(r.status, 2);
    assert.match(r.stderr, /bad\.json: vns\.0\.profile\.l3domain: VN 100 is in l3domain 3/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---- the IMA's catalog (PROTOCOL.md §6: l3domain/{id}, l3domain.create/delete/list, the vtep record's routerMac)

function imaCore(): { req: (who: string, op: string, body?: Record<string, unknown>) => { rsp: Record<string, any>; pubs: Record<string, string> } } {
  const core = new ImaCore({ ...DEFAULT_IMA_SETTINGS, operators: ["alice"], nves: [{ id: "nve-a", ip: UL_IP }] }, () => 0);
  let n = 0;
  return {
    req(who, op, body = {}) {
      const r = core.run([{ who, payload: Buffer.from(JSON.stringify({ id: `r${++n}`, op, ...body })) }]);
      core.published_(r.publishes); // as the service does once the broker acknowledged them
      return { rsp: r.responses[0].rsp, pubs: Object.fromEntries(r.publishes.map((p) => [p.topic, p.payload])) };
    },
  };
}

test("IMA: l3domain.create publishes the domain; routed VNs must name a declared one; an L3 VNI is no VN's VNI; the vtep record carries the router MAC", () => {
  const ima = imaCore();
  const bad = (r: { rsp: Record<string, any> }, code: string, field: string, msg: RegExp) => {
    assert.is(r.rsp.ok, false, JSON.stringify(r.rsp));
    assert.is(r.rsp.error.code, code);
    assert.is(r.rsp.error.field, field);
    assert.match(r.rsp.error.message, msg);
  };
  bad(ima.req("nve-a", "l3domain.create", { l3domain: 1, vni: L3VNI }), "not-authorized", "op", /not an operator/);
  let r = ima.req("alice", "l3domain.create", { l3domain: 1, vni: L3VNI });
  assert.ok(r.rsp.ok, JSON.stringify(r.rsp));
  assert.equal(r.pubs, { "nvo3/v1/ima/l3domain/1": JSON.stringify({ id: 1, vni: L3VNI }) });
  assert.equal(ima.req("alice", "l3domain.create", { l3domain: 1, vni: L3VNI }).pubs, {}, "the same create again changes nothing");
  bad(ima.req("alice", "l3domain.create", { l3domain: 1, vni: 9002 }), "bad-request", "l3domain", /already has L3 VNI 9001/);
  const blue = { vn: { id: BLUE.id }, alias: "blue", vni: BLUE.vni, profile: l3Profile(BLUE) };
  bad(ima.req("alice", "vn.create", { ...blue, profile: l3Profile(BLUE, { l3domain: 2 }) }), "bad-request", "profile.l3domain", /l3domain 2 is not declared/);
  bad(ima.req("alice", "vn.create", { ...blue, vni: L3VNI }), "bad-request", "vni", /VNI 9001 is the L3 VNI of l3domain 1/);
  bad(ima.req("alice", "vn.create", { ...blue, profile: l3Profile(BLUE, { gateway: { ips: ["10.1.0.0/24"], mac: GW } }) }),
    "bad-request", "profile.gateway.ips.0", /outside the VN's prefix/);
  r = ima.req("alice", "vn.create", blue);
  assert.ok(r.rsp.ok, JSON.stringify(r.rsp));
  assert.equal(JSON.parse(r.pubs["nvo3/v1/ima/vn/100"]).profile.gateway, { ips: ["10.1.0.1/24", "2001:db8:1::1/64"], mac: GW });
  bad(ima.req("alice", "l3domain.create", { l3domain: 2, vni: BLUE.vni }), "bad-request", "vni", /L3 VNI 5100 is the VNI of VN 100/);
  bad(ima.req("alice", "l3domain.delete", { l3domain: 1 }), "bad-request", "l3domain", /used by VN 100/);
  r = ima.req("nve-a", "vtep.join", { vn: { id: 100 }, ip: UL_IP, routerMac: "02:00:00:00:01:01" });
  assert.ok(r.rsp.ok, JSON.stringify(r.rsp));
  assert.equal(JSON.parse(r.pubs["nvo3/v1/ima/vtep/100/nve-a"]), { ip: UL_IP, routerMac: "02:00:00:00:01:01" });
  assert.equal(ima.req("alice", "l3domain.list").rsp.l3domains, [{ id: 1, vni: L3VNI }]);
  assert.ok(ima.req("alice", "vn.delete", { vn: { id: 100 } }).rsp.ok);
  r = ima.req("alice", "l3domain.delete", { l3domain: 1 });
  assert.ok(r.rsp.ok);
  assert.equal(r.pubs, { "nvo3/v1/ima/l3domain/1": "" }, "the retained domain is cleared");
});

test.run();
