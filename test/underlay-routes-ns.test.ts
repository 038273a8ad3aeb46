// Routes, same-subnet remotes, ECMP and a tagged uplink on a real kernel
// (issue 11; host/underlay/routes.ts, resolver.ts, native/afpacket.c vlan),
// in two test-made `nvl-` namespaces:
//   nve ns:  the NVE's uplink `a` (AF_PACKET) and access port `c`; the
//            kernel's routes out of `a` (no address: the NVE is no IP stack):
//            192.0.2.0/24 on the link, 198.51.100.0/24 over two next hops
//   net ns:  `b`, the uplink's peer, with three macvlans, each its own MAC and
//            IP: two routers (.250, .251) and a remote NVE on the same subnet (.20)
// The NVE reads the routes with `ip` in its namespace, resolves every next
// hop by ARP itself, and its worker's tables send each flow to one ECMP member
// (pool.trace: the worker's own tables). A route replaced at run time is
// followed. On a tagged uplink (underlay.vlan) the NVE's ARP, its answers and
// its tunnel frames leave tagged, tagged frames are taken, others are not.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { requireRootAnd } from "./support/tools.js";
import { startAfPacket, type WorkerPool } from "../host/io/afpacket.js";
import { startUnderlayResolver, remotesOf, type UnderlayResolver } from "../host/underlay/resolver.js";
import { tmpNetns, injectFrames, capture, type Netns } from "./support/io-net.js";
import type { DpOp } from "../host/dataplane/ops.js";
import * as E from "./support/encoder.js";
import { sleep } from "../host/sys/sh.js";

const US = "192.0.2.1", US_MAC = "02:00:00:00:01:01";
const M1 = "02:00:00:00:0a:50", M2 = "02:00:00:00:0a:51", M3 = "02:00:00:00:0a:20";
const L = "02:00:5e:00:01:01", R_FAR = "02:00:5e:00:02:01", R_NEAR = "02:00:5e:00:03:01";

async function until(what: string, f: () => boolean, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** `b` moved into `net`, where the kernel answers ARP only on the interface that holds the address (arp_ignore=1). */
function peerIn(nve: Netns, net: Netns, b: string): void {
  nve.run("ip", ["link", "set", b, "netns", net.name]);
  net.run("sysctl", ["-qw", "net.ipv4.conf.all.arp_ignore=1"]);
  net.run("ip", ["link", "set", b, "up"]);
}

function macvlan(net: Netns, lower: string, name: string, mac: string, ip: string, plen = 24): void {
  net.run("ip", ["link", "add", name, "link", lower, "address", mac, "type", "macvlan", "mode", "bridge"]);
  net.run("ip", ["addr", "add", `${ip}/${plen}`, "dev", name, ...(ip.includes(":") ? ["nodad"] : [])]);
  net.run("ip", ["link", "set", name, "up"]);
}

const ops = (a: string, c: string, f: 4 | 6 = 4): DpOp[] => [
  { op: "underlay", port: a, ip: f === 4 ? US : "2001:db8:ffff::1", mac: US_MAC, gatewayMac: "ff:ff:ff:ff:ff:ff", udpPort: 4789 },
  { op: "port", port: c },
  { op: "vn", vn: 100, vni: 5000, profile: { encap: "vxlan", mtu: 1500 } },
  { op: "tag", port: c, tag: 10, vn: 100 },
  { op: "mac.local", vn: 100, mac: L, port: c, active: true },
  { op: "mac.remote", vn: 100, mac: R_FAR, nve: f === 4 ? "198.51.100.9" : "2001:db8:aa::9" },
  { op: "mac.remote", vn: 100, mac: R_NEAR, nve: f === 4 ? "192.0.2.20" : "2001:db8:ffff::20" },
];

const flow = (to: string, sport: number) => E.udpFrame({ dst: to, src: L, tag: { vid: 10, pcp: 0 }, srcIp: "10.0.0.1", dstIp: "10.0.0.2", srcPort: sport });

if (requireRootAnd(["ip", "nsenter", "python3", "tcpdump"], "the underlay's routes, ECMP and tagged uplink on veth/macvlan (network namespaces, CAP_NET_RAW)")) {
  const FAMILIES = [
    { f: 4, us: US, plen: 24, net: "192.0.2.0/24", r1: "192.0.2.250", r2: "192.0.2.251", near: "192.0.2.20", farNet: "198.51.100.0/24", far: "198.51.100.9" },
    { f: 6, us: "2001:db8:ffff::1", plen: 64, net: "2001:db8:ffff::/64", r1: "2001:db8:ffff::fa", r2: "2001:db8:ffff::fb", near: "2001:db8:ffff::20",
      farNet: "2001:db8:aa::/48", far: "2001:db8:aa::9" },
  ] as const;
  for (const F of FAMILIES) {
  test(`IPv${F.f} kernel routes: a same-subnet remote resolved at its own MAC, a routed one spread over both ECMP next hops, a replaced route followed`, async () => {
    const nve = tmpNetns("rtn"), net = tmpNetns("rtk");
    let pool: WorkerPool | undefined;
    let resolver: UnderlayResolver | undefined;
    const logs: string[] = [];
    const ipf = F.f === 6 ? ["-6"] : ["-4"];
    try {
      const [a, b] = nve.veth("u");
      const [c] = nve.veth("c");
      peerIn(nve, net, b);
      if (F.f === 6) {
        // IPv6 on the links that take part (tmpNetns turns it off everywhere), neighbour discovery without DAD
        nve.run("sysctl", ["-qw", `net.ipv6.conf.${a}.disable_ipv6=0`]);
        net.run("sysctl", ["-qw", "net.ipv6.conf.default.disable_ipv6=0", "net.ipv6.conf.default.accept_dad=0", `net.ipv6.conf.${b}.disable_ipv6=0`]);
      }
      macvlan(net, b, "r1", M1, F.r1, F.plen);
      macvlan(net, b, "r2", M2, F.r2, F.plen);
      macvlan(net, b, "far", M3, F.near, F.plen);
      nve.run("ip", [...ipf, "route", "add", F.net, "dev", a]);
      nve.run("ip", [...ipf, "route", "add", F.farNet, "nexthop", "via", F.r1, "dev", a, "nexthop", "via", F.r2, "dev", a]);
      const o = ops(a, c, F.f);
      pool = await startAfPacket({ interfaces: [a, c], workers: 1, ring: { netns: nve.path, blockSize: 1 << 16, blockCount: 4 },
        dataplane: { macLog2: 8, ipLog2: 8 }, idlePollMs: 20, ops: o });
      const p = pool;
      resolver = startUnderlayResolver({ underlay: { port: a, ip: F.us, mac: US_MAC, udpPort: 4789, genevePort: 6081 },
        io: p, apply: (x) => p.apply(x), log: (l) => logs.push(l), tickMs: 50, netns: nve.path, remotes: remotesOf(o) })!;
      const r = resolver;
      await r.ready;
      const route = (nve: string) => r.show().remotes.find((x) => x.nve === nve);
      await until("both remotes resolved", () => route(F.near)?.macs.length === 1 && route(F.far)?.macs.length === 2);
      assert.equal(route(F.near), { nve: F.near, via: F.net, onLink: true, hops: [F.near], macs: [M3] }, "same subnet: its own MAC");
      assert.equal(route(F.far), { nve: F.far, via: F.farNet, onLink: false, hops: [F.r1, F.r2], macs: [M1, M2] });
      console.log(`  IPv${F.f}: ${logs.filter((l) => l.includes("resolved")).join("; ")}`); // resolution times, for the record

      // What the worker's tables do with frames (pool.trace runs them through worker 0's data plane).
      const near = await p.trace(c, flow(R_NEAR, 1000));
      assert.equal(near.outputs.map((x) => [x.port, E.macText(x.frame.subarray(0, 6))]), [[a, M3]]);
      const used = new Map<string, number>();
      for (let sport = 1000; sport < 1032; sport++) {
        const t = await p.trace(c, flow(R_FAR, sport));
        assert.is(t.outputs.length, 1, `flow ${sport}: ${t.drop ?? ""}`);
        const m = E.macText(t.outputs[0].frame.subarray(0, 6));
        assert.is(E.macText((await p.trace(c, flow(R_FAR, sport))).outputs[0].frame.subarray(0, 6)), m, `flow ${sport} stays on one path`);
        used.set(m, (used.get(m) ?? 0) + 1);
      }
      assert.equal(new Set(used.keys()), new Set([M1, M2]), `32 flows over both next hops: ${JSON.stringify([...used])}`);

      // The route is replaced while running: one path now.
      nve.run("ip", [...ipf, "route", "replace", F.farNet, "via", F.r2, "dev", a]);
      await until("the new route", () => route(F.far)?.macs.join() === M2);
      for (let sport = 1000; sport < 1008; sport++) {
        assert.is(E.macText((await p.trace(c, flow(R_FAR, sport))).outputs[0].frame.subarray(0, 6)), M2, `flow ${sport} after the change`);
      }
      // And removed: nothing is sent toward it, not even to broadcast.
      nve.run("ip", [...ipf, "route", "del", F.farNet]);
      await until("no route", () => route(F.far)?.macs.length === 0);
      const gone = await p.trace(c, flow(R_FAR, 1000));
      assert.is(gone.outputs.length, 0);
      assert.is(gone.drop, "no-next-hop");
    } finally {
      resolver?.stop();
      await pool?.stop();
      nve.remove();
      net.remove();
    }
  });
  }

  test("underlay.vlan: the uplink's frames carry the tag both ways; an untagged or other-VLAN frame is not taken", async () => {
    // No kernel VLAN device here (no 8021q module in this sandbox's kernel):
    // the peer is the test, with tcpdump and a raw-socket injector on `b`.
    const nve = tmpNetns("vln"), net = tmpNetns("vlk");
    let pool: WorkerPool | undefined;
    let resolver: UnderlayResolver | undefined;
    const tagOf = (f: Uint8Array) => [...f.subarray(12, 16)];
    try {
      const [a, b] = nve.veth("u");
      const [c, d] = nve.veth("c");
      peerIn(nve, net, b);
      const underlay = { port: a, ip: US, mac: US_MAC, gateway: "192.0.2.254", vlan: 100, udpPort: 4789, genevePort: 6081 };
      const o = ops(a, c);
      pool = await startAfPacket({ config: { underlay, ports: [{ name: c, hypervisors: [], vns: [] }] } as never, workers: 1,
        ring: { netns: nve.path, blockSize: 1 << 16, blockCount: 4 }, dataplane: { macLog2: 8, ipLog2: 8 }, idlePollMs: 20, ops: o });
      const p = pool;
      // our ARP request for the gateway leaves tagged
      const reqCap = await capture(net, b, 1, 5000, ["vlan", "100", "and", "arp"]);
      resolver = startUnderlayResolver({ underlay, io: p, apply: (x) => p.apply(x), log: () => {}, tickMs: 50, netns: nve.path, remotes: remotesOf(o) })!;
      const r = resolver;
      const [req] = await reqCap.done;
      assert.ok(req, "an ARP request on VLAN 100");
      assert.equal(tagOf(req), [0x81, 0x00, 0x00, 100]);
      assert.equal([...req.subarray(16, 18)], [0x08, 0x06], "ARP after the tag");
      // the gateway's tagged reply is taken (untagged, the data plane reads it as ARP)
      injectFrames(net, b, [E.arpFrame({ op: 2, src: M1, dst: US_MAC, tag: { vid: 100, pcp: 0 }, sha: M1, spa: "192.0.2.254", tha: US_MAC, tpa: US })]);
      await until("the gateway's MAC from the tagged reply", () => r.cache.mac("192.0.2.254") === M1);
      // the data plane's answer to a tagged request for us leaves tagged
      const ansCap = await capture(net, b, 1, 5000, ["vlan", "100", "and", "ether", "dst", M2]);
      injectFrames(net, b, [E.arpFrame({ op: 1, src: M2, tag: { vid: 100, pcp: 0 }, spa: "192.0.2.7", tpa: US })]);
      const [ans] = await ansCap.done;
      assert.ok(ans, "our ARP reply");
      assert.equal(tagOf(ans), [0x81, 0x00, 0x00, 100]);
      assert.equal([...ans.subarray(24, 26)], [0x00, 0x02], "an ARP reply (op 2) after the tag");
      // a tunnel frame leaves with the tag, to the gateway's MAC
      await until("the next hop programmed", () => r.show().remotes.every((x) => x.macs.length === 1));
      const cap = await capture(net, b, 1, 5000, ["vlan", "100", "and", "udp", "port", "4789"]);
      injectFrames(nve, d, [flow(R_FAR, 1000)]);
      const [tun] = await cap.done;
      assert.ok(tun, "a tunnel frame on the wire");
      assert.is(E.macText(tun.subarray(0, 6)), M1);
      assert.equal(tagOf(tun), [0x81, 0x00, 0x00, 100], "802.1Q, VID 100, after the MACs");
      assert.equal([...tun.subarray(16, 18)], [0x08, 0x00], "then the outer IPv4 header");
      // a frame for us without the tag, or with VLAN 200, is not ours
      const before = (await p.counters()).io[a].vlanOther;
      injectFrames(net, b, [E.arpFrame({ op: 1, src: M2, tag: null, spa: "192.0.2.7", tpa: US }),
        E.arpFrame({ op: 1, src: M2, tag: { vid: 200, pcp: 0 }, spa: "192.0.2.7", tpa: US })]);
      let after = before;
      for (let i = 0; i < 100 && after < before + 2; i++) { await sleep(50); after = (await p.counters()).io[a].vlanOther; }
      assert.is(after - before, 2, "both counted as vlanOther, neither reached the data plane");
    } finally {
      resolver?.stop();
      await pool?.stop();
      nve.remove();
      net.remove();
    }
  });
  test.run();
}
