// The local.bulk op (host/dataplane/ops.ts): a restart programs every stored
// local binding of a port in one op of flat arrays (issue 4). It must leave the
// data plane exactly as the mac.local and ip ops it stands for would (same
// table bytes, same forwarding), and a bad entry anywhere refuses the whole
// list, applying nothing.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DataPlane, DataPlaneError } from "../host/dataplane/dataplane.js";
import type { DpOp } from "../host/dataplane/ops.js";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";

type Bulk = Extract<DpOp, { op: "local.bulk" }>;

/** n bindings on ACC1 across VNs 100 and 200: IPv4 addresses, an IPv6 address, a /28 prefix, inactive ones, MACs without IPs. */
function bindings(n: number): { vn: number; mac: string; active: boolean; ips: string[] }[] {
  const out = [];
  for (let i = 0; i < n; i++) {
    const h = (x: number) => x.toString(16).padStart(2, "0");
    const ips = i % 7 === 3 ? [] : [`10.9.${(i >> 8) & 255}.${i & 255}`, `10.8.${(i >> 8) & 255}.${i & 255}`];
    if (i % 5 === 1) ips.push(`2001:db8::${i.toString(16)}`);
    if (i === 42) ips.push("10.200.0.16/28");
    out.push({ vn: i % 3 === 0 ? 200 : 100, mac: `02:42:00:00:${h((i >> 8) & 255)}:${h(i & 255)}`, active: i % 4 !== 2, ips });
  }
  return out;
}

function asOps(bs: ReturnType<typeof bindings>, port: string): DpOp[] {
  return [
    ...bs.map((b): DpOp => ({ op: "mac.local", vn: b.vn, mac: b.mac, port, active: b.active })),
    ...bs.flatMap((b) => b.ips.map((ip): DpOp => ({ op: "ip", vn: b.vn, ip, mac: b.mac }))),
  ];
}

function asBulk(bs: ReturnType<typeof bindings>, port: string): Bulk {
  const op: Bulk = { op: "local.bulk", port, vn: [], mac: [], active: [], ipStart: [0], ips: [] };
  for (const b of bs) {
    op.vn.push(b.vn); op.mac.push(b.mac); op.active.push(b.active);
    op.ips.push(...b.ips); op.ipStart.push(op.ips.length);
  }
  return op;
}

async function fresh(): Promise<DataPlane> {
  const dp = await DataPlane.create({ macLog2: 12, ipLog2: 12 });
  dp.apply(F.fixtureOps(4));
  return dp;
}

test("local.bulk leaves the tables byte for byte as its mac.local and ip ops do", async () => {
  const bs = bindings(600);
  const a = await fresh(), b = await fresh();
  a.apply(asOps(bs, F.ACC1));
  b.apply([asBulk(bs, F.ACC1)]);
  const sa = a.stats(), sb = b.stats();
  assert.equal(sb, sa);
  assert.ok(sb.macs >= 600, `MACs programmed: ${sb.macs}`);
  const ma = new Uint8Array(a.memory.buffer), mb = new Uint8Array(b.memory.buffer);
  assert.is(mb.length, ma.length);
  assert.ok(Buffer.compare(Buffer.from(ma.buffer, ma.byteOffset, ma.length), Buffer.from(mb.buffer, mb.byteOffset, mb.length)) === 0,
    "wasm memory differs");
});

test("local.bulk: a bound VNIC forwards, an inactive one and an unbound address do not", async () => {
  const bs = bindings(50);
  const dp = await fresh();
  dp.apply([asBulk(bs, F.ACC1)]);
  const from = bs[1], to = bs[4]; // both VN 100, active, with IPv4 addresses
  assert.ok(from.active && to.active && from.vn === 100 && to.vn === 100);
  const tag = F.tagOf(100, F.ACC1);
  const frame = (src: string, srcIp: string) => E.udpFrame({ dst: to.mac, src, tag, srcIp, dstIp: to.ips[0] });
  // same port: the lookup finds the local VNIC on ACC1 and refuses to hairpin back (not flooded: the binding is there)
  assert.is(dp.trace(F.ACC1, frame(from.mac, from.ips[0])).drop, "same-port");
  assert.is(dp.trace(F.ACC1, frame(from.mac, "10.77.0.1")).drop, "spoofed-ip");
  const inactive = bs[2];
  assert.is(inactive.active, false);
  assert.is(dp.trace(F.ACC1, E.udpFrame({ dst: to.mac, src: inactive.mac, tag, srcIp: inactive.ips[0], dstIp: to.ips[0] })).drop, "vnic-inactive");
});

test("local.bulk: a bad entry refuses the whole list, naming the entry, and applies nothing", async () => {
  const bs = bindings(40);
  const cases: [string, (op: Bulk) => void, string][] = [
    ["bad MAC", (op) => { op.mac[17] = "02:42:zz:00:00:11"; }, "mac[17]"],
    ["multicast MAC", (op) => { op.mac[3] = "01:00:5e:00:00:01"; }, "mac[3]"],
    ["bad IP", (op) => { op.ips[9] = "10.0.0.256"; }, "ips[9]"],
    ["unknown VN", (op) => { op.vn[30] = 4242; }, "vn[30]"],
    ["VN without a tag on the port", (op) => { op.port = F.UPLINK; }, "vn[0]"],
    ["arrays that do not line up", (op) => { op.ipStart.pop(); }, ""],
    ["ipStart going backwards", (op) => { op.ipStart[5] = op.ipStart[4] - 1; }, "ipStart[5]"],
    ["ipStart past the end of ips", (op) => { op.ipStart[2] = op.ips.length + 5; }, "ipStart[2]"],
  ];
  for (const [label, spoil, field] of cases) {
    const dp = await fresh();
    const before = dp.stats();
    const op = asBulk(bs, F.ACC1);
    spoil(op);
    const err = (() => { try { dp.apply([{ op: "mac.local", vn: 100, mac: "02:42:ff:ff:ff:01", port: F.ACC1, active: true }, op]); } catch (e) { return e; } })();
    assert.instance(err, DataPlaneError, label);
    assert.is((err as DataPlaneError).index, 1, `${label}: op index`);
    if (field) assert.is((err as DataPlaneError).field, field, `${label}: field`);
    assert.equal(dp.stats(), before, `${label}: nothing applied`);
  }
});

test.run();
