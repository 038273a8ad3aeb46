// Per-remote next hops (issue 11; assembly/pipeline/nexthop.ts, the
// "nexthop" op): a remote NVE on the same subnet is reached at its own MAC, a
// routed one at its route's gateway, an equal-cost multipath route spreads
// flows over its next hops by the outer flow hash (one flow, one path), and
// a remote with no next hop gets nothing (unicast: no-next-hop; a flood skips
// it). Expected frames come from the independent encoder; both the fast and the
// full paths are run.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { fixtureDp, eqBytes, dropped, flowLabelOf } from "./support/dp-fixture.js";
import { DataPlaneError } from "../host/dataplane/dataplane.js";

/** The encapsulated frame `o` goes to underlay address `ip`. */
const isTo = (o: Uint8Array, f: F.Family, ip: string) => E.bytesDiff(o.subarray(f === 4 ? 30 : 38, f === 4 ? 34 : 54), E.ip(ip)) === "";

const NH = ["02:00:00:00:0a:01", "02:00:00:00:0a:02", "02:00:00:00:0a:03"];
const FAMILIES: F.Family[] = [4, 6];

for (const f of FAMILIES) {
  test(`IPv${f}: a remote with its own next hop is sent there, byte for byte, and the others still to the gateway`, async () => {
    const dp = await fixtureDp(f);
    const { L1 } = F.locals(100);
    const { R1, R2 } = F.remotes(100);
    dp.apply([{ op: "nexthop", nve: F.remoteIp(F.REMOTES[0], f), macs: [NH[0]] }]);
    for (const fast of [true, false]) {
      dp.fastPaths(fast);
      const s = F.send(dp, F.ACC1, F.accessFrame(L1, R1, { family: f }));
      assert.equal(s.outs.map((o) => o.port), [F.UPLINK]);
      const v = E.viewOverlay(s.outs[0].frame, "vxlan");
      const want = E.overlayFrame({ ...F.underlayTo(F.REMOTES[0], f), dstMac: NH[0], flowLabel: flowLabelOf(v, "vxlan") },
        { kind: "vxlan", vni: 5000, entropy: v.entropy }, F.innerFrame(L1, R1, { family: f }));
      eqBytes(s.outs[0].frame, want, `to R1 (fast paths ${fast})`);
      const s2 = F.send(dp, F.ACC1, F.accessFrame(L1, R2, { family: f }));
      assert.is(E.macText(s2.outs[0].frame.subarray(0, 6)), F.GATEWAY_MAC, "R2 still through the gateway");
    }
    dp.fastPaths(true);
  });

  test(`IPv${f}: an ECMP next-hop set spreads flows over every member, each flow on one member, with the header otherwise unchanged`, async () => {
    const dp = await fixtureDp(f);
    const { L1 } = F.locals(100);
    const { R1 } = F.remotes(100);
    dp.apply([{ op: "nexthop", nve: F.remoteIp(F.REMOTES[0], f), macs: NH }]);
    const seen = new Map<string, number>();
    for (let port = 1000; port < 1064; port++) {
      const frame = F.accessFrame(L1, R1, { family: f, srcPort: port });
      const picks = new Set<string>();
      for (const fast of [true, false, true]) {
        dp.fastPaths(fast);
        const s = F.send(dp, F.ACC1, frame);
        assert.equal(s.drops, {});
        const o = s.outs[0].frame;
        picks.add(E.macText(o.subarray(0, 6)));
        const v = E.viewOverlay(o, "vxlan");
        const want = E.overlayFrame({ ...F.underlayTo(F.REMOTES[0], f), dstMac: E.macText(o.subarray(0, 6)), flowLabel: flowLabelOf(v, "vxlan") },
          { kind: "vxlan", vni: 5000, entropy: v.entropy },
          E.udpFrame({ dst: R1.mac, src: L1.mac, tag: null, srcIp: f === 4 ? L1.ip4 : L1.ip6, dstIp: f === 4 ? R1.ip4 : R1.ip6, srcPort: port }));
        eqBytes(o, want, `flow ${port}`);
      }
      assert.is(picks.size, 1, `flow ${port} took one path, not ${[...picks]}`);
      const m = [...picks][0];
      assert.ok(NH.includes(m), `${m} is a member`);
      seen.set(m, (seen.get(m) ?? 0) + 1);
    }
    dp.fastPaths(true);
    assert.is(seen.size, NH.length, `64 flows used every member: ${JSON.stringify([...seen])}`);
    // a flood copy to R1 takes a member too (never the gateway, never broadcast)
    const fl = F.send(dp, F.ACC1, F.accessFrame(L1, F.BROADCAST, { family: f }));
    const toR1 = fl.outs.filter((o) => o.port === F.UPLINK).map((o) => o.frame)
      .filter((o) => isTo(o, f, F.remoteIp(F.REMOTES[0], f)));
    assert.is(toR1.length, 1);
    assert.ok(NH.includes(E.macText(toR1[0].subarray(0, 6))));
  });

  test(`IPv${f}: a remote with no next hop gets nothing: unicast is no-next-hop, a flood skips it, the others are served`, async () => {
    const dp = await fixtureDp(f);
    const { L1, L2 } = F.locals(100);
    const { R1, R2 } = F.remotes(100);
    const r1 = F.remoteIp(F.REMOTES[0], f);
    dp.apply([{ op: "nexthop", nve: r1, macs: [] }]);
    for (const fast of [true, false]) {
      dp.fastPaths(fast);
      dropped(F.send(dp, F.ACC1, F.accessFrame(L1, R1, { family: f })), "no-next-hop", `unicast to R1 (fast paths ${fast})`);
      assert.equal(F.send(dp, F.ACC1, F.accessFrame(L1, R2, { family: f })).outs.map((o) => o.port), [F.UPLINK], "R2 is served");
      const fl = F.send(dp, F.ACC1, F.accessFrame(L1, F.BROADCAST, { family: f }));
      assert.equal(fl.drops, {});
      const dsts = fl.outs.filter((o) => o.port === F.UPLINK).map((o) => o.frame);
      assert.ok(!dsts.some((o) => isTo(o, f, r1)), "no flood copy to R1");
      assert.is(dsts.length, F.REMOTES.length - 1, "a copy to every other remote");
      assert.ok(fl.outs.some((o) => o.port === F.ACC2), "and the local port");
      assert.is(F.send(dp, F.UPLINK, F.fromRemote(F.REMOTES[0], f, 100, F.innerFrame(R1, L2, { family: f }))).outs.length, 1, "decapsulation needs no next hop");
    }
    dp.fastPaths(true);
    dp.apply([{ op: "nexthop", nve: r1, macs: [NH[1]] }]);
    assert.is(E.macText(F.send(dp, F.ACC1, F.accessFrame(L1, R1, { family: f })).outs[0].frame.subarray(0, 6)), NH[1], "resolved: sent again");
  });
}

test("a next hop given before the remote is known, or across its leaving and coming back, applies when its tunnels are built", async () => {
  const dp = await fixtureDp(4);
  const { L1 } = F.locals(100);
  const far = "198.51.100.7";
  const mac = "02:00:5e:01:77:01";
  dp.apply([{ op: "nexthop", nve: far, macs: [NH[2]] }]);
  dp.apply([{ op: "mac.remote", vn: 100, mac, nve: far }]);
  const to = { mac, ip4: "10.1.0.119", ip6: "2001:db8:1::77" };
  assert.is(E.macText(F.send(dp, F.ACC1, F.accessFrame(L1, to)).outs[0].frame.subarray(0, 6)), NH[2]);
  dp.apply([{ op: "mac.del", vn: 100, mac }]);
  dp.apply([{ op: "mac.remote", vn: 100, mac, nve: far }]);
  assert.is(E.macText(F.send(dp, F.ACC1, F.accessFrame(L1, to)).outs[0].frame.subarray(0, 6)), NH[2], "kept across the remote's slot being freed");
  // the underlay op (a new gateway MAC) leaves a remote's own next hop alone
  const underlay = F.fixtureOps(4).find((o) => o.op === "underlay")!;
  dp.apply([{ ...underlay, gatewayMac: "02:00:00:00:01:fd" } as typeof underlay]);
  assert.is(E.macText(F.send(dp, F.ACC1, F.accessFrame(L1, to)).outs[0].frame.subarray(0, 6)), NH[2]);
});

test("bad nexthop ops are refused with the key at fault and change nothing", async () => {
  const dp = await fixtureDp(4);
  const { L1 } = F.locals(100);
  const { R1 } = F.remotes(100);
  const r1 = F.remoteIp(F.REMOTES[0], 4);
  const cases: [unknown, string][] = [
    [{ op: "nexthop", nve: r1, macs: Array.from({ length: 9 }, (_, i) => `02:00:00:00:0b:0${i}`) }, "macs"],
    [{ op: "nexthop", nve: r1, macs: ["01:00:5e:00:00:01"] }, "macs.0"],
    [{ op: "nexthop", nve: r1, macs: [NH[0], "nope"] }, "macs.1"],
    [{ op: "nexthop", nve: r1, macs: "02:00:00:00:0a:01" }, "macs"],
    [{ op: "nexthop", nve: "2001:db8::1", macs: [NH[0]] }, "nve"],
    [{ op: "nexthop", nve: "not-an-ip", macs: [NH[0]] }, "nve"],
  ];
  for (const [op, key] of cases) {
    let err: unknown;
    try { dp.apply([{ op: "nexthop", nve: r1, macs: [NH[0]] }, op as never]); } catch (e) { err = e; }
    assert.ok(err instanceof DataPlaneError, `${JSON.stringify(op)} refused`);
    assert.is((err as DataPlaneError).index, 1);
    assert.ok((err as Error).message.includes(key), `${(err as Error).message} names ${key}`);
    assert.is(E.macText(F.send(dp, F.ACC1, F.accessFrame(L1, R1)).outs[0].frame.subarray(0, 6)), F.GATEWAY_MAC, "the valid op before it was not applied either");
  }
});

test.run();
