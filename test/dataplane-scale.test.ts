// Tables sized for a real device (issue 2): 1,000,000 MAC bindings and
// 1,000,000 IP bindings in a data plane of the default size, 4094 tags on one
// port each mapped to its own VN, and a flood list of 1,024 remote NVEs;
// lookups checked on a sample after everything is installed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DataPlane } from "../host/dataplane/dataplane.js";
import type { DpOp } from "../host/dataplane/ops.js";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";

const N = 1_000_000;
/** The i-th bulk MAC / IP (unicast, locally administered; 10.128.0.0/9 is unused by the fixture). */
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));
const bulkMac = (i: number) => `02:10:${HEX[(i >>> 24) & 0xff]}:${HEX[(i >>> 16) & 0xff]}:${HEX[(i >>> 8) & 0xff]}:${HEX[i & 0xff]}`;
const bulkIp = (i: number) => `10.${128 + ((i >>> 16) & 0x7f)}.${(i >>> 8) & 0xff}.${i & 0xff}`;

function outerDst4(frame: Uint8Array): string {
  return Array.from(frame.subarray(30, 34)).join(".");
}

test("scale: 1,000,000 MAC and 1,000,000 IP bindings in one VN; sampled lookups encapsulate and ARP-suppress right", async () => {
  const t0 = Date.now();
  const dp = await DataPlane.create();
  dp.apply(F.fixtureOps(4));
  const nves = [F.REMOTES[0].ip4, F.REMOTES[1].ip4];
  for (let base = 0; base < N; base += 100_000) {
    const ops: DpOp[] = [];
    for (let i = base; i < base + 100_000; i++) {
      ops.push({ op: "mac.remote", vn: 100, mac: bulkMac(i), nve: nves[i & 1] });
      ops.push({ op: "ip", vn: 100, ip: bulkIp(i), mac: bulkMac(i) });
    }
    dp.apply(ops);
  }
  const st = dp.stats();
  console.log(`  (programmed ${N} MAC + ${N} IP bindings in ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  assert.ok(st.macs >= N, `${st.macs} MAC bindings held`);
  assert.ok(st.ips >= N, `${st.ips} IP bindings held`);
  const { L1 } = F.locals(100);
  for (let k = 0; k < 500; k++) {
    const i = (k * 1_999_993) % N;
    const to = { mac: bulkMac(i), ip4: bulkIp(i), ip6: "2001:db8:1::ffff" };
    const s = F.send(dp, F.ACC1, F.accessFrame(L1, to));
    assert.is(s.outs.length, 1, `binding ${i} (${to.mac}): ${s.outs.length} outputs, drops ${JSON.stringify(s.drops)}`);
    assert.is(outerDst4(s.outs[0].frame), nves[i & 1], `binding ${i} goes to its NVE`);
    const arp = F.send(dp, F.ACC1, E.arpFrame({ op: 1, src: L1.mac, tag: F.tagOf(100, F.ACC1), spa: L1.ip4, tpa: to.ip4 }));
    assert.is(arp.outs.length, 1, `ARP for ${to.ip4}`);
    assert.is(E.macText(arp.outs[0].frame.subarray(18 + 8, 18 + 14)), to.mac, `ARP reply for ${to.ip4} names ${to.mac}`);
  }
  // The fixture's own bindings are intact amid a million others.
  const { R1 } = F.remotes(100);
  assert.is(outerDst4(F.send(dp, F.ACC1, F.accessFrame(L1, R1)).outs[0].frame), F.REMOTES[0].ip4);
  // Deleting half of them frees their lookups (flooded now) and keeps the rest.
  const del: DpOp[] = [];
  for (let i = 0; i < N; i += 2) del.push({ op: "mac.del", vn: 100, mac: bulkMac(i) });
  dp.apply(del);
  assert.is(F.send(dp, F.ACC1, F.accessFrame(L1, { mac: bulkMac(2), ip4: bulkIp(2), ip6: "2001:db8:1::ffff" })).outs.length,
    F.REMOTES.length + 1, "a deleted binding floods");
  assert.is(outerDst4(F.send(dp, F.ACC1, F.accessFrame(L1, { mac: bulkMac(3), ip4: bulkIp(3), ip6: "2001:db8:1::ffff" })).outs[0].frame),
    nves[1], "a kept binding still encapsulates");
});

test("scale: 4094 tags on one port, each its own VN with its own VNI, both directions", async () => {
  const dp = await DataPlane.create({ macLog2: 16, ipLog2: 12 });
  dp.apply(F.fixtureOps(4));
  const r1 = F.REMOTES[0].ip4;
  const ops: DpOp[] = [{ op: "port", port: "acc3" }];
  const macOf = (t: number) => E.macText(E.u8(0x02, 0x30, 0, 0, t >> 8, t));
  for (let t = 1; t <= 4094; t++) {
    ops.push({ op: "vn", vn: 10_000 + t, vni: 100_000 + t, profile: { encap: "vxlan", mtu: 1500 } });
    ops.push({ op: "tag", port: "acc3", tag: t, vn: 10_000 + t });
    ops.push({ op: "mac.remote", vn: 10_000 + t, mac: macOf(t), nve: r1 });
    ops.push({ op: "flood.join", vn: 10_000 + t, nve: r1 });
  }
  dp.apply(ops);
  for (let t = 1; t <= 4094; t += 37) {
    const frame = E.udpFrame({ dst: macOf(t), src: "02:31:00:00:00:01", tag: { vid: t }, srcIp: "10.200.0.1", dstIp: "10.200.0.2" });
    const s = F.send(dp, "acc3", frame);
    assert.is(s.outs.length, 1, `tag ${t}: ${JSON.stringify(s.drops)}`);
    const v = E.viewOverlay(s.outs[0].frame, "vxlan");
    const vni = (s.outs[0].frame[v.innerOff - 4] << 16) | (s.outs[0].frame[v.innerOff - 3] << 8) | s.outs[0].frame[v.innerOff - 2];
    assert.is(vni, 100_000 + t, `tag ${t} → VNI`);
    // And back: VNI 100000+t decapsulates to acc3 with tag t.
    const inner = E.udpFrame({ dst: "ff:ff:ff:ff:ff:ff", src: macOf(t), tag: null, srcIp: "10.200.0.2", dstIp: "10.200.0.255" });
    const back = F.send(dp, F.UPLINK, E.overlayFrame(F.underlayFrom(F.REMOTES[0], 4), { kind: "vxlan", vni: 100_000 + t, entropy: 50000 }, inner));
    assert.equal(back.outs.map((o) => o.port), ["acc3"], `VNI ${100_000 + t} back`);
    assert.is(((back.outs[0].frame[14] << 8) | back.outs[0].frame[15]) & 0xfff, t, `VNI ${100_000 + t} → tag ${t}`);
  }
});

test("scale: a flood list of 1,024 remote NVEs gets one copy each", async () => {
  const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12 });
  dp.apply(F.fixtureOps(4));
  const extra: string[] = [];
  for (let k = 0; extra.length < 1024 - F.REMOTES.length; k++) extra.push(`198.${18 + (k >> 8)}.${k & 0xff}.7`);
  dp.apply(extra.map((nve) => ({ op: "flood.join" as const, vn: 100, nve })));
  const { L1 } = F.locals(100);
  const s = F.send(dp, F.ACC1, F.accessFrame(L1, F.BROADCAST));
  const up = s.outs.filter((o) => o.port === F.UPLINK).map((o) => outerDst4(o.frame));
  assert.is(up.length, 1024);
  assert.equal(new Set(up).size, 1024, "each remote once");
  assert.equal(s.outs.filter((o) => o.port !== F.UPLINK).map((o) => o.port), [F.ACC2]);
});

test.run();
