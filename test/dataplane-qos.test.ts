// The VN profile's QoS in the data plane (issue 14; PROTOCOL.md §5 `qos`):
// qos.pcp on every frame delivered to the VN's VNICs, else the outer DSCP's
// class mapped back on decapsulation (DSCP >> 3, the encapsulator's PCP << 3
// in reverse); a token bucket per VNIC on the traffic from it
// (qos.rateMbps, qos.burstKb) dropping the excess as `policed`. Expected
// frames come from the independent encoder; the clock is the test's.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { fixtureLoader, eqBytes, dropped } from "./support/dp-fixture.js";
import { DataPlane, DataPlaneError } from "../host/dataplane/dataplane.js";
import type { VnProfile } from "../host/dataplane/ops.js";

const VN = 100;
const { L1, L2 } = F.locals(VN);
const { R1 } = F.remotes(VN);

async function qosDp(family: F.Family, qos: VnProfile["qos"], fast = true): Promise<{ dp: DataPlane; clock: { ms: number } }> {
  const clock = { ms: 1000 };
  const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12, loader: fixtureLoader, clock: () => clock.ms });
  dp.apply(F.fixtureOps(family));
  dp.apply([{ op: "vn", vn: VN, vni: F.vn(VN).vni, profile: { ...F.vn(VN).profile, qos } }]);
  dp.fastPaths(fast);
  return { dp, clock };
}

/** An overlay frame from remote 0 whose outer header carries DSCP `dscp`. */
function fromR1(family: F.Family, inner: Uint8Array, dscp: number): Uint8Array {
  return E.overlayFrame({ ...F.underlayFrom(F.REMOTES[0], family), dscp }, { kind: "vxlan", vni: F.vn(VN).vni, entropy: 51000 }, inner);
}

for (const family of [4, 6] as F.Family[]) {
  for (const fast of [true, false]) {
    const how = `IPv${family} underlay, fast paths ${fast ? "on" : "off"}`;
    test(`qos: decapsulated frames take the outer DSCP's class as PCP, or qos.pcp when the profile sets it (${how})`, async () => {
      const inner = F.innerFrame(R1, L1);
      const plain = await qosDp(family, undefined, fast);
      for (const [dscp, pcp] of [[0, 0], [8, 1], [40, 5], [46, 5], [56, 7], [63, 7]]) {
        const s = F.send(plain.dp, F.UPLINK, fromR1(family, inner, dscp));
        assert.is(s.outs.length, 1, `dscp ${dscp}`);
        eqBytes(s.outs[0].frame, E.insertTag(inner, F.tagOf(VN, F.ACC1, pcp)), `outer DSCP ${dscp} -> PCP ${pcp}`);
      }
      const fixed = await qosDp(family, { pcp: 3 }, fast);
      for (const dscp of [0, 46]) {
        const s = F.send(fixed.dp, F.UPLINK, fromR1(family, inner, dscp));
        eqBytes(s.outs[0].frame, E.insertTag(inner, F.tagOf(VN, F.ACC1, 3)), `qos.pcp 3 whatever the DSCP (${dscp})`);
      }
      // a broadcast from the overlay: every local copy takes qos.pcp
      const b = F.innerFrame(R1, F.BROADCAST);
      const s = F.send(fixed.dp, F.UPLINK, fromR1(family, b, 46));
      assert.equal(s.outs.map((o) => o.port).sort(), [F.ACC1, F.ACC2]);
      for (const o of s.outs) eqBytes(o.frame, E.insertTag(b, F.tagOf(VN, o.port, 3)), `flood copy to ${o.port}`);
      // a locally switched frame takes qos.pcp; without it, it keeps its own
      const h = F.accessFrame(L1, L2, { pcp: 6 });
      eqBytes(F.send(fixed.dp, F.ACC1, h).outs[0].frame, E.insertTag(E.stripTag(h), F.tagOf(VN, F.ACC2, 3)), "hairpin with qos.pcp 3");
      eqBytes(F.send(plain.dp, F.ACC1, h).outs[0].frame, E.insertTag(E.stripTag(h), F.tagOf(VN, F.ACC2, 6)), "hairpin keeps PCP 6");
    });

    test(`qos: the policer passes a burst of burstKb, drops the rest as policed, refills at rateMbps (${how})`, async () => {
      // 8 Mbit/s = 1000 bytes per ms; a 4 KiB bucket
      const { dp, clock } = await qosDp(family, { rateMbps: 8, burstKb: 4 }, fast);
      const frame = F.accessFrame(L1, R1, { payloadLen: 1000 - 18 - 28 }); // 1000 bytes on the trunk
      assert.is(frame.length, 1000);
      const passed = () => F.send(dp, F.ACC1, frame).outs.length;
      const burst = Array.from({ length: 6 }, passed);
      assert.equal(burst, [1, 1, 1, 1, 0, 0], "4096 bytes of tokens: four 1000-byte frames, then policed");
      dropped(F.send(dp, F.ACC1, frame), "policed", "still empty");
      clock.ms += 2; // 2000 bytes of tokens (plus the 96 left)
      assert.equal(Array.from({ length: 3 }, passed), [1, 1, 0], "refilled by 2 ms at 1000 bytes/ms");
      clock.ms += 60_000; // never above the bucket's depth
      assert.equal(Array.from({ length: 6 }, passed), [1, 1, 1, 1, 0, 0], "a long pause refills to the depth only");
      // the bytes that pass are encapsulated as ever
      clock.ms += 1000;
      const s = F.send(dp, F.ACC1, frame);
      const v = E.viewOverlay(s.outs[0].frame, "vxlan");
      const u = { ...F.underlayTo(F.REMOTES[0], family, 0), flowLabel: v.flowLabel };
      eqBytes(s.outs[0].frame, E.overlayFrame(u, { kind: "vxlan", vni: F.vn(VN).vni, entropy: v.entropy }, E.stripTag(frame)), "policed VN encap");
      // each VNIC has its own bucket: L4 (also on acc1) still has a full one
      const { L4 } = F.locals(VN);
      assert.equal(Array.from({ length: 5 }, () => F.send(dp, F.ACC1, F.accessFrame(L4, R1, { payloadLen: 1000 - 46 })).outs.length), [1, 1, 1, 1, 0]);
      // traffic to the VNIC is not policed
      for (let i = 0; i < 10; i++) assert.is(F.send(dp, F.UPLINK, fromR1(family, F.innerFrame(R1, L1, { payloadLen: 900 }), 0)).outs.length, 1);
      assert.is(dp.counters().drops.policed, 1 + 2 + 1 + 2 + 1);
    });
    test(`qos: a VNIC with two MACs is policed as one bucket, programmed one MAC at a time or in bulk (${how})`, async () => {
      // L1 and L4 (both behind acc1) become the MACs of one VNIC, vm-a; L2 is vm-b
      const { L1: A1, L4: A2, L2: B } = F.locals(VN);
      for (const bulk of [false, true]) {
        const { dp, clock } = await qosDp(family, { rateMbps: 8, burstKb: 4 }, fast);
        dp.apply(bulk
          ? [{ op: "local.bulk", port: F.ACC1, vn: [VN, VN], mac: [A1.mac, A2.mac], active: [true, true], ipStart: [0, 0, 0], ips: [], vnic: ["vm-a", "vm-a"] }]
          : [{ op: "mac.local", vn: VN, mac: A1.mac, port: F.ACC1, active: true, vnic: "vm-a" },
             { op: "mac.local", vn: VN, mac: A2.mac, port: F.ACC1, active: true, vnic: "vm-a" }]);
        dp.apply([{ op: "mac.local", vn: VN, mac: B.mac, port: F.ACC2, active: true, vnic: "vm-b" }]);
        const send = (h: F.Host) => F.send(dp, h.port!, F.accessFrame(h, R1, { payloadLen: 1000 - 46 })).outs.length; // 1000 bytes each
        const how2 = bulk ? "local.bulk" : "mac.local";
        // one 4096-byte bucket for both MACs: four frames in all, whichever MAC sends them
        assert.equal([A1, A2, A1, A2, A1, A2, A2].map(send), [1, 1, 1, 1, 0, 0, 0], `burst from both MACs (${how2})`);
        assert.is(dp.counters().drops.policed, 3);
        // another VNIC's bucket is its own, full
        assert.equal([B, B, B, B, B].map(send), [1, 1, 1, 1, 0], `vm-b (${how2})`);
        // the shared bucket refills once: 3 ms = 3000 bytes (plus the 96 left), taken by either MAC
        clock.ms += 3;
        assert.equal([A2, A1, A2, A1].map(send), [1, 1, 1, 0], `refill shared (${how2})`);
        assert.is(dp.counters().drops.policed, 3 + 1 + 1);
      }
      // a MAC programmed without a VNIC keeps a bucket of its own (the fixture's L1 and L4)
      const { dp } = await qosDp(family, { rateMbps: 8, burstKb: 4 }, fast);
      const send = (h: F.Host) => F.send(dp, h.port!, F.accessFrame(h, R1, { payloadLen: 1000 - 46 })).outs.length;
      assert.equal([A1, A2, A1, A2, A1, A2, A1, A2, A1, A2].map(send), [1, 1, 1, 1, 1, 1, 1, 1, 0, 0], "two MACs, two buckets");
    });

    test(`qos: a VAP's gleaned bindings share the VAP's bucket; another VAP has its own (${how})`, async () => {
      const clock = { ms: 1000 };
      const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12, loader: fixtureLoader, clock: () => clock.ms });
      dp.apply(F.fixtureOps(family));
      dp.apply([{ op: "vn", vn: VN, vni: F.vn(VN).vni, profile: { ...F.vn(VN).profile, learn: "glean", qos: { rateMbps: 8, burstKb: 4 } } }]);
      dp.fastPaths(fast);
      // three hosts behind bridging VMs, gleaned (host/control/glean.ts programs them so): two on acc1, one on acc2
      const g = (n: number, port: string): F.Host => ({ vn: VN, mac: `02:00:5e:01:99:0${n}`, ip4: `10.1.0.${100 + n}`, ip6: `2001:db8:1::${(100 + n).toString(16)}`, port, active: true });
      const [g1, g2, g3] = [g(1, F.ACC1), g(2, F.ACC1), g(3, F.ACC2)];
      for (const h of [g1, g2, g3])
        dp.apply([{ op: "mac.local", vn: VN, mac: h.mac, port: h.port!, active: true, glean: true }, { op: "ip", vn: VN, ip: h.ip4, mac: h.mac }]);
      const send = (h: F.Host) => F.send(dp, h.port!, F.accessFrame(h, R1, { payloadLen: 1000 - 46 })).outs.length;
      assert.equal([g1, g2, g1, g2, g1, g2].map(send), [1, 1, 1, 1, 0, 0], "acc1's VAP: one 4096-byte bucket for g1 and g2");
      assert.equal([g3, g3, g3, g3, g3].map(send), [1, 1, 1, 1, 0], "acc2's VAP: its own");
      assert.is(dp.counters().drops.policed, 3);
    });
  }
}

test("qos: a mac.local or local.bulk with a bad vnic is refused naming it, and changes nothing", async () => {
  const { dp } = await qosDp(4, { rateMbps: 8, burstKb: 4 });
  const { L1 } = F.locals(VN);
  const before = dp.counters();
  for (const [ops, field] of [
    [[{ op: "mac.local", vn: VN, mac: F.unknownMac(VN), port: F.ACC1, active: true, vnic: "" }], "vnic"],
    [[{ op: "mac.local", vn: VN, mac: F.unknownMac(VN), port: F.ACC1, active: true, vnic: 7 }], "vnic"],
    [[{ op: "local.bulk", port: F.ACC1, vn: [VN], mac: [F.unknownMac(VN)], active: [true], ipStart: [0, 0], ips: [], vnic: [] }], "vnic"],
  ] as [unknown[], string][]) {
    try { dp.apply(ops as never); assert.unreachable("accepted"); } catch (e) {
      assert.instance(e, DataPlaneError);
      assert.is((e as DataPlaneError).field, field);
    }
  }
  // nothing programmed: the unknown MAC is still unknown, L1 still passes
  assert.is(F.send(dp, F.ACC1, F.accessFrame({ ...L1, mac: F.unknownMac(VN) }, F.remotes(VN).R1)).outs.length, 0);
  assert.is(F.send(dp, F.ACC1, F.accessFrame(L1, F.remotes(VN).R1)).outs.length, 1);
  assert.is(dp.counters().drops.policed, before.drops.policed);
});

test("qos: bad values are refused naming the key, and the profile in force stays", async () => {
  const { dp } = await qosDp(4, { pcp: 2 });
  for (const [qos, field, re] of [
    [{ rateMbps: 0 }, "profile.qos.rateMbps", /above 0/],
    [{ rateMbps: 10, burstKb: 1 }, "profile.qos.burstKb", /less than one frame/],
    [{ burstKb: 64 }, "profile.qos.burstKb", /needs qos.rateMbps/],
    [{ pcp: 9 }, "profile.qos.pcp", /0\.\.7/],
  ] as [VnProfile["qos"], string, RegExp][]) {
    let err: unknown;
    try { dp.apply([{ op: "vn", vn: VN, vni: F.vn(VN).vni, profile: { ...F.vn(VN).profile, qos } }]); } catch (e) { err = e; }
    assert.instance(err, DataPlaneError, field);
    assert.is((err as DataPlaneError).field, field);
    assert.match((err as Error).message, re);
  }
  const inner = F.innerFrame(R1, L1);
  eqBytes(F.send(dp, F.UPLINK, fromR1(4, inner, 0)).outs[0].frame, E.insertTag(inner, F.tagOf(VN, F.ACC1, 2)), "qos.pcp 2 still in force");
});

test.run();
