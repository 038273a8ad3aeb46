// The underlay's routes (issue 11; host/underlay/routes.ts) and the resolver
// that turns them into per-remote next hops (host/underlay/resolver.ts),
// without a kernel: routes in the shape `ip -j route show` prints them (the
// shapes below are iproute2 6.1's, multipath included), ARP answered by the
// test through the punt handler, the "nexthop" ops the resolver applies
// recorded. The kernel's own routes are in underlay-routes-ns.test.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { routeLookup, primeRoutes, type KernelRoute, type RouteSource } from "../host/underlay/routes.js";
import { startUnderlayResolver, remotesOf } from "../host/underlay/resolver.js";
import type { DpOp } from "../host/dataplane/ops.js";
import * as E from "./support/encoder.js";
import { loadConfig } from "../host/config/load.js";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const UP = new Set(["eth1"]);
const V4: KernelRoute[] = [
  { dst: "default", gateway: "192.0.2.254", dev: "eth1", flags: [] },
  { dst: "default", gateway: "10.9.9.1", dev: "mgmt0", metric: 0, flags: [] }, // another interface: not the uplink's
  { dst: "192.0.2.0/24", dev: "eth1", flags: [] },
  { dst: "198.51.100.0/24", flags: [], nexthops: [
    { gateway: "192.0.2.250", dev: "eth1", flags: [] }, { gateway: "192.0.2.251", dev: "eth1", flags: [] }] },
  { dst: "198.51.100.128/25", gateway: "192.0.2.252", dev: "eth1", metric: 20, flags: [] },
  { dst: "198.51.100.128/25", gateway: "192.0.2.253", dev: "eth1", metric: 10, flags: [] },
  { dst: "203.0.113.0/24", type: "blackhole", flags: [] },
  { dst: "203.0.113.7", gateway: "192.0.2.249", dev: "eth1", flags: [] },
  { dst: "100.64.0.0/16", dev: "mgmt0", flags: [] },
  { dst: "100.65.0.0/16", flags: [], nexthops: [
    { gateway: "192.0.2.247", dev: "eth1", flags: ["dead"] }, { gateway: "192.0.2.248", dev: "eth1", flags: [] }] },
];

test("routeLookup: longest prefix, then metric; multipath = ECMP; on-link = the remote itself; other devices and unusable routes", () => {
  const look = (ip: string) => { const r = routeLookup(V4, ip, UP); return [r.hops, r.onLink, r.via]; };
  assert.equal(look("192.0.2.20"), [["192.0.2.20"], true, "192.0.2.0/24"], "same subnet: resolved directly");
  assert.equal(look("198.51.100.9"), [["192.0.2.250", "192.0.2.251"], false, "198.51.100.0/24"], "ECMP");
  assert.equal(look("198.51.100.200"), [["192.0.2.253"], false, "198.51.100.128/25"], "a longer prefix wins, then the lower metric");
  assert.equal(look("203.0.113.9"), [[], false, "blackhole 203.0.113.0/24"], "blackhole: no next hop");
  assert.equal(look("203.0.113.7"), [["192.0.2.249"], false, "203.0.113.7"], "a host route beats the blackhole");
  assert.equal(look("100.64.1.1"), [["192.0.2.254"], false, "default"], "a route out of another interface is not the uplink's");
  assert.equal(look("100.65.1.1"), [["192.0.2.248"], false, "100.65.0.0/16"], "a dead member is left out");
  assert.equal(routeLookup(V4.filter((r) => r.dst !== "default"), "8.8.8.8", UP).hops, [], "no route");
  assert.equal(routeLookup(V4, "2001:db8::1", UP).hops, [], "another family matches nothing");
  // IPv6 multipath as older kernels list it: one route per member, same prefix and metric
  const v6: KernelRoute[] = [
    { dst: "2001:db8:aa::/48", gateway: "2001:db8:ffff::fa", dev: "eth1", metric: 1024, flags: [] },
    { dst: "2001:db8:aa::/48", gateway: "2001:db8:ffff::fb", dev: "eth1", metric: 1024, flags: [] },
    { dst: "2001:db8:ffff::/64", dev: "eth1", metric: 256, flags: [] },
  ];
  assert.equal(routeLookup(v6, "2001:db8:aa::5", UP).hops, ["2001:db8:ffff::fa", "2001:db8:ffff::fb"]);
  assert.equal(routeLookup(v6, "2001:db8:ffff::9", UP).hops, ["2001:db8:ffff::9"]);
  // at most 8 members
  const wide: KernelRoute[] = [{ dst: "10.0.0.0/8", flags: [], nexthops: Array.from({ length: 12 }, (_, i) => ({ gateway: `192.0.2.${100 + i}`, dev: "eth1" })) }];
  assert.is(routeLookup(wide, "10.1.1.1", UP).hops.length, 8);
});

test("remotesOf: the remote NVEs an op list names", () => {
  const ops: DpOp[] = [{ op: "mac.remote", vn: 1, mac: "02:00:00:00:00:01", nve: "192.0.2.11" }, { op: "flood.join", vn: 1, nve: "192.0.2.12" },
    { op: "mac.del", vn: 1, mac: "02:00:00:00:00:01" }];
  assert.equal(remotesOf(ops), ["192.0.2.11", "192.0.2.12"]);
});

/** A route source whose table the test sets; `set` fires the watcher as `ip monitor` would. */
function fakeRoutes(initial: KernelRoute[]): RouteSource & { set(t: KernelRoute[]): void } {
  let table = initial;
  let changed = () => {};
  return {
    dump: async () => structuredClone(table),
    devs: async () => ["eth1"],
    watch: (c) => { changed = c; return () => { changed = () => {}; }; },
    set(t) { table = t; changed(); },
  };
}

/** Who the resolver asked for (ARP request target IPs), and an answer from `ip` at `mac` fed back as the data plane would punt it. */
function fakeIo() {
  let punt: (port: string, f: Uint8Array) => void = () => {};
  const asked: string[] = [];
  return {
    asked,
    io: {
      onPunt: (h: typeof punt) => { punt = h; },
      sendFrame: (_port: string, f: Uint8Array) => { asked.push([...f.subarray(38, 42)].join(".")); },
    },
    reply: (ip: string, mac: string) => punt("eth1", E.arpFrame({ op: 2, src: mac, dst: US_MAC, tag: null, sha: mac, spa: ip, tha: US_MAC, tpa: "192.0.2.1" })),
  };
}

const US_MAC = "02:00:00:00:01:01";
const until = async (what: string, f: () => boolean) => {
  for (let i = 0; i < 200 && !f(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(f(), what);
};

test("the resolver: each remote's next hops from the routes, resolved by ARP, programmed as nexthop ops, and followed when a route changes", async () => {
  const routes = fakeRoutes(V4);
  const { io, asked, reply } = fakeIo();
  const applied: DpOp[] = [];
  const logs: string[] = [];
  const r = startUnderlayResolver({ underlay: { port: "eth1", ip: "192.0.2.1", mac: US_MAC, udpPort: 4789, genevePort: 6081 },
    io, apply: async (ops) => { applied.push(...ops); }, log: (l) => logs.push(l), routes, tickMs: 1000,
    remotes: ["192.0.2.20", "198.51.100.9", "192.0.2.1", "2001:db8::1"] })!;
  try {
    await r.ready;
    assert.equal(new Set(asked), new Set(["192.0.2.20", "192.0.2.250", "192.0.2.251"]), "ARP for the on-link remote itself and both ECMP members, nothing else");
    const nh = (nve: string) => applied.filter((o): o is Extract<DpOp, { op: "nexthop" }> => o.op === "nexthop" && o.nve === nve).map((o) => o.macs);
    assert.equal(nh("192.0.2.20"), [[]], "unresolved: programmed with no next hop (never broadcast)");
    reply("192.0.2.20", "02:00:00:00:00:20");
    reply("192.0.2.250", "02:00:00:00:00:50");
    await until("two nexthop ops", () => nh("192.0.2.20").length === 2 && nh("198.51.100.9").length === 2);
    assert.equal(nh("192.0.2.20").at(-1), ["02:00:00:00:00:20"]);
    assert.equal(nh("198.51.100.9").at(-1), ["02:00:00:00:00:50"], "the resolved member only, while the other is resolving");
    reply("192.0.2.251", "02:00:00:00:00:51");
    await until("both members", () => nh("198.51.100.9").at(-1)?.length === 2);
    assert.equal(nh("198.51.100.9").at(-1), ["02:00:00:00:00:50", "02:00:00:00:00:51"]);
    assert.ok(!applied.some((o) => o.op === "nexthop" && (o.nve === "192.0.2.1" || o.nve === "2001:db8::1")), "not ourselves, not another family");
    assert.ok(!applied.some((o) => o.op === "underlay"), "no gateway: the underlay op is left alone");
    // a reply nobody asked for is not learned
    reply("192.0.2.99", "02:00:00:00:00:99");
    assert.is(r.cache.entry("192.0.2.99"), undefined);
    assert.is(r.show().counters.unsolicited, 1);
    // a new remote appears (a binding arrives): looked up at once
    r.addRemotes(["198.51.100.200"]);
    await until("ARP for the /25's gateway", () => asked.includes("192.0.2.253"));
    reply("192.0.2.253", "02:00:00:00:00:53");
    await until("its next hop", () => nh("198.51.100.200").at(-1)?.[0] === "02:00:00:00:00:53");
    // the route changes at run time: the ECMP route becomes a single path via .253
    const n0 = nh("198.51.100.9").length;
    routes.set(V4.map((x) => x.dst === "198.51.100.0/24" ? { dst: x.dst, gateway: "192.0.2.253", dev: "eth1", flags: [] } : x));
    await until("the new route programmed", () => nh("198.51.100.9").length > n0);
    assert.equal(nh("198.51.100.9").at(-1), ["02:00:00:00:00:53"], "already resolved: no wait");
    assert.is(r.cache.entry("192.0.2.250"), undefined, "a next hop no route uses any more is forgotten");
    const show = r.show();
    assert.is(show.mode, "routes");
    assert.equal(show.remotes.find((x) => x.nve === "198.51.100.9"), { nve: "198.51.100.9", via: "198.51.100.0/24", onLink: false, hops: ["192.0.2.253"], macs: ["02:00:00:00:00:53"] });
    assert.ok(show.counters.routeReads >= 2);
    // the route goes away: nothing to send to, so nothing is sent
    routes.set(V4.filter((x) => x.dst !== "198.51.100.0/24" && x.dst !== "default"));
    await until("no next hop", () => nh("198.51.100.9").at(-1)?.length === 0);
    assert.ok(logs.some((l) => l.includes("remote 198.51.100.9: no route out of the uplink")), logs.join("\n"));
  } finally {
    r.stop();
  }
});

test("primed routes (nvedge run): the first request leaves on the primed table with no read of its own; the monitor starts once the answer is in, then the table is read again; settled() waits for the answer", async () => {
  const base = fakeRoutes([{ dst: "192.0.2.0/24", dev: "eth1", flags: [] }]);
  let dumps = 0, watching = false;
  const counted: RouteSource = {
    dump: () => { dumps++; return base.dump(); },
    devs: () => base.devs(),
    watch: (c) => { watching = true; return base.watch(c); },
  };
  const routes = primeRoutes(counted);
  assert.is(dumps, 1, "read once, when primed");
  const { io, asked, reply } = fakeIo();
  const applied: DpOp[] = [];
  const r = startUnderlayResolver({ underlay: { port: "eth1", ip: "192.0.2.1", mac: US_MAC, udpPort: 4789, genevePort: 6081 },
    io, apply: async (ops) => { applied.push(...ops); }, log: () => {}, routes, tickMs: 1000, remotes: ["192.0.2.20"] })!;
  try {
    await r.ready;
    assert.equal(asked, ["192.0.2.20"], "the ARP request went out on the primed table");
    assert.is(dumps, 1, "no second read before the first answer");
    assert.not.ok(watching, "no route monitor (a fork of this process) before the first answer");
    let settled = false;
    const s = r.settled(5000).then(() => { settled = true; });
    await new Promise((res) => setTimeout(res, 30));
    assert.not.ok(settled, "settled waits for the answer");
    reply("192.0.2.20", "02:00:00:00:00:20");
    await s;
    assert.equal(applied.filter((o) => o.op === "nexthop").at(-1), { op: "nexthop", nve: "192.0.2.20", macs: ["02:00:00:00:00:20"] }, "programmed before settled");
    await until("the monitor and a fresh read", () => watching && dumps === 2);
    // a change the monitor reports is followed
    base.set([{ dst: "192.0.2.0/25", dev: "eth1", flags: [] }, { dst: "192.0.2.0/24", gateway: "192.0.2.254", dev: "eth1", flags: [] }]);
    await until("the new table read", () => dumps === 3);
  } finally {
    r.stop();
  }
});

test("the resolver with underlay.gateway: the gateway for every remote (and in the underlay op), the uplink's own subnet directly", async () => {
  const routes = fakeRoutes([{ dst: "192.0.2.0/24", dev: "eth1", flags: [] }, { dst: "198.51.100.0/24", gateway: "192.0.2.250", dev: "eth1", flags: [] }]);
  const { io, asked, reply } = fakeIo();
  const applied: DpOp[] = [];
  const r = startUnderlayResolver({ underlay: { port: "eth1", ip: "192.0.2.1", mac: US_MAC, gateway: "192.0.2.254", udpPort: 4789, genevePort: 6081 },
    io, apply: async (ops) => { applied.push(...ops); }, log: () => {}, routes, tickMs: 1000, remotes: ["192.0.2.20", "198.51.100.9"] })!;
  try {
    await r.ready;
    assert.equal(new Set(asked), new Set(["192.0.2.254", "192.0.2.20"]), "the gateway (a kernel route's own gateway is not used) and the on-link remote");
    reply("192.0.2.254", "02:00:00:00:01:fe");
    reply("192.0.2.20", "02:00:00:00:00:20");
    await until("programmed", () => applied.filter((o) => o.op === "nexthop" && o.macs.length).length === 2);
    assert.ok(applied.some((o) => o.op === "underlay" && o.gatewayMac === "02:00:00:00:01:fe"), "the underlay op has the gateway's MAC");
    const last = (nve: string) => applied.filter((o): o is Extract<DpOp, { op: "nexthop" }> => o.op === "nexthop" && o.nve === nve).at(-1)!.macs;
    assert.equal(last("198.51.100.9"), ["02:00:00:00:01:fe"]);
    assert.equal(last("192.0.2.20"), ["02:00:00:00:00:20"]);
    assert.is(r.show().nextHop, "192.0.2.254");
    assert.equal(startUnderlayResolver({ underlay: { port: "eth1", ip: "192.0.2.1", mac: US_MAC, gatewayMac: "02:00:00:00:01:fe", udpPort: 4789, genevePort: 6081 },
      io, apply: async () => {}, log: () => {}, routes }), undefined, "gatewayMac: nothing to resolve");
  } finally {
    r.stop();
  }
});

test("the configuration: underlay.gateway of underlay.ip's family and not underlay.ip itself, underlay.vlan 1..4094, each refused at its key", () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-ulcfg-"));
  try {
    const load = (underlay: Record<string, unknown>) => {
      const f = join(dir, "c.json");
      writeFileSync(f, JSON.stringify({ nve: "nve-a", underlay: { port: "eth1", ip: "192.0.2.1", mac: US_MAC, ...underlay } }));
      try { loadConfig(f); return "ok"; } catch (e) { return (e as Error).message; }
    };
    assert.is(load({ gateway: "192.0.2.254", vlan: 100 }), "ok");
    assert.match(load({ gateway: "2001:db8::1" }), /underlay\.gateway.*not of underlay\.ip's family/);
    assert.match(load({ gateway: "192.0.2.1" }), /underlay\.gateway.*own underlay IP/);
    assert.match(load({ vlan: 0 }), /underlay\.vlan/);
    assert.match(load({ vlan: 4095 }), /underlay\.vlan/);
    assert.match(load({ vlan: "100" }), /underlay\.vlan/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
