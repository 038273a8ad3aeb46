// The underlay as a host (issue 11; assembly/pipeline/host.ts): the NVE
// answers ARP (RFC 826) and neighbour solicitations (RFC 4861 §7.2.3) for
// underlay.ip itself, hands the replies and advertisements addressed to it to
// the host (the punt area, for the neighbour cache), and drops the rest of
// the underlay's ARP/ND under named reasons. Expected frames come from the
// independent encoder.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { fixtureCache, eqBytes, dropped } from "./support/dp-fixture.js";

const dpFor = fixtureCache();
const ROUTER_MAC = F.GATEWAY_MAC;
const ROUTER4 = "192.0.2.254", ROUTER6 = "2001:db8:ffff::fe";

test("an ARP request for underlay.ip is answered out of the underlay port, and the requester goes to the host", async () => {
  const dp = await dpFor(4);
  const req = E.arpFrame({ op: 1, src: ROUTER_MAC, tag: null, spa: ROUTER4, tpa: F.underlayIp(4) });
  const s = F.send(dp, F.UPLINK, req);
  assert.equal(s.drops, {});
  assert.equal(s.outs.map((o) => o.port), [F.UPLINK]);
  const want = E.arpFrame({ op: 2, src: F.UNDERLAY_MAC, dst: ROUTER_MAC, tag: null, sha: F.UNDERLAY_MAC, spa: F.underlayIp(4), tha: ROUTER_MAC, tpa: ROUTER4 });
  eqBytes(s.outs[0].frame, want, "ARP reply");
  const p = dp.punts();
  assert.is(p.length, 1);
  assert.is(p[0].port, dp.portIndex(F.UPLINK));
  eqBytes(p[0].frame, req.subarray(0, p[0].frame.length), "punted request");
});

test("an ARP reply to us goes to the host and nowhere else; other ARP is dropped by name", async () => {
  const dp = await dpFor(4);
  const reply = E.arpFrame({ op: 2, src: ROUTER_MAC, dst: F.UNDERLAY_MAC, tag: null, spa: ROUTER4, tha: F.UNDERLAY_MAC, tpa: F.underlayIp(4) });
  const s = F.send(dp, F.UPLINK, reply);
  assert.equal(s.drops, {});
  assert.is(s.outs.length, 0);
  assert.is(dp.punts().length, 1);
  dropped(F.send(dp, F.UPLINK, E.arpFrame({ op: 1, src: ROUTER_MAC, tag: null, spa: ROUTER4, tpa: "192.0.2.77" })), "arp-not-for-us", "request for another IP");
  assert.is(dp.punts().length, 0);
  const bad = E.arpFrame({ op: 1, src: ROUTER_MAC, tag: null, spa: ROUTER4, tpa: F.underlayIp(4) });
  bad[14 + 2] = 0x86; // ptype not IPv4
  dropped(F.send(dp, F.UPLINK, bad), "bad-arp", "ptype");
  dropped(F.send(dp, F.UPLINK, req42(ROUTER4).subarray(0, 30)), "truncated", "a runt");
  const dp6 = await dpFor(6);
  dropped(F.send(dp6, F.UPLINK, req42(ROUTER4)), "arp-not-for-us", "ARP to an IPv6-only underlay");
});

test("a gratuitous ARP from a neighbour (a new MAC announced) goes to the host, nothing is answered", async () => {
  const dp = await dpFor(4);
  const garp = E.arpFrame({ op: 1, src: "02:00:00:00:01:fd", tag: null, spa: ROUTER4, tpa: ROUTER4 });
  const s = F.send(dp, F.UPLINK, garp);
  assert.equal(s.drops, {});
  assert.is(s.outs.length, 0);
  assert.is(dp.punts().length, 1);
});

test("until the next hop is resolved nothing enters a tunnel (never to broadcast): unicast to a remote is no-next-hop, a flood stays local", async () => {
  const { fixtureDp } = await import("./support/dp-fixture.js");
  const dp = await fixtureDp(4);
  const underlay = F.fixtureOps(4).find((o) => o.op === "underlay")!;
  const { L1, L2 } = F.locals(100);
  const { R1 } = F.remotes(100);
  for (const placeholder of ["ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00"]) {
    dp.apply([{ ...underlay, gatewayMac: placeholder } as typeof underlay]);
    dropped(F.send(dp, F.ACC1, F.accessFrame(L1, R1)), "no-next-hop", `unicast to a remote, gateway ${placeholder}`);
    const fl = F.send(dp, F.ACC1, F.accessFrame(L1, F.BROADCAST));
    assert.equal(fl.drops, {});
    assert.equal(fl.outs.map((o) => o.port), [F.ACC2], `a broadcast reaches the other local port only (gateway ${placeholder})`);
    assert.is(F.send(dp, F.UPLINK, F.fromRemote(F.REMOTES[0], 4, 100, F.innerFrame(R1, L2))).outs.length, 1, "decapsulation needs no next hop");
  }
  dp.apply([underlay]);
  const s = F.send(dp, F.ACC1, F.accessFrame(L1, R1));
  assert.equal(s.outs.map((o) => o.port), [F.UPLINK], "resolved: encapsulated again");
  assert.is(E.macText(s.outs[0].frame.subarray(0, 6)), F.GATEWAY_MAC);
});

function req42(spa: string): Uint8Array {
  return E.arpFrame({ op: 1, src: ROUTER_MAC, tag: null, spa, tpa: F.underlayIp(4) });
}

function nsFrame(target: string, src = ROUTER6, o: { hopLimit?: number } = {}): Uint8Array {
  const m = E.ipv6MulticastMac(E.solicitedNode(target));
  const pkt = E.neighborSolicitation({ src, dst: E.solicitedNode(target), target, sll: ROUTER_MAC });
  pkt[7] = o.hopLimit ?? 255; // not in the checksum (RFC 8200 §8.1)
  return E.ethernet({ dst: m, src: ROUTER_MAC, type: E.ETH_IPV6, payload: pkt });
}

test("a neighbour solicitation for underlay.ip (IPv6) is answered with a solicited NA carrying our MAC", async () => {
  const dp = await dpFor(6);
  const s = F.send(dp, F.UPLINK, nsFrame(F.underlayIp(6)));
  assert.equal(s.drops, {});
  assert.equal(s.outs.map((o) => o.port), [F.UPLINK]);
  const na = E.neighborAdvertisement({ src: F.underlayIp(6), dst: ROUTER6, target: F.underlayIp(6), solicited: true, override: true, tll: F.UNDERLAY_MAC });
  const want = E.ethernet({ dst: ROUTER_MAC, src: F.UNDERLAY_MAC, type: E.ETH_IPV6, payload: na });
  eqBytes(s.outs[0].frame, want, "NA");
  assert.is(dp.punts().length, 1, "the solicitor's address goes to the host");
  dropped(F.send(dp, F.UPLINK, nsFrame("2001:db8:ffff::77")), "arp-not-for-us", "NS for another address");
  // the router's answer to our own NS: its address is the target, we are the destination
  const naIn = E.ethernet({ dst: F.UNDERLAY_MAC, src: ROUTER_MAC, type: E.ETH_IPV6,
    payload: E.neighborAdvertisement({ src: ROUTER6, dst: F.underlayIp(6), target: ROUTER6, solicited: true, override: true, tll: ROUTER_MAC }) });
  const r = F.send(dp, F.UPLINK, naIn);
  assert.equal(r.drops, {}, "an NA to us is not dropped");
  assert.is(r.outs.length, 0);
  assert.is(dp.punts().length, 1, "an NA to us goes to the host");
  const elsewhere = E.ethernet({ dst: F.UNDERLAY_MAC, src: ROUTER_MAC, type: E.ETH_IPV6,
    payload: E.neighborAdvertisement({ src: ROUTER6, dst: "2001:db8:ffff::77", target: ROUTER6, solicited: true, tll: ROUTER_MAC }) });
  dropped(F.send(dp, F.UPLINK, elsewhere), "arp-not-for-us", "an NA to another node");
  dropped(F.send(dp, F.UPLINK, nsFrame(F.underlayIp(6), ROUTER6, { hopLimit: 64 })), "bad-nd", "hop limit below 255 (RFC 4861 §7.1.1)");
});

test.run();
