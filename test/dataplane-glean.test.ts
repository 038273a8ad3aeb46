// Gleaning (issue 14; PROTOCOL.md §5 learn: "glean", seed §4.2 method 1):
// the data plane reports unknown sources through its learn area, the host's
// gleaner (host/control/glean.ts) programs them as bindings of the port's
// VAP; then unicast reaches them, they age out after learnAgeMs without
// traffic, at most maxLearnedPerPort per VAP (learn-limit above), a gleaned
// MAC moves with its port, and a signalled source is never learned over
// (spoofed-mac / spoofed-ip). Frames are checked against the encoder.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { fixtureLoader, eqBytes, dropped } from "./support/dp-fixture.js";
import { DataPlane, type LearnRecord } from "../host/dataplane/dataplane.js";
import { Gleaner } from "../host/control/glean.js";
import type { VnProfile, DpOp } from "../host/dataplane/ops.js";

const VN = 100; // port security on: gleaning associates what it learns
const { L1, L2 } = F.locals(VN);
const { R1 } = F.remotes(VN);
const G = (n: number) => ({ mac: `02:00:5e:01:99:${n.toString(16).padStart(2, "0")}`, ip4: `10.1.0.${100 + n}`, ip6: `2001:db8:1::${(100 + n).toString(16)}` });

async function setup(extra: Partial<VnProfile> = {}) {
  const clock = { ms: 10_000 };
  const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12, loader: fixtureLoader, clock: () => clock.ms });
  dp.apply(F.fixtureOps(4));
  const profile: VnProfile = { ...F.vn(VN).profile, learn: "glean", learnAgeMs: 4000, ...extra };
  dp.apply([{ op: "vn", vn: VN, vni: F.vn(VN).vni, profile }]);
  const signalled = new Set(F.VNS.flatMap((v) => Object.values(F.locals(v.id)).map((h) => `${v.id}|${h.mac}`)));
  const signalledIps = new Set(F.VNS.flatMap((v) => Object.values(F.locals(v.id)).flatMap((h) => [`${v.id}|${h.ip4}`, `${v.id}|${h.ip6}`])));
  const log: string[] = [];
  const records: LearnRecord[] = [];
  const announced: unknown[] = [];
  const g = new Gleaner({
    profile: (vn) => (vn === VN ? profile : F.vn(vn).profile),
    tag: (port, vn) => F.vn(vn).tags[port],
    signalledMac: (vn, mac) => signalled.has(`${vn}|${mac}`),
    signalledIp: (vn, ip) => signalledIps.has(`${vn}|${ip}`),
    apply: (ops: DpOp[]) => dp.apply(ops),
    announce: (ch) => announced.push(...ch),
    now: () => clock.ms,
    log: (l) => log.push(l),
  });
  dp.learnSink = (recs) => { records.push(...recs); void g.learn(recs); };
  /** One frame in, the gleaner's work done. */
  const send = async (port: string, frame: Uint8Array) => {
    const s = F.send(dp, port, frame);
    await g.idle();
    return s;
  };
  return { dp, g, clock, send, log, records, announced };
}

const fromG = (h: { mac: string; ip4: string }, to: { mac: string; ip4: string; ip6: string }, port = F.ACC1) =>
  E.udpFrame({ dst: to.mac, src: h.mac, tag: F.tagOf(VN, port), srcIp: h.ip4, dstIp: to.ip4 });
const toG = (h: { mac: string; ip4: string; ip6: string }) => F.fromRemote(F.REMOTES[0], 4, VN, F.innerFrame(R1, h));

test("glean: an unknown source is learned on its port's VAP, with its IP; then unicast reaches it; ARP for it is answered", async () => {
  const t = await setup();
  const g1 = G(1);
  // before: unknown unicast from the overlay floods to both ports
  assert.equal(F.send(t.dp, F.UPLINK, toG(g1)).outs.map((o) => o.port).sort(), [F.ACC1, F.ACC2]);
  // g1 (behind a bridging VM on acc1) sends: forwarded although port security is on, and learned
  const first = fromG(g1, R1);
  const s = await t.send(F.ACC1, first);
  assert.is(s.outs.length, 1, `forwarded: ${JSON.stringify(s.drops)}`);
  assert.equal(t.records, [{ vn: VN, port: F.ACC1, kind: "mac", mac: g1.mac }, { vn: VN, port: F.ACC1, kind: "ip", mac: g1.mac, ip: g1.ip4 }]);
  assert.equal(t.g.list().map((b) => [b.mac, b.port, b.ips]), [[g1.mac, F.ACC1, [g1.ip4]]]);
  assert.equal(t.announced, [{ vn: VN, mac: g1.mac, ips: [g1.ip4], port: F.ACC1, active: true }], "announced to the IMA like a signalled binding");
  // after: unicast to it, with acc1's tag
  const d = F.send(t.dp, F.UPLINK, toG(g1));
  assert.equal(d.outs.map((o) => o.port), [F.ACC1]);
  eqBytes(d.outs[0].frame, E.insertTag(F.innerFrame(R1, g1), F.tagOf(VN, F.ACC1)), "decap to the gleaned MAC");
  // ARP suppression answers for its gleaned IP (RFC 9161), from acc2
  const req = E.arpFrame({ op: 1, src: L2.mac, tag: F.tagOf(VN, F.ACC2), spa: L2.ip4, tpa: g1.ip4 });
  const r = F.send(t.dp, F.ACC2, req);
  assert.is(r.outs.length, 1);
  eqBytes(r.outs[0].frame, E.arpFrame({ op: 2, src: g1.mac, dst: L2.mac, tag: F.tagOf(VN, F.ACC2), spa: g1.ip4, tha: L2.mac, tpa: L2.ip4 }), "ARP reply for the gleaned IP");
  // its traffic is not reported again until a quarter of learnAgeMs has passed
  t.records.length = 0;
  await t.send(F.ACC1, first);
  assert.equal(t.records, []);
  t.clock.ms += 1000;
  await t.send(F.ACC1, first);
  assert.equal(t.records, [{ vn: VN, port: F.ACC1, kind: "seen", mac: g1.mac }]);
});

test("glean: a binding ages out after learnAgeMs without traffic, and stays while it is seen", async () => {
  const t = await setup();
  const [g1, g2] = [G(1), G(2)];
  await t.send(F.ACC1, fromG(g1, R1));
  await t.send(F.ACC1, fromG(g2, R1));
  for (let i = 0; i < 4; i++) { // g2 keeps talking, g1 is silent
    t.clock.ms += 1100;
    await t.send(F.ACC1, fromG(g2, R1));
    await t.g.sweep();
  }
  assert.equal(t.g.list().map((b) => b.mac), [g2.mac], "g1 aged out after 4 s, g2 seen");
  assert.ok(t.log.some((l) => l.includes(`${g1.mac} on ${F.ACC1} aged out`)), t.log.join("\n"));
  assert.equal(F.send(t.dp, F.UPLINK, toG(g1)).outs.map((o) => o.port).sort(), [F.ACC1, F.ACC2], "g1 unknown again: flooded");
  assert.equal(F.send(t.dp, F.UPLINK, toG(g2)).outs.map((o) => o.port), [F.ACC1]);
  assert.ok(t.announced.some((c) => JSON.stringify(c) === JSON.stringify({ vn: VN, mac: g1.mac, gone: true })), "withdrawn from the IMA");
});

test("glean: at most maxLearnedPerPort per VAP; above it learn-limit, until one ages out", async () => {
  const t = await setup({ maxLearnedPerPort: 2 });
  await t.send(F.ACC1, fromG(G(1), R1));
  await t.send(F.ACC1, fromG(G(2), R1));
  // the cap is reached: the VAP is full, an unknown source is dropped
  dropped(await t.send(F.ACC1, fromG(G(3), R1)), "learn-limit", "third source on acc1");
  // the other port's VAP has its own cap
  assert.is((await t.send(F.ACC2, fromG(G(4), R1, F.ACC2))).outs.length, 1, "acc2 learns");
  // signalled VNICs are not gleaned bindings and never counted
  assert.is((await t.send(F.ACC1, F.accessFrame(L1, R1))).outs.length, 1, "L1 unaffected");
  t.clock.ms += 4000;
  await t.send(F.ACC1, fromG(G(2), R1)); // G2 and G4 seen again (reported: a quarter age passed)
  await t.send(F.ACC2, fromG(G(4), R1, F.ACC2));
  await t.g.sweep(); // G1 ages out: room again
  const s = await t.send(F.ACC1, fromG(G(3), R1));
  assert.is(s.outs.length, 1, `G3 learned now: ${JSON.stringify(s.drops)}`);
  assert.equal(t.g.list().map((b) => `${b.mac}@${b.port}`).sort(), [`${G(2).mac}@${F.ACC1}`, `${G(3).mac}@${F.ACC1}`, `${G(4).mac}@${F.ACC2}`]);
});

test("glean: a gleaned MAC seen on another port moves there", async () => {
  const t = await setup();
  const g1 = G(1);
  await t.send(F.ACC1, fromG(g1, R1));
  const s = await t.send(F.ACC2, fromG(g1, R1, F.ACC2));
  assert.is(s.outs.length, 1, `forwarded from the new port: ${JSON.stringify(s.drops)}`);
  assert.equal(t.g.list().map((b) => b.port), [F.ACC2]);
  const d = F.send(t.dp, F.UPLINK, toG(g1));
  assert.equal(d.outs.map((o) => o.port), [F.ACC2]);
  eqBytes(d.outs[0].frame, E.insertTag(F.innerFrame(R1, g1), F.tagOf(VN, F.ACC2)), "decap follows the move");
  assert.ok(t.log.some((l) => l.includes(`moved from ${F.ACC1} to ${F.ACC2}`)));
});

test("glean: a source signalled for another VNIC is never learned over (spoofed-mac, spoofed-ip), with or without port security", async () => {
  for (const portSecurity of [true, false]) {
    const t = await setup({ portSecurity });
    // L2 is signalled behind acc2: from acc1 it is spoofed
    dropped(await t.send(F.ACC1, E.udpFrame({ dst: R1.mac, src: L2.mac, tag: F.tagOf(VN, F.ACC1), srcIp: L2.ip4, dstIp: R1.ip4 })), "spoofed-mac", `L2's MAC on acc1 (portSecurity ${portSecurity})`);
    // a remote binding's MAC behind a local port: spoofed too (it may be signalled at its NVE)
    dropped(await t.send(F.ACC1, E.udpFrame({ dst: L1.mac, src: R1.mac, tag: F.tagOf(VN, F.ACC1), srcIp: R1.ip4, dstIp: L1.ip4 })), "spoofed-mac", "R1's MAC on acc1");
    // a new MAC claiming L2's IP (ARP): spoofed-ip, and nothing learned
    dropped(await t.send(F.ACC1, E.arpFrame({ op: 1, src: G(5).mac, tag: F.tagOf(VN, F.ACC1), spa: L2.ip4, tpa: L1.ip4 })), "spoofed-ip", "G5 claims L2's IP");
    assert.equal(t.g.list().map((b) => b.ips), [[]], "G5's MAC only (reported before its IP was refused)");
    // L1 on its own port is its own traffic: no learning
    t.records.length = 0;
    assert.is((await t.send(F.ACC1, F.accessFrame(L1, R1))).outs.length, 1);
    assert.equal(t.records, []);
  }
});

test("glean: a bad learnAgeMs / maxLearnedPerPort is refused naming the key", async () => {
  const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12, loader: fixtureLoader });
  dp.apply(F.fixtureOps(4));
  for (const [extra, field] of [[{ learnAgeMs: 10 }, "profile.learnAgeMs"], [{ maxLearnedPerPort: 0 }, "profile.maxLearnedPerPort"]] as const) {
    let err: unknown;
    try { dp.apply([{ op: "vn", vn: VN, vni: F.vn(VN).vni, profile: { ...F.vn(VN).profile, learn: "glean", ...extra } }]); } catch (e) { err = e; }
    assert.is((err as { field?: string }).field, field);
  }
});

test.run();
