// The NVE side of PROTOCOL.md §6 (host/ima-client/client.ts) against a real IMA and a
// real broker: flood-list membership on the first/last VAP, announcements of
// active bindings only, the retained tree turned into DpOps, a migration
// across NVEs (the departing NVE told `moved`, no withdraw from it), the
// sequence race (the IMA numbers the announcements) resolving to the same
// winner on every NVE, duplicate freeze,
// profile changes, a client restart that withdraws what it no longer has, a
// real DataPlane encapsulating toward the NVE the IMA names, and the same
// migration through Mosquitto.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { startEmbeddedBroker } from "../host/broker/embedded.js";
import { ImaService } from "../host/ima/service.js";
import { ImaClient, type ImaClientOptions, type LocalBinding } from "../host/ima-client/client.js";
import type { VnSeed } from "../host/ima/core.js";
import type { DpOp } from "../host/dataplane/ops.js";
import type { BindRecord, VnRecord } from "../host/protocol/ima.js";
import type { BrokerConnection } from "../host/control/service.js";
import { DataPlane } from "../host/dataplane/dataplane.js";
import * as E from "./support/encoder.js";
import { startMosquitto } from "./support/mosquitto.js";

const M1 = "02:00:5e:00:00:01", M2 = "02:00:5e:00:00:02";
const IP = { "nve-a": "192.0.2.1", "nve-b": "192.0.2.2", "nve-c": "192.0.2.3" } as Record<string, string>;

/** A DataPlaneProgrammer that keeps every op it is given (the data plane itself is tested elsewhere; one test below uses a real one). */
class Recorder {
  ops: DpOp[] = [];
  async apply(ops: DpOp[]) { this.ops.push(...ops); }
  has(o: DpOp) { return this.ops.some((x) => JSON.stringify(x) === JSON.stringify(o)); }
}

interface Nve { c: ImaClient; rec: Recorder; moved: [number, string, BindRecord | undefined][]; dups: string[]; profiles: VnRecord[]; deleted: number[] }

async function until(cond: () => boolean, what: string, ms = 4000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface World { url: string; broker: (who: string) => BrokerConnection; ima: ImaService; restartIma(): Promise<void>; nve(who: string, o?: Partial<ImaClientOptions>): Promise<Nve>;
  op(op: string, body: Record<string, unknown>): Promise<any>; close(): Promise<void> }

async function world(o: { seed?: VnSeed[]; mosquitto?: boolean } = {}): Promise<World> {
  const users = { ima: "pw-ima", alice: "pw-alice", "nve-a": "pw-a", "nve-b": "pw-b", "nve-c": "pw-c" } as Record<string, string>;
  const roles = { nves: ["nve-a", "nve-b", "nve-c"], imas: ["ima"], operators: ["alice"] };
  const b = o.mosquitto ? await startMosquitto({ users, ...roles }) : await startEmbeddedBroker({ port: 0, ...roles });
  const conn = (who: string): BrokerConnection => ({ url: b.url, username: who, reconnectPeriodMs: 0, ...(o.mosquitto ? { password: users[who] } : {}) });
  const dir = mkdtempSync(join(tmpdir(), "nvl-imac-"));
  const startIma = () => ImaService.start({ settings: { operators: ["alice"], nves: Object.entries(IP).map(([id, ip]) => ({ id, ip })) }, broker: conn("ima"), store: dir, seed: o.seed ?? [{ id: 100, alias: "blue", vni: 5000 }] });
  const ima = await startIma();
  const nves: Nve[] = [];
  const op = async (name: string, body: Record<string, unknown>) => {
    const c = await mqtt.connectAsync(b.url, { username: "alice", clientId: `alice-op-${Math.random().toString(16).slice(2, 10)}`, ...(o.mosquitto ? { password: users.alice } : {}), reconnectPeriod: 0 });
    try {
      await c.subscribeAsync("nvo3/v1/ima/rsp/alice", { qos: 1 });
      const rsp = new Promise<any>((res) => c.on("message", (_t, p) => res(JSON.parse(p.toString()))));
      await c.publishAsync("nvo3/v1/ima/req/alice", JSON.stringify({ id: "op", op: name, ...body }), { qos: 1 });
      return await rsp;
    } finally {
      await c.endAsync(true);
    }
  };
  const w: World = {
    url: b.url, broker: conn, ima, op,
    async restartIma() {
      w.ima = await startIma();
    },
    async nve(who, extra = {}) {
      const n: Nve = { c: undefined as unknown as ImaClient, rec: new Recorder(), moved: [], dups: [], profiles: [], deleted: [] };
      n.c = await ImaClient.start({ nve: who, ip: IP[who], broker: conn(who), programmer: n.rec, timeoutMs: 3000,
        onMoved: (vn, mac, by) => n.moved.push([vn, mac, by]), onDuplicate: (_vn, mac) => n.dups.push(mac),
        onProfile: (v) => n.profiles.push(v), onVnDeleted: (vn) => n.deleted.push(vn), ...extra });
      nves.push(n);
      return n;
    },
    async close() {
      for (const n of nves) await n.c.stop().catch(() => {});
      await w.ima.stop().catch(() => {});
      await b.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return w;
}

async function withWorld(o: Parameters<typeof world>[0], fn: (w: World) => Promise<void>) {
  const w = await world(o);
  try {
    await fn(w);
  } finally {
    await w.close();
  }
}

const active = (mac: string, ips: string[] = [], port = "eth2"): LocalBinding => ({ vn: 100, mac, ips, port, active: true });

test("flood list on the first and last VAP; active bindings become mac.remote/ip elsewhere; withdraw and leave clean up", async () => {
  await withWorld({}, async (w) => {
    const a = await w.nve("nve-a"), b = await w.nve("nve-b");
    await a.c.setServed([100]);
    await b.c.setServed([100]);
    await until(() => b.rec.has({ op: "flood.join", vn: 100, nve: IP["nve-a"] }) && a.rec.has({ op: "flood.join", vn: 100, nve: IP["nve-b"] }), "flood lists");
    a.c.applyLocal([active(M1, ["10.0.0.1"]), { vn: 100, mac: M2, ips: ["10.0.0.2"], port: "eth2", active: false }]);
    await until(() => b.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-a"] }) && b.rec.has({ op: "ip", vn: 100, ip: "10.0.0.1", mac: M1 }), "remote binding");
    await a.c.idle();
    assert.equal(a.c.view().announced.map((x) => x.mac), [M1], "a pre-associated (inactive) binding is not announced");
    assert.not.ok(a.rec.ops.some((o) => "mac" in o && o.mac === M1), "an NVE programs nothing from its own binding");
    assert.not.ok(b.rec.ops.some((o) => "mac" in o && o.mac === M2));
    a.c.applyLocal([{ vn: 100, mac: M1, gone: true }]);
    await until(() => b.rec.has({ op: "mac.del", vn: 100, mac: M1 }) && b.rec.has({ op: "ip.del", vn: 100, ip: "10.0.0.1" }), "withdraw");
    a.c.applyLocal([{ vn: 100, mac: M2, gone: true }]);
    await a.c.setServed([]);
    await until(() => b.rec.has({ op: "flood.leave", vn: 100, nve: IP["nve-a"] }), "flood.leave");
    await a.c.idle();
    assert.equal(a.c.view().joined, []);
  });
});

test("migration A → B: B announces the next seq when it activates; A is told moved and sends no withdraw; every NVE follows", async () => {
  await withWorld({}, async (w) => {
    const a = await w.nve("nve-a"), b = await w.nve("nve-b"), c = await w.nve("nve-c");
    for (const n of [a, b, c]) await n.c.setServed([100]);
    a.c.applyLocal([active(M1, ["10.0.0.1"])]);
    await until(() => c.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-a"] }) && b.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-a"] }), "A's binding everywhere");
    // B pre-associates (its NVE programs mac.local inactive over the remote entry): the client puts the remote entry back.
    b.rec.ops = [];
    b.c.applyLocal([{ ...active(M1, ["10.0.0.1"]), active: false }]);
    await until(() => b.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-a"] }), "remote entry restored at B");
    // A deactivates for migration: still announced (no withdraw), B activates.
    const aRequests = a.c.stats.requests;
    a.c.applyLocal([{ ...active(M1, ["10.0.0.1"]), active: false }]);
    b.c.applyLocal([active(M1, ["10.0.0.1"])]);
    await until(() => a.moved.length === 1, "A told moved");
    assert.is(a.moved[0][0], 100);
    assert.is(a.moved[0][1], M1);
    assert.is(a.moved[0][2]?.nve, "nve-b");
    assert.is(a.moved[0][2]?.seq, 1, "the next sequence number");
    await until(() => c.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-b"] }), "C follows to B");
    // A's NVE withdraws its local binding (addr.disassociated reason moved): A now forwards to B.
    a.c.applyLocal([{ vn: 100, mac: M1, gone: true }]);
    await until(() => a.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-b"] }), "A forwards to B");
    await a.c.idle();
    assert.is(a.c.stats.requests, aRequests, "A sent nothing to the IMA: no withdraw, no announce");
    assert.not.ok(c.rec.ops.some((o) => o.op === "mac.del"), "C never lost the MAC during the move");
    assert.equal(b.moved, []);
  });
});

test("hitless migration (issue 15): B's pre-association names it next; A's hold forwards to B before any move; called off, A drops again", async () => {
  await withWorld({}, async (w) => {
    const a = await w.nve("nve-a"), b = await w.nve("nve-b"), c = await w.nve("nve-c");
    for (const n of [a, b, c]) await n.c.setServed([100]);
    a.c.applyLocal([active(M1, ["10.0.0.1"])]);
    await until(() => b.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-a"] }), "A's binding at B");
    const record = () => w.ima.core.binds.get(`100|${M1}`);
    // B pre-associates: the IMA records B as the MAC's next holder; the binding stays A's, same sequence.
    b.c.applyLocal([{ ...active(M1, ["10.0.0.1"]), active: false }]);
    await until(() => record()?.next?.nve === "nve-b", "next = nve-b at the IMA");
    assert.is(record()?.nve, "nve-a");
    assert.is(record()?.seq, 0);
    await until(() => a.c.records.get(`100|${M1}`)?.next?.nve === "nve-b", "A sees next");
    assert.not.ok(a.rec.ops.some((o) => "mac" in o && o.mac === M1), "while A's binding is active, A programs nothing for it");
    // A holds it for migration (inactive): its frames go to B, not to dst-inactive.
    a.c.applyLocal([{ ...active(M1, ["10.0.0.1"]), active: false }]);
    await until(() => a.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-b"] }), "A's hold forwards to B");
    assert.not.ok(a.rec.ops.some((o) => o.op === "ip" || o.op === "ip.del"), "A's own IP→MAC entries stay");
    assert.equal(a.moved, [], "no move yet: only a pre-association");
    assert.not.ok(c.rec.ops.some((o) => "mac" in o && o.mac === M1 && o.op === "mac.remote" && o.nve === IP["nve-b"]), "C still sends to A (nothing moved)");
    // The migration is called off: B gives up its pre-association, A's VM resumes there.
    b.c.applyLocal([{ vn: 100, mac: M1, gone: true }]);
    await until(() => record() !== undefined && record()!.next === undefined, "next cleared at the IMA");
    await until(() => a.c.records.get(`100|${M1}`)?.next === undefined, "A sees it cleared");
    await until(() => a.rec.has({ op: "mac.local", vn: 100, mac: M1, port: "eth2", active: false }), "A's hold drops again (its own inactive entry back)");
    a.c.applyLocal([active(M1, ["10.0.0.1"])]);
    // Again, and this time the move happens: B's announcement confirms, A is told moved, C follows.
    b.c.applyLocal([{ ...active(M1, ["10.0.0.1"]), active: false }]);
    await until(() => record()?.next?.nve === "nve-b", "prepared again");
    a.rec.ops = [];
    a.c.applyLocal([{ ...active(M1, ["10.0.0.1"]), active: false }]);
    await until(() => a.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-b"] }), "A's hold forwards to B");
    b.c.applyLocal([active(M1, ["10.0.0.1"])]);
    await until(() => a.moved.length === 1 && c.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-b"] }), "the move");
    assert.is(record()?.nve, "nve-b");
    assert.is(record()?.seq, 1, "the holder's seq + 1 (RFC 7432 §15)");
    assert.is(record()?.next, undefined, "the move replaces the pre-association");
  });
});

test("the sequence race through clients: the same new MAC active on two NVEs at once ends on one winner, the same on every NVE", async () => {
  for (let round = 0; round < 3; round++) {
    await withWorld({}, async (w) => {
      const a = await w.nve("nve-a"), b = await w.nve("nve-b"), c = await w.nve("nve-c");
      for (const n of [a, b, c]) await n.c.setServed([100]);
      await Promise.all([a.c.idle(), b.c.idle(), c.c.idle()]);
      // Both announce at the same moment. The IMA numbers them in the order it
      // serves them (PROTOCOL.md §6): the first gets 0, the second is a move
      // (seq 1) and wins; the first is told moved.
      b.c.applyLocal([active(M1)]);
      a.c.applyLocal([active(M1)]);
      await until(() => a.moved.length + b.moved.length === 1, "the loser told moved");
      const [loser, winner] = a.moved.length ? [a, b] : [b, a];
      loser.c.applyLocal([{ vn: 100, mac: M1, gone: true }]);
      const at = IP[winner.c.nve];
      await until(() => c.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: at }) && loser.rec.ops.at(-1)?.op === "mac.remote", "every NVE on the winner");
      await Promise.all([a.c.idle(), b.c.idle(), c.c.idle()]);
      const last = (n: Nve) => [...n.rec.ops].reverse().find((o) => "mac" in o && o.mac === M1);
      assert.equal(last(c), { op: "mac.remote", vn: 100, mac: M1, nve: at });
      assert.equal(last(loser), { op: "mac.remote", vn: 100, mac: M1, nve: at });
      assert.equal(winner.moved, []);
      assert.equal(winner.c.records.get(`100|${M1}`), c.c.records.get(`100|${M1}`));
      assert.equal([c.c.records.get(`100|${M1}`)?.nve, c.c.records.get(`100|${M1}`)?.seq], [winner.c.nve, 1]);
    });
  }
});

test("a frozen duplicate: the refused NVE is told duplicate, not moved", async () => {
  await withWorld({}, async (w) => {
    const a = await w.nve("nve-a"), b = await w.nve("nve-b");
    await a.c.setServed([100]);
    await b.c.setServed([100]);
    a.c.applyLocal([active(M1)]);
    await until(() => b.c.records.has(`100|${M1}`), "A's binding at B");
    // Five moves back and forth, each side withdrawing when told moved.
    let holder = a, other = b;
    for (let i = 0; i < 5; i++) {
      other.c.applyLocal([active(M1)]);
      await until(() => holder.moved.length === Math.floor(i / 2) + 1, `move ${i + 1}`);
      holder.c.applyLocal([{ vn: 100, mac: M1, gone: true }]);
      [holder, other] = [other, holder];
    }
    other.c.applyLocal([active(M1)]);
    await until(() => other.dups.length === 1, "duplicate refusal");
    assert.is(other.dups[0], M1);
    await until(() => holder.c.records.get(`100|${M1}`)?.duplicate === true, "frozen record");
    assert.is(holder.c.records.get(`100|${M1}`)?.nve, holder.c.nve);
  });
});

test("profile change and VN deletion at the IMA reach the data plane and the NVE's callbacks", async () => {
  await withWorld({}, async (w) => {
    const a = await w.nve("nve-a"), b = await w.nve("nve-b");
    await a.c.setServed([100]);
    await b.c.setServed([100]);
    b.c.applyLocal([active(M2)]);
    await until(() => a.rec.has({ op: "mac.remote", vn: 100, mac: M2, nve: IP["nve-b"] }), "binding");
    const r = await w.op("vn.set-profile", { vn: { id: 100 }, profile: { encap: "geneve", mtu: 1400 } });
    assert.ok(r.ok, JSON.stringify(r));
    await until(() => a.profiles.length === 1, "onProfile");
    assert.is(a.profiles[0].profile.encap, "geneve");
    const vnOp = a.rec.ops.find((o) => o.op === "vn") as Extract<DpOp, { op: "vn" }>;
    assert.is(vnOp.vni, 5000);
    assert.is(vnOp.profile.encap, "geneve");
    assert.is(vnOp.profile.mtu, 1400);
    assert.ok((await w.op("vn.delete", { vn: { id: 100 } })).ok);
    await until(() => a.deleted.length === 1, "onVnDeleted");
    assert.ok(a.rec.has({ op: "flood.leave", vn: 100, nve: IP["nve-b"] }));
    assert.ok(a.rec.has({ op: "mac.del", vn: 100, mac: M2 }));
  });
});

test("a restarted client withdraws what its NVE no longer has and re-sends nothing that is already at the IMA", async () => {
  await withWorld({}, async (w) => {
    const a = await w.nve("nve-a");
    await a.c.setServed([100]);
    a.c.applyLocal([active(M1), active(M2)]);
    const watch = await w.nve("nve-b");
    await watch.c.setServed([100]);
    await until(() => watch.rec.has({ op: "mac.remote", vn: 100, mac: M2, nve: IP["nve-a"] }) && watch.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-a"] }), "both");
    await a.c.stop();
    const publishedBefore = w.ima.stats.published;
    // The NVE restarts with M1 only (M2 went while the client was down).
    const again = await w.nve("nve-a", { served: [100], local: [active(M1)] });
    await until(() => watch.rec.has({ op: "mac.del", vn: 100, mac: M2 }), "M2 withdrawn");
    await again.c.idle();
    assert.is(w.ima.stats.published, publishedBefore + 1, "only M2's withdrawal was published");
    assert.equal(again.c.view().announced.map((x) => x.mac), [M1]);
  });
});

test("resolve: VN references through the IMA (cached from the retained catalog); unknown ones are refused", async () => {
  await withWorld({}, async (w) => {
    const a = await w.nve("nve-a");
    const byId = await a.c.resolve(100);
    assert.is(byId.alias, "blue");
    assert.is(byId.vni, 5000);
    assert.equal(await a.c.resolve({ alias: "blue" }), byId);
    assert.equal(await a.c.resolve(byId.name), byId);
    const r = await w.op("vn.create", { alias: "late" });
    assert.ok(r.ok);
    const late = await a.c.resolve("late");
    assert.is(late.id, r.vn.id);
    const e = await a.c.resolve("nope").catch((x) => x);
    assert.is(e.code, "unknown-vn");
  });
});

test("requests sent while the IMA is down are answered when it is back (persistent session); nothing is lost", async () => {
  await withWorld({}, async (w) => {
    const a = await w.nve("nve-a"), b = await w.nve("nve-b");
    await a.c.setServed([100]);
    await b.c.setServed([100]);
    await Promise.all([a.c.idle(), b.c.idle()]);
    await w.ima.kill();
    a.c.applyLocal([active(M1, ["10.0.0.1"])]);
    await new Promise((r) => setTimeout(r, 100));
    assert.not.ok(b.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-a"] }));
    await w.restartIma();
    await until(() => b.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-a"] }), "the queued announcement answered");
  });
});

test("a real DataPlane: a frame to a MAC the IMA places at nve-a is encapsulated to nve-a's underlay IP", async () => {
  await withWorld({}, async (w) => {
    const dp = await DataPlane.create({ macLog2: 10, ipLog2: 10 });
    const SRC = "02:00:5e:00:00:99";
    dp.apply([
      { op: "underlay", port: "uplink", ip: IP["nve-b"], mac: "02:00:00:00:02:01", gatewayMac: "02:00:00:00:02:fe" },
      { op: "port", port: "acc1" },
      { op: "vn", vn: 100, vni: 5000, profile: { encap: "vxlan", mtu: 1500 } },
      { op: "tag", port: "acc1", tag: 10, vn: 100 },
      { op: "mac.local", vn: 100, mac: SRC, port: "acc1", active: true },
    ]);
    const a = await w.nve("nve-a");
    const b = await w.nve("nve-b", { programmer: { apply: async (ops) => dp.apply(ops) } });
    await a.c.setServed([100]);
    await b.c.setServed([100]);
    a.c.applyLocal([active(M1, ["10.0.0.1"])]);
    await until(() => b.c.view().remote.some((r) => r.mac === M1), "remote binding at B");
    await b.c.idle();
    const frame = E.udpFrame({ dst: M1, src: SRC, tag: { vid: 10 }, srcIp: "10.0.0.99", dstIp: "10.0.0.1" });
    const t = dp.trace("acc1", frame);
    assert.is(t.drop, undefined, t.steps.join("\n"));
    assert.is(t.outputs.length, 1, t.steps.join("\n"));
    assert.is(t.outputs[0].port, "uplink");
    assert.equal([...t.outputs[0].frame.subarray(30, 34)], [192, 0, 2, 1], "outer IPv4 destination = nve-a");
    // A moves away (withdraws): the MAC is unknown again and floods to the flood list (nve-a only).
    a.c.applyLocal([{ vn: 100, mac: M1, gone: true }]);
    await until(() => !b.c.view().remote.some((r) => r.mac === M1), "withdrawn at B");
    await b.c.idle();
    const t2 = dp.trace("acc1", frame);
    assert.is(t2.outputs.length, 1, t2.steps.join("\n"));
    assert.equal([...t2.outputs[0].frame.subarray(30, 34)], [192, 0, 2, 1], "flooded to the only other VTEP");
    await a.c.setServed([]);
    await until(() => dp.trace("acc1", frame).drop !== undefined, "flood list empty after A left");
  });
});

test("L3 service: the IMA's l3domain becomes an l3domain op with this NVE's router MAC; each NVE's router MAC rides its vtep record into flood.join", async () => {
  await withWorld({}, async (w) => {
    assert.ok((await w.op("l3domain.create", { l3domain: 1, vni: 9001 })).ok);
    const l3 = { encap: "vxlan", service: "l3", mtu: 1500, gateway: { ips: ["10.1.0.1/24"], mac: "00:00:5e:00:01:01" }, l3domain: 1 };
    assert.ok((await w.op("vn.set-profile", { vn: { id: 100 }, profile: l3 })).ok);
    const RA = "02:00:00:00:0a:01", RB = "02:00:00:00:0b:01";
    const a = await w.nve("nve-a", { routerMac: RA }), b = await w.nve("nve-b", { routerMac: RB });
    await until(() => a.rec.has({ op: "l3domain", id: 1, vni: 9001, routerMac: RA }) && b.rec.has({ op: "l3domain", id: 1, vni: 9001, routerMac: RB }), "the domain programmed");
    await a.c.setServed([100]);
    await b.c.setServed([100]);
    await until(() => b.rec.has({ op: "flood.join", vn: 100, nve: IP["nve-a"], routerMac: RA }) && a.rec.has({ op: "flood.join", vn: 100, nve: IP["nve-b"], routerMac: RB }),
      "flood lists with router MACs");
    // a domain in use stays; once no VN routes in it, its deletion reaches the NVEs
    assert.is((await w.op("l3domain.delete", { l3domain: 1 })).error?.field, "l3domain");
    assert.ok((await w.op("vn.set-profile", { vn: { id: 100 }, profile: { encap: "vxlan" } })).ok);
    assert.ok((await w.op("l3domain.delete", { l3domain: 1 })).ok);
    await until(() => a.rec.has({ op: "l3domain.del", id: 1 }) && b.rec.has({ op: "l3domain.del", id: 1 }), "the domain removed");
  });
});

test("through Mosquitto (password auth, generated acl_file): a migration A → B as on the embedded broker", async () => {
  await withWorld({ mosquitto: true }, async (w) => {
    const a = await w.nve("nve-a"), b = await w.nve("nve-b"), c = await w.nve("nve-c");
    for (const n of [a, b, c]) await n.c.setServed([100]);
    a.c.applyLocal([active(M1, ["10.0.0.1"])]);
    await until(() => c.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-a"] }), "A's binding at C");
    a.c.applyLocal([{ ...active(M1, ["10.0.0.1"]), active: false }]);
    b.c.applyLocal([active(M1, ["10.0.0.1"])]);
    await until(() => a.moved.length === 1 && c.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-b"] }), "moved and followed");
    assert.is(a.moved[0][2]?.seq, 1);
    a.c.applyLocal([{ vn: 100, mac: M1, gone: true }]);
    await until(() => a.rec.has({ op: "mac.remote", vn: 100, mac: M1, nve: IP["nve-b"] }), "A forwards to B");
  });
});

test.run();
