// The control plane nvo3-hv/1 end to end (PROTOCOL.md §1–§5): an NVE service
// and agents through a real broker. The whole suite is a function of the broker
// fixture and runs on the embedded broker and on Mosquitto with MQTT 3.1.1 and 5.
// Each test names the RFC 8394 requirement (Req-N) it covers.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { VERSION } from "../host/version.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { AgentError } from "../host/agent/agent.js";
import { MemoryStore } from "../host/store/memory.js";
import {
  ControlEnv as Env, HVS, NVE_POOL, VN_BLUE, VN_RED, VN_GREEN, baseConfig, brokerFixtures, rejects, startNve, until,
  type BrokerFixture, type RunningBroker, type StoreKind,
} from "./support/control-harness.js";

const u = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
const m = (n: number) => `02:00:5e:00:${((n >> 8) & 0xff).toString(16).padStart(2, "0")}:${(n & 0xff).toString(16).padStart(2, "0")}`;
const BLUE = { alias: "blue" };
const RED = { id: 200 };
const GREEN = { alias: "green" };

const has = (ops: DpOp[], want: Partial<DpOp>) => ops.some((o) => Object.entries(want).every(([k, v]) => (o as any)[k] === v));

export function controlSuite(fx: BrokerFixture, storeKind: StoreKind = "memory"): void {
  const s = suite(`control plane via ${fx.name}${storeKind === "lmdb" ? ", on LMDB" : ""}`);
  let b: RunningBroker;
  s.before(async () => {
    b = await fx.start([...HVS, "hv-9", ...NVE_POOL], NVE_POOL);
  });
  s.after(async () => {
    await b?.close();
  });
  const t = (name: string, fn: (e: Env) => Promise<void>) =>
    s(name, async () => {
      const e = new Env(b, storeKind);
      try {
        await fn(e);
      } finally {
        await e.close();
      }
    });

  t("hello: nve, fresh bootId, protocol 1, holdMs, maxPayload; retained online status; auth results logged (Req-11, Req-12)", async (e) => {
    await e.start();
    const r = await e.raw("hv-1");
    const h = await r.request("hello", { agent: "test", capabilities: [] });
    assert.is(h.ok, true);
    assert.is(h.nve, e.nve);
    assert.match(h.bootId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.is(h.bootId, e.core.settings.bootId);
    assert.is(h.protocol, 1);
    assert.is(h.holdMs, 10000);
    assert.is(h.maxPayload, 262144);
    await r.client.subscribeAsync(`nvo3/v1/nve/${e.nve}/status`, { qos: 1 });
    const st = await r.waitFor((x) => x && x.state === "online");
    // issue 13: the retained status carries the running version too
    assert.equal(st, { state: "online", bootId: h.bootId, protocol: 1, version: VERSION });
    assert.ok(e.run.logs.some((l) => l.includes("authorization: hv-1 accepted on port eth2")));
  });

  t("hello from an End Device the NVE does not serve: not-authorized, logged (Req-11)", async (e) => {
    await e.start();
    const r = await e.raw("hv-9");
    const h = await r.request("hello", { agent: "x" });
    assert.is(h.ok, false);
    assert.is(h.error.code, "not-authorized");
    const a = await r.request("vnic.attach", { vnic: u(1), vn: BLUE, addrs: [{ mac: m(1) }] });
    assert.is(a.error.code, "not-authorized");
    assert.ok(e.run.logs.some((l) => l.includes("authorization: hv-9 refused")));
    assert.equal(e.core.bindings().filter((x) => x.where === "local"), []);
  });

  t("vnic.attach: connect + associate + activate in one message; tag, all VN references, vni, mtu, profile (Req-5, Req-7, Req-8)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    const mark = e.prog.mark();
    const r = await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1", "2001:DB8::1"] }]);
    assert.is(r.tag, 1);
    assert.equal(r.vn, VN_BLUE);
    assert.is(r.vni, 5000);
    assert.is(r.mtu, 1450);
    assert.is(r.profile.encap, "vxlan");
    const ops = e.prog.since(mark);
    assert.equal(ops, [
      { op: "tag", port: "eth2", tag: 1, vn: 100 },
      { op: "mac.local", vn: 100, mac: m(1), port: "eth2", active: true, vnic: u(1) },
      { op: "ip", vn: 100, ip: "10.0.0.1", mac: m(1) },
      { op: "ip", vn: 100, ip: "2001:db8::1", mac: m(1) },
    ]);
    const view = await a.show();
    assert.equal(view.vnics, [{ vnic: u(1), state: "active", vns: [{ vn: VN_BLUE, tag: 1, addrs: [{ mac: m(1), ips: ["10.0.0.1", "2001:db8::1"] }] }] }]);
    assert.ok(e.run.logs.some((l) => l.includes(`VNIC ${u(1)}: Init → Activated (hv-1@eth2)`)), "state change logged");
    assert.ok(e.run.logs.some((l) => l.includes("VAP eth2/VN 100: Disconnected → Connected, tag 1")));
  });

  t("every op is idempotent: a repeated attach returns the same result and emits no op; name, id and alias resolve alike (Req-7)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    const r1 = await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    const mark = e.prog.mark();
    const before = e.snapshot();
    for (const vn of [{ name: VN_BLUE.name }, { id: 100 }, { alias: "blue" }]) {
      const r = await a.request("vnic.attach", { vnic: u(1), vn, addrs: [{ mac: m(1), ips: ["10.0.0.1"] }] });
      assert.equal({ ...r, id: undefined }, { ...r1, id: undefined, ok: true });
      await a.request("addr.associate", { vnic: u(1), vn, addrs: [{ mac: m(1), ips: ["10.0.0.1"] }] });
      await a.request("vnic.activate", { vnic: u(1) });
    }
    assert.equal(e.prog.since(mark), [], "no data-plane op for an unchanged state");
    assert.is(e.snapshot(), before);
    await a.detach(u(1), BLUE);
    const mark2 = e.prog.mark();
    await a.request("vn.disconnect", { vnic: u(1), vn: BLUE });
    await a.request("vnic.deactivate", { vnic: u(1), reason: "shutdown" });
    assert.equal(e.prog.since(mark2), []);
  });

  t("Req-2: two hypervisors sharing a port get the same tag for the same VN; the same tag number maps to different VNs on different ports", async (e) => {
    await e.start();
    const [h1, h2, h3] = [await e.agent("hv-1"), await e.agent("hv-2"), await e.agent("hv-3")];
    const r1 = await h1.attach(u(1), BLUE, [{ mac: m(1) }]);
    const r2 = await h2.attach(u(2), { id: 100 }, [{ mac: m(2) }]);
    assert.is(r1.tag, r2.tag, "hv-1 and hv-2 behind eth2 share the VN's tag");
    const r3 = await h3.attach(u(3), RED, [{ mac: m(3) }]);
    assert.is(r3.tag, r1.tag, "eth3's first tag has the same number");
    const rows = e.core.ports() as any[];
    assert.equal(rows.find((p) => p.port === "eth2").vaps, [{ tag: 1, vn: 100, vnics: 2 }]);
    assert.equal(rows.find((p) => p.port === "eth3").vaps, [{ tag: 1, vn: 200, vnics: 1 }]);
    const r4 = await h1.attach(u(4), RED, [{ mac: m(4) }]);
    assert.is(r4.tag, 2, "another VN on eth2 gets another tag");
    // The tag stays while any VNIC of the VN is left on the port.
    await h1.detach(u(1));
    assert.is((await h2.show() as any).vnics[0].vns[0].tag, 1);
  });

  t("requested tags: granted when free or already the VN's, else tag-conflict; nothing changes on conflict (Req-7)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    assert.is((await a.attach(u(1), BLUE, [{ mac: m(1) }], { tag: 100 })).tag, 100);
    assert.is((await a.attach(u(2), BLUE, [{ mac: m(2) }], { tag: 100 })).tag, 100);
    const before = e.snapshot();
    await rejects(a.attach(u(3), RED, [{ mac: m(3) }], { tag: 100 }), "tag-conflict", "tag");
    await rejects(a.attach(u(2), BLUE, [{ mac: m(2) }], { tag: 7 }), "tag-conflict", "tag");
    await rejects(a.connect(u(9), BLUE, { tag: 8 }), "tag-conflict", "tag");
    assert.is(e.snapshot(), before);
    assert.is((await a.attach(u(3), RED, [{ mac: m(3) }], { tag: 4094 })).tag, 4094);
  });

  t("a freed tag is quarantined for tagQuarantineMs, then reusable; its own VN may take it back (Req-7)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    assert.is((await a.attach(u(1), BLUE, [{ mac: m(1) }])).tag, 1);
    const mark = e.prog.mark();
    await a.detach(u(1), BLUE);
    assert.ok(has(e.prog.since(mark), { op: "tag.del", port: "eth2", tag: 1 }));
    assert.equal((e.core.ports() as any[])[0].quarantine, [{ tag: 1, vn: 100, until: e.run.clock.now() + 5000 }]);
    assert.is((await a.attach(u(2), RED, [{ mac: m(2) }])).tag, 2, "not reused inside the quarantine");
    await rejects(a.attach(u(3), GREEN, [{ mac: m(3) }], { tag: 1 }), "tag-conflict", "tag");
    e.run.clock.advance(4999);
    assert.is((await a.attach(u(3), GREEN, [{ mac: m(3) }])).tag, 3);
    await a.detach(u(3));
    e.run.clock.advance(1);
    assert.is((await a.attach(u(4), GREEN, [{ mac: m(4) }])).tag, 1, "reused once the quarantine is over");
    // the VN that freed a tag may take it back at once
    await a.detach(u(2));
    assert.is((await a.attach(u(5), RED, [{ mac: m(5) }], { tag: 2 })).tag, 2);
  });

  t("vn.connect activate:false pre-associates (Associated: no traffic), vnic.activate lets traffic flow; suspend keeps bindings (RFC 8394 §3, Req-8)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    const c = await a.connect(u(1), { name: VN_BLUE.name }, { activate: false });
    assert.is(c.tag, 1);
    let mark = e.prog.mark();
    await a.associate(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    assert.equal(e.prog.since(mark), [{ op: "mac.local", vn: 100, mac: m(1), port: "eth2", active: false, vnic: u(1) }, { op: "ip", vn: 100, ip: "10.0.0.1", mac: m(1) }]);
    assert.is(((await a.show()) as any).vnics[0].state, "associated");
    mark = e.prog.mark();
    await a.activate(u(1));
    assert.equal(e.prog.since(mark), [{ op: "mac.local", vn: 100, mac: m(1), port: "eth2", active: true, vnic: u(1) }]);
    mark = e.prog.mark();
    await a.deactivate(u(1), "suspend");
    assert.equal(e.prog.since(mark), [{ op: "mac.local", vn: 100, mac: m(1), port: "eth2", active: false, vnic: u(1) }]);
    const v = (await a.show()) as any;
    assert.is(v.vnics[0].state, "associated");
    assert.equal(v.vnics[0].vns[0].addrs, [{ mac: m(1), ips: ["10.0.0.1"] }], "suspend keeps the bindings");
    assert.ok(e.run.logs.some((l) => l.includes("Activated (hv-1@eth2) → Associated")));
    await a.activate(u(1));
    await rejects(a.activate(u(2)), "unknown-vnic", "vnic");
    await rejects(a.deactivate(u(2), "suspend"), "unknown-vnic", "vnic");
  });

  t("addr.associate is a union; MAC/IP of another VNIC: address-conflict; not-connected; unknown-vnic; unknown-vn (Req-8, Req-10)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    const a3 = await e.agent("hv-3");
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    await a3.attach(u(3), BLUE, [{ mac: m(3), ips: ["10.0.0.3"] }]);
    await a.associate(u(1), BLUE, [{ mac: m(11), ips: ["10.0.0.11", "10.1.2.0/28"] }, { mac: m(1), ips: ["10.0.0.2"] }]);
    let v = (await a.show()) as any;
    assert.equal(v.vnics[0].vns[0].addrs, [{ mac: m(1), ips: ["10.0.0.1", "10.0.0.2"] }, { mac: m(11), ips: ["10.0.0.11", "10.1.2.0/28"] }]);
    const before = e.snapshot();
    await rejects(a.associate(u(1), BLUE, [{ mac: m(12) }, { mac: m(3) }]), "address-conflict", "addrs[1].mac");
    await rejects(a.associate(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.9", "10.0.0.3"] }]), "address-conflict", "addrs[0].ips[1]");
    await rejects(a.associate(u(1), RED, [{ mac: m(1) }]), "not-connected", "vn");
    await rejects(a.associate(u(7), BLUE, [{ mac: m(7) }]), "unknown-vnic", "vnic");
    await rejects(a.associate(u(1), { alias: "nope" }, [{ mac: m(7) }]), "unknown-vn", "vn");
    await rejects(a.attach(u(7), { id: 4242 }, [{ mac: m(7) }]), "unknown-vn", "vn");
    // another End Device's VNIC is answered exactly as an unknown one (PROTOCOL.md §2 Authority)
    const theirs = await rejects(a.associate(u(3), BLUE, [{ mac: m(8) }]), "unknown-vnic", "vnic");
    const unknown = await rejects(a.associate(u(7), BLUE, [{ mac: m(8) }]), "unknown-vnic", "vnic");
    assert.is(theirs.message, unknown.message.replace(u(7), u(3)));
    assert.is(e.snapshot(), before, "refused requests changed nothing");
    // the same MAC in another VN is another binding (MACs are per VN)
    await a.attach(u(1), RED, [{ mac: m(3) }]);
    // an IP moves between MACs of the same VNIC (IP–MAC pair update, Req-10)
    const mark = e.prog.mark();
    await a.associate(u(1), BLUE, [{ mac: m(11), ips: ["10.0.0.2"] }]);
    assert.equal(e.prog.since(mark), [{ op: "ip", vn: 100, ip: "10.0.0.2", mac: m(11) }]);
    v = (await a.show()) as any;
    assert.equal(v.vnics[0].vns[0].addrs[0], { mac: m(1), ips: ["10.0.0.1"] });
  });

  t("addr.disassociate: a MAC without ips removes it and its IPs; with ips only those (Req-8, Req-10, seed §3.1)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1", "10.0.0.2"] }, { mac: m(2), ips: ["10.0.0.3"] }]);
    let mark = e.prog.mark();
    await a.disassociate(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.2"] }]);
    assert.equal(e.prog.since(mark), [{ op: "ip.del", vn: 100, ip: "10.0.0.2" }]);
    mark = e.prog.mark();
    await a.disassociate(u(1), BLUE, [{ mac: m(2) }]);
    assert.equal(e.prog.since(mark), [{ op: "ip.del", vn: 100, ip: "10.0.0.3" }, { op: "mac.del", vn: 100, mac: m(2) }]);
    mark = e.prog.mark();
    await a.disassociate(u(1), BLUE, [{ mac: m(2) }]); // idempotent
    assert.equal(e.prog.since(mark), []);
    await rejects(a.disassociate(u(1), RED, [{ mac: m(1) }]), "not-connected", "vn");
    await rejects(a.disassociate(u(5), BLUE, [{ mac: m(1) }]), "unknown-vnic", "vnic");
    assert.equal(((await a.show()) as any).vnics[0].vns[0].addrs, [{ mac: m(1), ips: ["10.0.0.1"] }]);
  });

  t("vn.disconnect removes every address of the VNIC in that VN (containment, seed §3.1); the last VN → Init (Req-5)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }, { mac: m(2) }]);
    await a.attach(u(1), RED, [{ mac: m(1), ips: ["10.9.0.1"] }]);
    const mark = e.prog.mark();
    await a.detach(u(1), BLUE);
    const ops = e.prog.since(mark);
    assert.equal(ops, [
      { op: "ip.del", vn: 100, ip: "10.0.0.1" }, { op: "mac.del", vn: 100, mac: m(1) }, { op: "mac.del", vn: 100, mac: m(2) },
      { op: "tag.del", port: "eth2", tag: 1 },
    ]);
    assert.equal(((await a.show()) as any).vnics[0].vns.map((x: any) => x.vn.id), [200]);
    await a.detach(u(1), RED);
    assert.equal(((await a.show()) as any).vnics, []);
    assert.ok(e.run.logs.some((l) => l.includes(`VNIC ${u(1)}: Activated (hv-1@eth2) → Init`)));
  });

  t("vnic.deactivate shutdown purges every binding of the VNIC now; repeating it succeeds (Req-8, seed §4.4)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    await a.attach(u(1), GREEN, [{ mac: m(2) }]);
    const mark = e.prog.mark();
    await a.deactivate(u(1), "shutdown");
    const ops = e.prog.since(mark);
    for (const o of [{ op: "ip.del", ip: "10.0.0.1" }, { op: "mac.del", mac: m(1) }, { op: "mac.del", mac: m(2) }, { op: "tag.del", tag: 1 }, { op: "tag.del", tag: 2 }])
      assert.ok(has(ops, o as Partial<DpOp>), JSON.stringify(o));
    assert.equal(e.core.bindings().filter((x) => x.where === "local"), []);
    const r = await a.request("vnic.deactivate", { vnic: u(1), reason: "shutdown" });
    assert.is(r.ok, true);
  });

  t("migration within one NVE moves the bindings to the new port without a withdraw (Req-13, seed §4.3)", async (e) => {
    await e.start();
    const src = await e.agent("hv-1");
    const dst = await e.agent("hv-3");
    await src.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    let mark = e.prog.mark();
    await src.migrateOut(u(1));
    assert.equal(e.prog.since(mark), [{ op: "mac.local", vn: 100, mac: m(1), port: "eth2", active: false, vnic: u(1) }]);
    const held = e.core.bindings().find((x) => x.mac === m(1))!;
    assert.is(held.holdUntil, e.run.clock.now() + 10000);
    mark = e.prog.mark();
    const r = await dst.migrateIn(u(1), [{ vn: BLUE, addrs: [{ mac: m(1), ips: ["10.0.0.1"] }] }]);
    assert.is(r[0].tag, 1);
    const ops = e.prog.since(mark);
    assert.equal(ops, [
      { op: "tag", port: "eth3", tag: 1, vn: 100 },
      { op: "mac.local", vn: 100, mac: m(1), port: "eth3", active: true, vnic: u(1) },
      { op: "tag.del", port: "eth2", tag: 1 },
    ]);
    assert.not.ok(ops.some((o) => o.op === "mac.del" || o.op === "ip.del"), "no withdraw");
    assert.equal(((await dst.show()) as any).vnics[0].vnic, u(1));
    assert.equal(((await src.show()) as any).vnics, []);
    assert.ok(e.run.logs.some((l) => l.includes("activation flagged as hot migration (Req-13)")));
    // the source reporting its side late changes nothing
    mark = e.prog.mark();
    assert.is((await src.request("vnic.deactivate", { vnic: u(1), reason: "migration" })).ok, true);
    assert.equal(e.prog.since(mark), []);
    // the hold timer was cancelled: nothing is purged later. A timer that fired inside advance()
    // queued its purge before the show below (the core runs changes in order), so the show sees it.
    mark = e.prog.mark();
    e.run.clock.advance(20000);
    assert.is((await dst.show() as any).vnics.length, 1);
    assert.equal(e.prog.since(mark), [], "no purge");
    assert.not.ok(e.run.logs.some((l) => l.includes("migration hold of")), "no hold expired");
  });

  t("a VNIC held after migrating away and pre-associated again (the VM comes back, issue 15) is not purged when the hold ends", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    await a.deactivate(u(1), "migration");
    assert.ok(((await a.show()) as any).vnics[0].holdUntil, "held for migration");
    const conn = await a.request("vn.connect", { vnic: u(1), vn: BLUE, activate: false });
    assert.is(conn.ok, true, JSON.stringify(conn));
    assert.is(((await a.show()) as any).vnics[0].holdUntil, undefined, "the pre-association ends the hold");
    const mark = e.prog.mark();
    e.run.clock.advance(20000);
    const v = ((await a.show()) as any).vnics;
    assert.is(v.length, 1, "not purged");
    assert.is(v[0].state, "associated");
    assert.equal(e.prog.since(mark), [], "nothing withdrawn");
    assert.is((await a.request("vnic.activate", { vnic: u(1), migration: true })).ok, true, "it can be activated again");
  });

  t("a held VNIC activating again on the same hypervisor keeps everything; an address of a held VNIC moves to a new VNIC (Req-13)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    const c = await e.agent("hv-4");
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    await a.migrateOut(u(1));
    await a.activate(u(1));
    assert.is(((await a.show()) as any).vnics[0].state, "active");
    assert.is(((await a.show()) as any).vnics[0].holdUntil, undefined);
    await a.deactivate(u(1), "migration");
    const events: any[] = [];
    a.on("event", (ev) => events.push(ev));
    const mark = e.prog.mark();
    await c.attach(u(2), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    const ops = e.prog.since(mark);
    assert.not.ok(ops.some((o) => o.op === "mac.del" || o.op === "ip.del"), JSON.stringify(ops));
    assert.ok(has(ops, { op: "mac.local", mac: m(1), port: "eth4", active: true } as Partial<DpOp>));
    await until(() => events.length > 0);
    assert.equal(events[0], { event: "addr.disassociated", vnic: u(1), vn: VN_BLUE, addrs: [{ mac: m(1), ips: ["10.0.0.1"] }], reason: "moved" });
  });

  t("a migration hold that runs out purges the bindings (holdMs)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    await a.migrateOut(u(1));
    const mark = e.prog.mark();
    e.run.clock.advance(9999);
    await a.show(); // queued after anything the advance fired (the core runs changes in order)
    assert.equal(e.prog.since(mark), []);
    e.run.clock.advance(1);
    await until(() => e.prog.since(mark).length > 0, 5000, "purge");
    assert.equal(e.prog.since(mark), [{ op: "ip.del", vn: 100, ip: "10.0.0.1" }, { op: "mac.del", vn: 100, mac: m(1) }, { op: "tag.del", port: "eth2", tag: 1 }]);
    assert.ok(e.run.logs.some((l) => l.includes("migration hold of 10000 ms expired")));
  });

  t("an agent's will starts agentHoldMs: forwarding kept, then every VNIC deactivated (shutdown); a return in time cancels it (PROTOCOL.md §3)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1) }]);
    // hv-2 keeps its desired state in a file, so when it comes back its sync restates u(2)
    const { mkdtempSync, rmSync } = await import("node:fs");
    const dir = mkdtempSync("/tmp/nvl-agent-");
    e.raws.push({ close: async () => rmSync(dir, { recursive: true, force: true }) });
    const b2 = await e.agent("hv-2", `${dir}/hv-2.json`);
    await b2.attach(u(2), BLUE, [{ mac: m(2) }]);
    // kill hv-1 without DISCONNECT: the broker publishes its will
    (a.client as any).stream.destroy();
    await a.client.endAsync(true);
    e.agents.splice(e.agents.indexOf(a), 1);
    await until(() => (e.core.ports() as any[])[0].hypervisors[0].state === "offline", 5000, "will");
    const hvRow = (e.core.ports() as any[])[0].hypervisors[0];
    assert.is(hvRow.holdUntil, e.run.clock.now() + 30000);
    const mark = e.prog.mark();
    e.run.clock.advance(29999);
    await b2.show(); // queued after anything the advance fired
    assert.equal(e.prog.since(mark), [], "still forwarding inside agentHoldMs");
    e.run.clock.advance(1);
    await until(() => e.core.viewHv("hv-1").vnics.length === 0, 5000, "purge");
    await b2.show(); // queued after the purge's store and data-plane commit (the model is committed first, core.ts commitGroup)
    assert.equal(e.prog.since(mark), [{ op: "mac.del", vn: 100, mac: m(1) }]);
    assert.is(e.core.viewHv("hv-2").vnics.length, 1, "the other End Device on the port is untouched");
    // hv-2 dies and comes back in time: the hold is cancelled, nothing is purged, then or later
    (b2.client as any).stream.destroy();
    await b2.client.endAsync(true);
    e.agents.splice(e.agents.indexOf(b2), 1);
    await until(() => (e.core.ports() as any[])[0].hypervisors[1].state === "offline", 5000, "will");
    assert.is((e.core.ports() as any[])[0].hypervisors[1].holdUntil, e.run.clock.now() + 30000, "hv-2's hold is running");
    e.run.clock.advance(1000);
    const mark2 = e.prog.mark();
    const b3 = await e.agent("hv-2", `${dir}/hv-2.json`);
    assert.is(b3.syncs, 1);
    await until(() => (e.core.ports() as any[])[0].hypervisors[1].state === "online", 5000, "online");
    assert.is((e.core.ports() as any[])[0].hypervisors[1].holdUntil, undefined, "the hold is cancelled");
    e.run.clock.advance(60000); // long past the 30 s the hold had left
    assert.is((await b3.show() as any).vnics.length, 1, "u(2) kept");
    assert.equal(e.prog.since(mark2), [], "no op: its sync restated u(2), no purge fired");
    assert.is(e.core.viewHv("hv-2").vnics[0].vnic, u(2));
    assert.not.ok(e.run.logs.some((l) => l.includes("agent hv-2: not back within agentHoldMs")), "the hold never expired");
  });

  t("a restarted agent's hello + sync changes nothing when nothing changed (PROTOCOL.md §3)", async (e) => {
    await e.start();
    const { mkdtempSync, rmSync } = await import("node:fs");
    const dir = mkdtempSync("/tmp/nvl-agent-");
    try {
      const a = await e.agent("hv-1", `${dir}/state.json`);
      await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }], { tag: 10 });
      await a.connect(u(1), RED, { activate: false });
      await a.attach(u(2), GREEN, [{ mac: m(2) }]);
      await a.deactivate(u(2), "suspend");
      const before = e.snapshot();
      const mark = e.prog.mark();
      const storeBefore = JSON.stringify(e.run.store.list("vnics"));
      (a.client as any).stream.destroy();
      await a.client.endAsync(true);
      e.agents.splice(e.agents.indexOf(a), 1);
      const a2 = await e.agent("hv-1", `${dir}/state.json`);
      assert.is(a2.syncs, 1);
      assert.equal(e.prog.since(mark), [], "no data-plane op");
      assert.is(e.snapshot(), before);
      assert.is(JSON.stringify(e.run.store.list("vnics")), storeBefore, "no VNIC record rewritten differently");
      assert.equal([...a2.desired.keys()].sort(), [u(1), u(2)]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  t("sync in chunks makes the NVE's state for the {hv} the union of the chunks; returns tags; tags requested are preferences", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1) }]);
    await a.attach(u(9), RED, [{ mac: m(9) }]);
    const r = await e.raw("hv-1");
    assert.is((await r.request("hello", { agent: "raw" })).ok, true);
    const syncId = "11111111-2222-4333-8444-555555555555";
    const c1 = await r.request("sync", { syncId, final: false, vnics: [{ vnic: u(1), state: "active", vns: [{ vn: BLUE, addrs: [{ mac: m(1), ips: ["10.0.0.1"] }] }] }] });
    assert.equal({ ok: c1.ok, tags: c1.tags }, { ok: true, tags: [] });
    const c2 = await r.request("sync", { syncId, final: true, vnics: [
      { vnic: u(1), state: "active", vns: [{ vn: BLUE, addrs: [{ mac: m(1), ips: ["10.0.0.2"] }] }] },
      { vnic: u(2), state: "associated", vns: [{ vn: GREEN, tag: 33, addrs: [{ mac: m(2) }] }] },
    ] });
    assert.is(c2.ok, true, JSON.stringify(c2));
    assert.equal(c2.tags, [{ vn: VN_BLUE, tag: 1 }, { vn: VN_GREEN, tag: 33 }]);
    const v = e.core.viewHv("hv-1") as any;
    assert.equal(v.vnics.map((x: any) => [x.vnic, x.state, x.vns[0].addrs]), [
      [u(1), "active", [{ mac: m(1), ips: ["10.0.0.1", "10.0.0.2"] }]],
      [u(2), "associated", [{ mac: m(2), ips: [] }]],
    ]);
    assert.ok(!e.core.bindings().some((x) => x.mac === m(9)), "u(9) was not in the sync: removed");
    // a new syncId: a chunk of the finished one would be answered as the first time (PROTOCOL.md §2 Authority)
    const bad = await r.request("sync", { syncId: "11111111-2222-4333-8444-666666666666", final: true, vnics: [{ vnic: u(3), state: "active", vns: [{ vn: { alias: "nope" }, addrs: [] }] }] });
    assert.equal(bad.error, { code: "unknown-vn", message: bad.error.message, field: "vnics[0].vns[0].vn" });
  });

  t("NVE-initiated: operator removes a VNIC or a VN, de-associates addresses, changes a profile, drains; events reach the agent (Req-6, Req-9)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    const events: any[] = [];
    a.on("event", (ev) => events.push(ev));
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1", "10.0.0.2"] }]);
    await a.attach(u(2), RED, [{ mac: m(2) }]);
    await a.attach(u(3), GREEN, [{ mac: m(3) }]);
    await e.core.disassociate(u(1), "blue", [{ mac: m(1), ips: ["10.0.0.2"] }]);
    await until(() => events.length === 1);
    assert.equal(events[0], { event: "addr.disassociated", vnic: u(1), vn: VN_BLUE, addrs: [{ mac: m(1), ips: ["10.0.0.2"] }], reason: "operator" });
    assert.equal(a.desired.get(u(1))!.vns[0].addrs, [{ mac: m(1), ips: ["10.0.0.1"] }], "the agent's desired state follows");
    await e.core.removeVnic(u(1));
    await until(() => events.length === 2);
    assert.equal(events[1], { event: "vn.disconnected", vnic: u(1), vn: VN_BLUE, reason: "operator" });
    assert.not.ok(a.desired.has(u(1)));
    assert.equal(e.core.viewHv("hv-1").vnics.map((x: any) => x.vnic), [u(2), u(3)]);
    await e.core.disconnectVnic(u(2), 200);
    await until(() => events.length === 3);
    assert.equal(events[2], { event: "vn.disconnected", vnic: u(2), vn: VN_RED, reason: "operator" });
    await e.core.setProfile("green", { encap: "nvgre", mtu: 1400 } as any);
    await until(() => events.length === 4);
    assert.is(events[3].event, "vn.profile");
    assert.is(events[3].profile.mtu, 1400);
    assert.is(((await a.vnProfile(GREEN)) as any).mtu, 1400);
    const mark = e.prog.mark();
    await e.core.removeVn("green", "vn-removed");
    await until(() => events.length === 5);
    assert.equal(events[4], { event: "vn.disconnected", vnic: u(3), vn: VN_GREEN, reason: "vn-removed" });
    assert.equal(e.prog.since(mark).at(-1), { op: "vn.del", vn: 300 });
    await rejects(a.attach(u(4), GREEN, [{ mac: m(4) }]), "unknown-vn", "vn");
    e.core.drain();
    await until(() => events.length === 6);
    assert.equal(events[5], { event: "nve.draining" });
    // a resync after all that changes nothing
    const mark2 = e.prog.mark();
    await a.resync();
    assert.equal(e.prog.since(mark2), []);
  });

  t("vn.profile returns the VN's references, vni, mtu and profile (seed §4.5)", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    const p = (await a.vnProfile({ name: VN_RED.name })) as any;
    assert.equal({ vn: p.vn, vni: p.vni, mtu: p.mtu, encap: p.profile.encap }, { vn: VN_RED, vni: 6000, mtu: 1400, encap: "geneve" });
    await rejects(a.vnProfile({ id: 999 }), "unknown-vn", "vn");
  });

  t("bad input: malformed JSON, wrong types, unknown ops, invalid UUIDs/MACs/IPs/prefixes, oversized payloads; state unchanged, NVE still serving", async (e) => {
    await e.start();
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    const r = await e.raw("hv-1");
    const before = e.snapshot();
    const mark = e.prog.mark();
    const err = async (payload: string | Buffer, id: string | null, code: string, field?: string) => {
      const rsp = await r.send(payload, id);
      assert.is(rsp.ok, false, String(payload).slice(0, 100));
      assert.is(rsp.error.code, code, `${String(payload).slice(0, 100)} → ${rsp.error.message}`);
      assert.type(rsp.error.message, "string");
      if (field !== undefined) assert.is(rsp.error.field, field, rsp.error.message);
      return rsp.error.message as string;
    };
    await err("{not json", null, "bad-request");
    await err('{"id":"x1","op":"hello"', "x1", "bad-request");
    await err(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), null, "bad-request");
    await err("[1,2]", null, "bad-request");
    await err('{"op":"hello","agent":"x"}', null, "bad-request", "id");
    await err(JSON.stringify({ id: "y".repeat(65), op: "hello", agent: "x" }), null, "bad-request", "id");
    await err(JSON.stringify({ id: 5, op: "hello", agent: "x" }), null, "bad-request", "id");
    await err(JSON.stringify({ id: "x2", op: 7 }), "x2", "bad-request", "op");
    await err(JSON.stringify({ id: "x3", op: "vnic.explode" }), "x3", "unknown-op", "op");
    await err(JSON.stringify({ id: "x4", op: "hello" }), "x4", "bad-request", "agent");
    await err(JSON.stringify({ id: "x5", op: "vnic.attach", vnic: "not-a-uuid", vn: BLUE, addrs: [{ mac: m(2) }] }), "x5", "bad-request", "vnic");
    await err(JSON.stringify({ id: "x6", op: "vnic.attach", vnic: u(0xabcdef).toUpperCase(), vn: BLUE, addrs: [{ mac: m(2) }] }), "x6", "bad-request", "vnic");
    await err(JSON.stringify({ id: "x7", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [{ mac: "01:00:5e:00:00:01" }] }), "x7", "bad-request", "addrs[0].mac");
    await err(JSON.stringify({ id: "x8", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [{ mac: "00:00:00:00:00:00" }] }), "x8", "bad-request", "addrs[0].mac");
    await err(JSON.stringify({ id: "x9", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [{ mac: "02:00:5e:00:00" }] }), "x9", "bad-request", "addrs[0].mac");
    await err(JSON.stringify({ id: "x10", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [{ mac: m(2), ips: ["10.0.0.256"] }] }), "x10", "bad-request", "addrs[0].ips[0]");
    await err(JSON.stringify({ id: "x11", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [{ mac: m(2), ips: ["10.1.2.1/28"] }] }), "x11", "bad-request", "addrs[0].ips[0]");
    await err(JSON.stringify({ id: "x12", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [{ mac: m(2), ips: ["2001:db8::/129"] }] }), "x12", "bad-request", "addrs[0].ips[0]");
    await err(JSON.stringify({ id: "x13", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [{ mac: m(2), ips: ["fe80::1%eth0"] }] }), "x13", "bad-request", "addrs[0].ips[0]");
    await err(JSON.stringify({ id: "x14", op: "vnic.attach", vnic: u(2), vn: { id: "100" }, addrs: [{ mac: m(2) }] }), "x14", "bad-request", "vn");
    // a VN reference that is none of its alternatives is named as a whole (schemas.ts vnRefSchema)
    for (const [id, vn] of [["x15", { id: 100, alias: "blue" }], ["x15b", {}], ["x15c", { name: "not-a-uuid" }], ["x15d", { alias: "" }]] as const)
      assert.match(await err(JSON.stringify({ id, op: "vnic.attach", vnic: u(2), vn, addrs: [{ mac: m(2) }] }), id, "bad-request", "vn"), /exactly one of/);
    assert.match(await err(JSON.stringify({ id: "x15e", op: "sync", syncId: u(9), final: true, vnics: [{ vnic: u(2), state: "active", vns: [{ vn: { id: 0 }, addrs: [] }] }] }),
      "x15e", "bad-request", "vnics[0].vns[0].vn"), /exactly one of/);
    await err(JSON.stringify({ id: "x16", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [] }), "x16", "bad-request", "addrs");
    await err(JSON.stringify({ id: "x17", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [{ mac: m(2) }], tag: 4095 }), "x17", "bad-request", "tag");
    await err(JSON.stringify({ id: "x18", op: "vnic.attach", vnic: u(2), vn: BLUE, addrs: [{ mac: m(2) }], tag: "5" }), "x18", "bad-request", "tag");
    await err(JSON.stringify({ id: "x19", op: "vnic.deactivate", vnic: u(1), reason: "nap" }), "x19", "bad-request", "reason");
    await err(JSON.stringify({ id: "x20", op: "vnic.activate", vnic: u(1), extra: 1 }), "x20", "bad-request", "extra");
    await err(JSON.stringify({ id: "x21", op: "sync", syncId: "nope", vnics: [], final: true }), "x21", "bad-request", "syncId");
    await err(JSON.stringify({ id: "x22", op: "vn.connect", vnic: u(1), vn: BLUE, activate: "yes" }), "x22", "bad-request", "activate");
    const big = JSON.stringify({ id: "big", op: "addr.associate", vnic: u(1), vn: BLUE, addrs: [{ mac: m(1), ips: [] }], pad: "x".repeat(262144) });
    await err(big, "big", "too-large");
    assert.is(e.snapshot(), before, "state unchanged");
    assert.equal(e.prog.since(mark), [], "no data-plane op");
    const h = await r.request("hello", { agent: "still-serving" });
    assert.is(h.ok, true, "the NVE still serves");
    assert.ok(e.run.logs.some((l) => l.includes("request from hv-1 refused: bad-request")));
  });

  if (fx.name.includes("MQTT 5")) t("MQTT 5: responses carry contentType application/json and payloadFormatIndicator, and echo correlationData (PROTOCOL.md §1)", async (e) => {
    await e.start();
    const mqtt = (await import("mqtt")).default;
    const c = await mqtt.connectAsync(b.url, { protocolVersion: 5, ...b.creds("hv-1"), reconnectPeriod: 0 });
    try {
      const got = new Promise<{ payload: Buffer; props: any }>((resolve) => c.on("message", (_t, payload, packet) => resolve({ payload, props: packet.properties })));
      await c.subscribeAsync("nvo3/v1/hv/hv-1/rsp", { qos: 1 });
      await c.publishAsync(`nvo3/v1/nve/${e.nve}/req/hv-1`, JSON.stringify({ id: "c5", op: "hello", agent: "v5" }),
        { qos: 1, properties: { correlationData: Buffer.from("corr-42"), contentType: "application/json" } });
      const r = await got;
      assert.is(JSON.parse(r.payload.toString()).id, "c5");
      assert.is(r.props.contentType, "application/json");
      assert.is(r.props.payloadFormatIndicator, true);
      assert.is(Buffer.from(r.props.correlationData).toString(), "corr-42");
    } finally {
      await c.endAsync(true);
    }
  });

  t("a request on another hypervisor's topic is refused by the broker ACL; state unchanged (Req-11)", async (e) => {
    await e.start();
    const victim = await e.agent("hv-2");
    await victim.attach(u(2), BLUE, [{ mac: m(2) }]);
    const r = await e.raw("hv-1");
    assert.is((await r.request("hello", { agent: "x" })).ok, true);
    // hv-1 may not read hv-2's responses: Mosquitto grants the SUBACK on 3.1.1 but delivers nothing, aedes refuses it
    await r.client.subscribeAsync("nvo3/v1/hv/hv-2/rsp", { qos: 1 }).catch(() => {});
    const before = e.snapshot();
    for (const op of [{ op: "vnic.deactivate", vnic: u(2), reason: "shutdown" }, { op: "vnic.attach", vnic: u(5), vn: BLUE, addrs: [{ mac: m(5) }] }])
      await r.client.publishAsync(`nvo3/v1/nve/${e.nve}/req/hv-2`, JSON.stringify({ id: "evil", ...op }), { qos: 1 }).catch(() => {});
    const h = await r.request("hello", { agent: "x" });
    assert.is(h.ok, true, "the NVE still serves");
    assert.is((await victim.show()).ok, true);
    assert.is(e.snapshot(), before);
    assert.not.ok(r.got.some((g) => g.topic === "nvo3/v1/hv/hv-2/rsp"), "nothing of hv-2's reached hv-1");
    assert.is(e.core.viewHv("hv-2").vnics.length, 1);
  });

  t("limit-exceeded, rate-limited and internal (the data plane refuses) change nothing", async (e) => {
    await e.start({ limits: { maxVnicsPerHv: 2, maxAddrsPerVnic: 3, ratePerSecond: 5, burst: 40 } });
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1) }]);
    await a.attach(u(2), BLUE, [{ mac: m(2) }]);
    const before = e.snapshot();
    await rejects(a.attach(u(3), BLUE, [{ mac: m(3) }]), "limit-exceeded", "vnic");
    await rejects(a.associate(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1", "10.0.0.2", "10.0.0.3"] }]), "limit-exceeded", "addrs");
    e.prog.failNext = new Error("table full");
    await rejects(a.attach(u(1), RED, [{ mac: m(5) }]), "internal");
    assert.is(e.snapshot(), before);
    assert.equal(e.run.store.list("vaps").map(([k]) => k), ["eth2|100"], "the store was put back");
    // the rate limit: the fake clock does not move, so the bucket empties
    let limited: AgentError | undefined;
    for (let i = 0; i < 60 && !limited; i++) limited = await a.request("vn.profile", { vn: BLUE }).then(() => undefined, (x) => x);
    assert.ok(limited);
    assert.is(limited!.code, "rate-limited");
    e.run.clock.advance(1000);
    assert.is((await a.request("vn.profile", { vn: BLUE })).ok, true);
  });

  // NVE logic with a big config: once, through the first broker, keeps the suite short.
  if (fx === brokerFixtures()[0] || fx.name.startsWith("embedded")) t("tag-exhausted: a port with every tag 1..4094 in use refuses one more VN; nothing changes", async (e) => {
    const vns = Array.from({ length: 4095 }, (_, i) => ({ id: 1000 + i, vni: 10000 + i, profile: { encap: "vxlan", mtu: 1450 } }));
    await e.start({ over: { vns, remotes: [] } });
    const r = await e.raw("hv-3");
    assert.is((await r.request("hello", { agent: "raw" })).ok, true);
    const syncId = "21111111-2222-4333-8444-555555555555";
    const all = vns.map((v, i) => ({ vnic: u(i + 1), state: "active", vns: [{ vn: { id: v.id }, addrs: [{ mac: m(i + 1) }] }] }));
    for (let i = 0; i < 4094; i += 1000) {
      const part = all.slice(i, Math.min(i + 1000, 4094));
      const rsp = await r.request("sync", { syncId, final: i + 1000 >= 4094, vnics: part });
      assert.is(rsp.ok, true, JSON.stringify(rsp.error));
    }
    assert.is((e.core.ports() as any[]).find((p) => p.port === "eth3").vaps.length, 4094);
    const before = e.snapshot();
    const rsp = await r.request("vnic.attach", { vnic: u(5000), vn: { id: 5094 }, addrs: [{ mac: m(5000) }] });
    assert.is(rsp.error?.code, "tag-exhausted");
    assert.is(e.snapshot(), before);
  });

  t("an NVE restart restores its bindings from the store before answering; the agents see the new bootId and resync with no change (PROTOCOL.md §3)", async (e) => {
    const run1 = await e.start();
    const a = await e.agent("hv-1");
    await a.attach(u(1), BLUE, [{ mac: m(1), ips: ["10.0.0.1"] }]);
    await a.attach(u(2), RED, [{ mac: m(2) }], { tag: 77 });
    const boot1 = run1.svc.core.settings.bootId;
    const view1 = JSON.stringify(run1.svc.core.viewHv("hv-1"));
    await run1.svc.kill();
    const syncsBefore = a.syncs;
    const run2 = await startNve(e.b, { config: baseConfig({}, e.nve), backing: run1.backing, store: e.storeKind });
    e.run = run2;
    assert.is.not(run2.svc.core.settings.bootId, boot1);
    const programmed = run2.prog.since(0);
    assert.ok(has(programmed, { op: "tag", port: "eth2", tag: 77, vn: 200 } as Partial<DpOp>), "restored before answering");
    // the stored local bindings come back as one local.bulk op per port (issue 4: restart time)
    assert.ok(programmed.some((o) => o.op === "local.bulk" && o.port === "eth2" && o.active[o.mac.indexOf(m(1))] === true &&
      o.ips.slice(o.ipStart[o.mac.indexOf(m(1))], o.ipStart[o.mac.indexOf(m(1)) + 1]).includes("10.0.0.1")), "MAC and IP restored");
    const mark = run2.prog.mark();
    await until(() => a.syncs > syncsBefore, 10000, "agent resync after the new bootId");
    assert.equal(run2.prog.since(mark), [], "the resync changed nothing");
    assert.is(JSON.stringify(run2.svc.core.viewHv("hv-1")), view1);
  });

  t("static vnics of the config are programmed and owned by the NVE; agents cannot take them; a restart re-applies nothing", async (e) => {
    const cfg = baseConfig({ vnics: [{ vnic: u(50), port: "eth2", vns: [{ vn: "blue", tag: 10, addrs: [{ mac: m(50), ips: ["10.0.0.50"] }] }] }] }, e.nve);
    const run = await e.start({ config: cfg });
    assert.ok(has(run.prog.since(0), { op: "tag", port: "eth2", tag: 10, vn: 100 } as Partial<DpOp>));
    const a = await e.agent("hv-1");
    assert.is((await a.attach(u(1), BLUE, [{ mac: m(1) }])).tag, 10, "shares the static VAP's tag (Req-2)");
    await rejects(a.deactivate(u(50), "suspend"), "not-authorized", "vnic");
    await rejects(a.attach(u(2), BLUE, [{ mac: m(50) }]), "address-conflict", "addrs[0].mac");
    await run.svc.kill();
    const run2 = await startNve(e.b, { config: cfg, backing: run.backing, store: e.storeKind });
    e.run = run2;
    const after = run2.prog.batches.slice(1).flat(); // batch 0 is the restore; later ones the static reconcile
    assert.equal(after, []);
  });

  s.run();
}

for (const fx of brokerFixtures()) controlSuite(fx);
// The production store too (issue 17): LMDB's pipelined commit (Store.commit: answered once flushed),
// its undo after a data-plane refusal and its restore, through the first broker (one run keeps the suite short).
controlSuite(brokerFixtures()[0], "lmdb");
void MemoryStore;
