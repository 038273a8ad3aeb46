// The mapping authority (PROTOCOL.md §6, issue 6) through a real broker: the
// embedded one with the IMA/operator/NVE roles of its ACL. Every op and rule:
// catalog ops for operators only, flood lists, announcements only after a join,
// RFC 7432 §15 mobility with sequence numbers the IMA assigns (a move is the
// holder's seq + 1, in either order), duplicate detection and freezing, LMDB
// state across a restart that republishes nothing unchanged, and malformed
// requests. The attacks on these rules are in security-ima.test.ts.
import { test } from "uvu";
import * as assert from "uvu/assert";
import mqtt, { type MqttClient } from "mqtt";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedBroker } from "../host/broker/embedded.js";
import { ImaService } from "../host/ima/service.js";
import type { ImaSettings, VnSeed } from "../host/ima/core.js";
import { startMosquitto } from "./support/mosquitto.js";
import { FakeClock } from "./support/control-harness.js";

const NVES = ["nve-a", "nve-b", "nve-c"];
/** The IMA's `nves` list (PROTOCOL.md §6): each NVE with its one underlay IP. */
const NVE_LIST = NVES.map((id, i) => ({ id, ip: `192.0.2.${i + 1}` }));
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const M1 = "02:00:5e:00:00:01";

interface Peer { c: MqttClient; who: string; got: { topic: string; payload: string; retain: boolean }[]; req(op: string, body?: Record<string, unknown>): Promise<any>; raw(payload: string | Buffer, id?: string | null): Promise<any> }

const PASSWORDS: Record<string, string> = { ima: "pw-ima", alice: "pw-alice", "nve-a": "pw-a", "nve-b": "pw-b", "nve-c": "pw-c" };
let usePasswords = false;

async function peer(url: string, who: string, extra: string[] = []): Promise<Peer> {
  const c = await mqtt.connectAsync(url, { username: who, ...(usePasswords ? { password: PASSWORDS[who] } : {}), clientId: `${who}-t-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 0 });
  const got: Peer["got"] = [];
  const waiting = new Map<string | null, (r: any) => void>();
  c.on("message", (topic, payload, packet) => {
    got.push({ topic, payload: payload.toString(), retain: packet.retain });
    if (topic === `nvo3/v1/ima/rsp/${who}`) {
      const r = JSON.parse(payload.toString());
      const w = waiting.get(r.id);
      if (w) { waiting.delete(r.id); w(r); }
    }
  });
  await c.subscribeAsync([`nvo3/v1/ima/rsp/${who}`, ...extra], { qos: 1 });
  let n = 0;
  const send = (id: string | null, payload: string | Buffer) => new Promise<any>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no response to ${payload.toString().slice(0, 80)}`)), 5000);
    waiting.set(id, (r) => { clearTimeout(t); resolve(r); });
    c.publish(`nvo3/v1/ima/req/${who}`, payload, { qos: 1 });
  });
  return {
    c, who, got,
    req: (op, body = {}) => { const id = `r${++n}`; return send(id, JSON.stringify({ id, op, ...body })); },
    raw: (payload, id = null) => send(id, payload),
  };
}

interface Env { broker: { url: string; close(): Promise<void> }; ima: ImaService; dir: string; peers: Peer[]; clock: FakeClock; logs: string[];
  restart(o?: { seed?: VnSeed[] }): Promise<ImaService>; close(): Promise<void> }

async function env(o: { settings?: Partial<ImaSettings>; seed?: VnSeed[]; mosquitto?: boolean; nveHoldMs?: number } = {}): Promise<Env> {
  usePasswords = !!o.mosquitto;
  const broker = o.mosquitto
    ? await startMosquitto({ users: PASSWORDS, nves: NVES, imas: ["ima"], operators: ["alice"] })
    : await startEmbeddedBroker({ port: 0, nves: NVES, imas: ["ima"], operators: ["alice"] });
  const dir = mkdtempSync(join(tmpdir(), "nvl-ima-"));
  // the IMA's clock: its `now` (sequence windows) and its timers (the NVE hold), moved by hand
  const clock = new FakeClock(1_000_000);
  const logs: string[] = [];
  const start = (seed?: VnSeed[]) => ImaService.start({ settings: { operators: ["alice"], nves: NVE_LIST, ...o.settings }, broker: { url: broker.url, reconnectPeriodMs: 0, ...(o.mosquitto ? { password: PASSWORDS.ima } : {}) },
    store: join(dir, "store"), seed, now: () => clock.t, clock, nveHoldMs: o.nveHoldMs, log: (l) => logs.push(l) });
  const e: Env = {
    broker, dir, clock, logs, peers: [], ima: await start(o.seed),
    async restart(r = {}) {
      await e.ima.stop();
      e.ima = await start(r.seed);
      return e.ima;
    },
    async close() {
      for (const p of e.peers) await p.c.endAsync(true).catch(() => {});
      await e.ima.stop().catch(() => {});
      await broker.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return e;
}

async function withEnv(o: Parameters<typeof env>[0], fn: (e: Env, p: (who: string, extra?: string[]) => Promise<Peer>) => Promise<void>) {
  const e = await env(o);
  try {
    await fn(e, async (who, extra) => { const x = await peer(e.broker.url, who, extra); e.peers.push(x); return x; });
  } finally {
    await e.close();
  }
}

/** Waits until `cond` holds (bounded: 3 s). */
async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 3000;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * The retained message a watcher holds for a topic ("" = none), as a fresh
 * subscriber sees it. "None" is known, not guessed after a pause: the broker
 * sends a SUBSCRIBE's retained messages with it, so a non-retained fence
 * published on the same topic after the SUBACK (by a second session of the
 * IMA's identity, the only one that may write there) arrives after them. The
 * fence is not retained: the broker's retained message stays as it was.
 */
async function retained(url: string, topic: string): Promise<string> {
  const as = (who: string) => ({ username: who, ...(usePasswords ? { password: PASSWORDS[who] } : {}), clientId: `${who}-w-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 0 });
  const c = await mqtt.connectAsync(url, as("nve-c"));
  const f = await mqtt.connectAsync(url, as("ima")).catch(async (e) => { await c.endAsync(true); throw e; });
  try {
    const fence = `fence-${Math.random().toString(16).slice(2)}`;
    const got: { payload: string; retain: boolean }[] = [];
    c.on("message", (t, p, packet) => { if (t === topic) got.push({ payload: p.toString(), retain: packet.retain }); });
    await c.subscribeAsync(topic, { qos: 1 });
    await f.publishAsync(topic, fence, { qos: 1, retain: false });
    await until(() => got.some((g) => g.payload === fence), `the fence on ${topic}`);
    // the last message before the fence is the topic's state (the IMA's own
    // publishes, retained, may follow the retained one while it changes)
    return got.slice(0, got.findIndex((g) => g.payload === fence)).at(-1)?.payload ?? "";
  } finally {
    await c.endAsync(true);
    await f.endAsync(true);
  }
}

const blueProfile = { encap: "vxlan", service: "l2", mtu: 1500, portSecurity: false, arpSuppress: false, learn: "explicit" };

// ---- catalog ----------------------------------------------------------------

test("vn.create fills id, VNI and name; publishes the retained VN; vn.list and vn.resolve", async () => {
  await withEnv({}, async (e, p) => {
    const alice = await p("alice");
    const r = await alice.req("vn.create", { alias: "blue" });
    assert.ok(r.ok, JSON.stringify(r));
    assert.is(r.vn.id, 1);
    assert.is(r.vn.alias, "blue");
    assert.match(r.vn.name, UUID_RE);
    assert.is(r.vni, 4096);
    assert.equal(r.profile, blueProfile);
    const r2 = await alice.req("vn.create", { vn: { id: 100, alias: "red" }, vni: 5000, profile: { encap: "geneve", mtu: 1400 } });
    assert.ok(r2.ok, JSON.stringify(r2));
    assert.is(r2.vn.id, 100);
    assert.is(r2.vni, 5000);
    assert.is(r2.profile.encap, "geneve");
    const third = await alice.req("vn.create", { alias: "green" });
    assert.is(third.vn.id, 2, "the lowest free id");
    assert.is(third.vni, 4097, "the lowest free VNI from 4096");
    const rec = JSON.parse(await retained(e.broker.url, "nvo3/v1/ima/vn/100"));
    assert.equal(rec, { name: r2.vn.name, id: 100, alias: "red", vni: 5000, profile: { ...blueProfile, encap: "geneve", mtu: 1400 } });
    const list = await alice.req("vn.list");
    assert.equal(list.vns.map((v: any) => v.id), [1, 2, 100]);
    const nve = await p("nve-a");
    for (const ref of [{ id: 100 }, { alias: "red" }, { name: r2.vn.name }]) {
      const res = await nve.req("vn.resolve", { vn: ref });
      assert.ok(res.ok, JSON.stringify(res));
      assert.equal(res.vn, { id: 100, name: r2.vn.name, alias: "red" });
      assert.is(res.vni, 5000);
    }
    const unknown = await nve.req("vn.resolve", { vn: { alias: "nope" } });
    assert.is(unknown.error.code, "unknown-vn");
  });
});

test("vn.create: duplicates are refused with a clear error naming the field; a repeat is idempotent", async () => {
  await withEnv({}, async (e, p) => {
    const alice = await p("alice");
    const first = await alice.req("vn.create", { vn: { id: 100, alias: "blue" }, vni: 5000 });
    assert.ok(first.ok);
    const again = await alice.req("vn.create", { vn: { id: 100, alias: "blue" }, vni: 5000 });
    assert.ok(again.ok, "the same create again succeeds");
    assert.equal(again, { ...first, id: again.id });
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ alias: "blue", vni: 6000 }, "alias", /alias "blue" is already VN 100/],
      [{ vn: { id: 100, alias: "red" } }, "vn.id", /VN id 100 already exists/],
      [{ alias: "red", vni: 5000 }, "vni", /VNI 5000 is already VN 100/],
      [{ alias: "red", name: first.vn.name }, "name", /is already VN 100/],
      [{ alias: "red", vni: 100, profile: { encap: "nvgre" } }, "vni", /reserved for NVGRE/],
      [{ vni: 7000 }, "alias", /is required/],
      [{ alias: "red", profile: { encap: "ipip" } }, "profile.encap", /must be one of/],
      [{ alias: "red", vn: { alias: "blue" } }, "alias", /given twice/],
    ];
    for (const [body, field, msg] of cases) {
      const r = await alice.req("vn.create", body);
      assert.is(r.ok, false, JSON.stringify(body));
      assert.is(r.error.code, "bad-request", JSON.stringify(r));
      assert.is(r.error.field, field, JSON.stringify(r));
      assert.match(r.error.message, msg);
    }
    const list = await alice.req("vn.list");
    assert.is(list.vns.length, 1, "no refused create changed anything");
  });
});

test("operator ops are refused for identities that are not operators", async () => {
  await withEnv({}, async (e, p) => {
    const alice = await p("alice");
    await alice.req("vn.create", { vn: { id: 7, alias: "blue" } });
    const nve = await p("nve-a");
    for (const [op, body] of [["vn.create", { alias: "x" }], ["vn.delete", { vn: { id: 7 } }], ["vn.set-profile", { vn: { id: 7 }, profile: { encap: "geneve" } }], ["vn.list", {}]] as const) {
      const r = await nve.req(op, body);
      assert.is(r.ok, false, op);
      assert.is(r.error.code, "not-authorized", op);
      assert.match(r.error.message, /not an operator/);
    }
    assert.is((await alice.req("vn.list")).vns.length, 1);
    assert.is((await alice.req("vn.list")).vns[0].profile.encap, "vxlan");
  });
});

test("vn.set-profile publishes the changed record once; vn.delete clears the VN, its flood list and bindings", async () => {
  await withEnv({}, async (e, p) => {
    const alice = await p("alice");
    const watch = await p("nve-c", ["nvo3/v1/ima/vn/+", "nvo3/v1/ima/vtep/7/+", "nvo3/v1/ima/bind/7/+"]);
    await alice.req("vn.create", { vn: { id: 7, alias: "blue" } });
    const a = await p("nve-a");
    assert.ok((await a.req("vtep.join", { vn: { id: 7 }, ip: "192.0.2.1" })).ok);
    assert.ok((await a.req("bind.announce", { vn: { alias: "blue" }, mac: M1, ips: ["10.0.0.1"] })).ok);
    const r = await alice.req("vn.set-profile", { vn: { alias: "blue" }, profile: { encap: "geneve", qos: { dscp: 10 } } });
    assert.ok(r.ok, JSON.stringify(r));
    assert.is(r.profile.encap, "geneve");
    await until(() => watch.got.some((g) => g.topic === "nvo3/v1/ima/vn/7" && g.payload.includes("geneve")), "profile publish");
    const before = watch.got.length;
    assert.ok((await alice.req("vn.set-profile", { vn: { id: 7 }, profile: { qos: { dscp: 10 }, encap: "geneve" } })).ok);
    const bad = await alice.req("vn.set-profile", { vn: { id: 7 }, profile: { encap: "geneve", mtu: 20 } });
    assert.is(bad.error.code, "bad-request");
    assert.is(bad.error.field, "profile.mtu");
    // a real change next: the IMA publishes the VN's record in order, so the
    // first message on the tree after `before` is this one if the two requests
    // above published nothing
    assert.ok((await alice.req("vn.set-profile", { vn: { id: 7 }, profile: { qos: { dscp: 12 }, encap: "geneve" } })).ok);
    await until(() => watch.got.some((g) => g.topic === "nvo3/v1/ima/vn/7" && g.payload.includes('"dscp":12')), "the fence: a changed profile");
    assert.equal(watch.got.slice(before).map((g) => [g.topic, JSON.parse(g.payload).profile.qos.dscp]), [["nvo3/v1/ima/vn/7", 12]],
      "an unchanged or refused profile publishes nothing");
    const d = await alice.req("vn.delete", { vn: { id: 7 } });
    assert.ok(d.ok);
    assert.is(await retained(e.broker.url, "nvo3/v1/ima/vn/7"), "");
    assert.is(await retained(e.broker.url, "nvo3/v1/ima/vtep/7/nve-a"), "");
    assert.is(await retained(e.broker.url, `nvo3/v1/ima/bind/7/${M1}`), "");
    assert.is((await alice.req("vn.delete", { vn: { id: 7 } })).error.code, "unknown-vn");
    assert.is((await a.req("bind.announce", { vn: { id: 7 }, mac: M1 })).error.code, "unknown-vn");
  });
});

// ---- flood lists and bindings -------------------------------------------

test("vtep.join/leave publish the flood list; announcements need a join; leave withdraws the NVE's bindings", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue", vni: 5000 }] }, async (e, p) => {
    const a = await p("nve-a");
    const refused = await a.req("bind.announce", { vn: { id: 100 }, mac: M1 });
    assert.is(refused.error.code, "not-connected");
    assert.match(refused.error.message, /has not joined VN 100/);
    const j = await a.req("vtep.join", { vn: { alias: "blue" }, ip: "192.0.2.1" });
    assert.ok(j.ok);
    assert.is(j.vni, 5000);
    assert.equal(JSON.parse(await retained(e.broker.url, "nvo3/v1/ima/vtep/100/nve-a")), { ip: "192.0.2.1" });
    const an = await a.req("bind.announce", { vn: { id: 100 }, mac: "02:00:5E:00:00:01", ips: ["10.0.0.1", "2001:DB8::1"] });
    assert.ok(an.ok, JSON.stringify(an));
    assert.is(an.seq, 0);
    assert.equal(JSON.parse(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)), { nve: "nve-a", ip: "192.0.2.1", ips: ["10.0.0.1", "2001:db8::1"], seq: 0 });
    // A re-join repeats (idempotent); another IP than the listed one is refused.
    assert.ok((await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" })).ok);
    const other = await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.9" });
    assert.is(other.error.code, "not-authorized");
    assert.is(other.error.field, "ip");
    assert.is(JSON.parse(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)).ip, "192.0.2.1");
    const bad = await a.req("vtep.join", { vn: { id: 100 }, ip: "10.0.0.0/24" });
    assert.is(bad.error.code, "bad-request");
    assert.is(bad.error.field, "ip");
    assert.ok((await a.req("vtep.leave", { vn: { id: 100 } })).ok);
    assert.is(await retained(e.broker.url, "nvo3/v1/ima/vtep/100/nve-a"), "");
    assert.is(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`), "", "leaving withdrew the binding (containment)");
    assert.ok((await a.req("vtep.leave", { vn: { id: 100 } })).ok, "idempotent");
  });
});

test("bind.withdraw clears the retained binding; a withdraw by another NVE changes nothing", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue" }] }, async (e, p) => {
    const a = await p("nve-a"), b = await p("nve-b");
    await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
    await b.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" });
    await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: [] });
    assert.ok((await b.req("bind.withdraw", { vn: { id: 100 }, mac: M1 })).ok);
    assert.is(JSON.parse(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)).nve, "nve-a");
    assert.ok((await a.req("bind.withdraw", { vn: { id: 100 }, mac: M1 })).ok);
    assert.is(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`), "");
    // The sequence continues after a withdraw: the next NVE's announcement is a move (seq 1).
    const r = await b.req("bind.announce", { vn: { id: 100 }, mac: M1 });
    assert.is(r.seq, 1);
  });
});

test("bind.prepare (issue 15): the pre-associating NVE becomes the record's next; the move replaces it; its withdraw or leave clears it", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue" }] }, async (e, p) => {
    const a = await p("nve-a"), b = await p("nve-b"), c = await p("nve-c");
    const topic = `nvo3/v1/ima/bind/100/${M1}`;
    assert.is((await b.req("bind.prepare", { vn: { id: 100 }, mac: M1 })).error.code, "not-connected", "a join first, as for announcements");
    for (const [x, ip] of [[a, "192.0.2.1"], [b, "192.0.2.2"], [c, "192.0.2.3"]] as const) await x.req("vtep.join", { vn: { id: 100 }, ip });
    const none = await b.req("bind.prepare", { vn: { id: 100 }, mac: M1 });
    assert.is(none.nve, null, "nothing to prepare for a MAC nobody holds");
    assert.is(e.ima.core.binds.get(`100|${M1}`), undefined, "and nothing is stored");
    await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1"] });
    assert.is((await a.req("bind.prepare", { vn: { id: 100 }, mac: M1 })).nve, "nve-a", "the holder's own prepare changes nothing");
    assert.is(JSON.parse(await retained(e.broker.url, topic)).next, undefined);
    assert.is((await b.req("bind.prepare", { vn: { id: 100 }, mac: M1 })).nve, "nve-a");
    assert.equal(JSON.parse(await retained(e.broker.url, topic)), { nve: "nve-a", ip: "192.0.2.1", ips: ["10.0.0.1"], seq: 0, next: { nve: "nve-b", ip: "192.0.2.2" } }, "holder and seq unchanged, next named");
    // The holder's update keeps next; a third NVE's withdraw changes nothing; next's withdraw clears it.
    await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1", "10.0.0.9"] });
    assert.is(JSON.parse(await retained(e.broker.url, topic)).next.nve, "nve-b");
    await c.req("bind.withdraw", { vn: { id: 100 }, mac: M1 });
    assert.is(JSON.parse(await retained(e.broker.url, topic)).next.nve, "nve-b");
    await b.req("bind.withdraw", { vn: { id: 100 }, mac: M1 });
    assert.equal(JSON.parse(await retained(e.broker.url, topic)), { nve: "nve-a", ip: "192.0.2.1", ips: ["10.0.0.1", "10.0.0.9"], seq: 0 }, "the pre-association went: next cleared");
    // Prepared again, then next leaves the VN: cleared too.
    await c.req("bind.prepare", { vn: { id: 100 }, mac: M1 });
    assert.is(JSON.parse(await retained(e.broker.url, topic)).next.nve, "nve-c");
    await c.req("vtep.leave", { vn: { id: 100 } });
    assert.is(JSON.parse(await retained(e.broker.url, topic)).next, undefined);
    // Prepared, then the move: the record is next's with the holder's seq + 1, and no next.
    await b.req("bind.prepare", { vn: { id: 100 }, mac: M1 });
    assert.is((await b.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1"] })).seq, 1);
    assert.equal(JSON.parse(await retained(e.broker.url, topic)), { nve: "nve-b", ip: "192.0.2.2", ips: ["10.0.0.1"], seq: 1 });
    // Malformed: a request without mac is refused and changes nothing.
    assert.is((await b.req("bind.prepare", { vn: { id: 100 } })).error.code, "bad-request");
  });
});

test("RFC 7432 §15 with IMA-assigned sequences: a move is the holder's seq + 1, the holder's update keeps it, a sender's seq is ignored", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue" }] }, async (e, p) => {
    const a = await p("nve-a"), b = await p("nve-b");
    await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
    await b.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" });
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 4 })).seq, 0, "a new MAC starts at 0 whatever the sender says");
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1"], seq: 8 })).seq, 0, "the holder's update keeps the sequence");
    const moved = await b.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 0 });
    assert.is(moved.seq, 1, "a move is the holder's + 1, even with a lower seq sent");
    assert.equal(JSON.parse(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)), { nve: "nve-b", ip: "192.0.2.2", ips: [], seq: 1 });
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).seq, 2, "and back");
    assert.equal(JSON.parse(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)), { nve: "nve-a", ip: "192.0.2.1", ips: [], seq: 2 });
  });
});

test("two NVEs announce the same MAC: the later is a move in either order, with the next sequence", async () => {
  for (const order of [["nve-a", "nve-b"], ["nve-b", "nve-a"]]) {
    await withEnv({ seed: [{ id: 100, alias: "blue" }] }, async (e, p) => {
      const peers = { "nve-a": await p("nve-a"), "nve-b": await p("nve-b") } as Record<string, Peer>;
      await peers["nve-a"].req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
      await peers["nve-b"].req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" });
      const [first, second] = order;
      const r1 = await peers[first].req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 7 });
      const r2 = await peers[second].req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 7 });
      assert.equal([r1.ok, r1.seq, r2.ok, r2.seq], [true, 0, true, 1], `order ${order}`);
      assert.is(JSON.parse(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)).nve, second, `order ${order}`);
    });
  }
});

test("duplicate detection: more than 5 moves in 180 s freezes the MAC where it is; further moves are refused", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue" }] }, async (e, p) => {
    const a = await p("nve-a"), b = await p("nve-b");
    await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
    await b.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" });
    await a.req("bind.announce", { vn: { id: 100 }, mac: M1 });
    const who = [b, a, b, a, b];
    for (const [i, x] of who.entries()) {
      e.clock.t += 10_000;
      const r = await x.req("bind.announce", { vn: { id: 100 }, mac: M1 });
      assert.ok(r.ok, `move ${i + 1}: ${JSON.stringify(r)}`);
      assert.is(r.seq, i + 1);
    }
    e.clock.t += 10_000;
    const sixth = await a.req("bind.announce", { vn: { id: 100 }, mac: M1 });
    assert.is(sixth.error.code, "address-conflict");
    assert.is(sixth.error.field, "mac");
    assert.match(sixth.error.message, /moved more than 5 times in 180 s: flagged duplicate and frozen at nve-b/);
    assert.equal(JSON.parse(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)), { nve: "nve-b", ip: "192.0.2.2", ips: [], seq: 5, duplicate: true });
    assert.ok(e.logs.some((l) => /^ALERT ima: duplicate MAC 02:00:5e:00:00:01 in VN 100/.test(l)), "alert logged");
    e.clock.t += 600_000;
    const later = await a.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 99 });
    assert.is(later.error.code, "address-conflict", "frozen even with a higher seq, even later");
    assert.match(later.error.message, /frozen at nve-b as a duplicate/);
    // The holder may still update its IPs; its withdraw lifts the freeze.
    assert.ok((await b.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.5"] })).ok);
    assert.ok((await b.req("bind.withdraw", { vn: { id: 100 }, mac: M1 })).ok);
    assert.ok((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).ok);
  });
});

test("duplicate detection is configurable and counts only moves within the window", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue" }], settings: { dupMoves: 2, dupWindowMs: 60_000 } }, async (e, p) => {
    const a = await p("nve-a"), b = await p("nve-b");
    await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
    await b.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" });
    await a.req("bind.announce", { vn: { id: 100 }, mac: M1 });
    assert.ok((await b.req("bind.announce", { vn: { id: 100 }, mac: M1 })).ok);
    assert.ok((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).ok);
    e.clock.t += 61_000; // both moves leave the window
    assert.ok((await b.req("bind.announce", { vn: { id: 100 }, mac: M1 })).ok);
    assert.ok((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).ok);
    const third = await b.req("bind.announce", { vn: { id: 100 }, mac: M1 });
    assert.is(third.error.field, "mac");
    assert.match(third.error.message, /more than 2 times in 60 s/);
  });
});

// ---- persistence ------------------------------------------------------------

test("restart: state comes back from LMDB and nothing unchanged is published again; the seed applies to a new store only", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue", vni: 5000 }] }, async (e, p) => {
    const a = await p("nve-a");
    await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
    await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1"] });
    const alice = await p("alice");
    await alice.req("vn.create", { vn: { id: 200, alias: "red" } });
    const watch = await p("nve-c", ["nvo3/v1/ima/vn/+", "nvo3/v1/ima/vtep/+/+", "nvo3/v1/ima/bind/+/+"]);
    await until(() => watch.got.length === 4, "the retained tree");
    const ima = await e.restart({ seed: [{ id: 300, alias: "green" }] });
    assert.is(ima.stats.published, 0, "a restart publishes nothing that did not change");
    const list = await alice.req("vn.list");
    assert.equal(list.vns.map((v: any) => v.id), [100, 200], "seed ignored on an existing store");
    const res = await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1"] });
    assert.is(res.seq, 0);
    // the changed binding next, on the same topic from the same IMA: had the
    // unchanged announcement published, it would come before it
    await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.2"] });
    await until(() => watch.got.some((g) => g.payload.includes("10.0.0.2")), "the changed binding");
    assert.is(watch.got.length, 5, "an unchanged announcement after the restart publishes nothing");
    assert.match(watch.got[4].payload, /10\.0\.0\.2/);
  });
});

test("a change the broker never acknowledged is published at the next start", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue" }] }, async (e, p) => {
    const a = await p("nve-a");
    await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
    await e.ima.stop();
    // The store holds a state whose retained message was never published: a
    // binding written directly, as if the IMA crashed between store and publish.
    const { openImaDb } = await import("../host/ima/db.js");
    const db = openImaDb(join(e.dir, "store"));
    await db.write([{ c: "binds", key: `100|${M1}`, value: { vn: 100, mac: M1, nve: "nve-a", ip: "192.0.2.1", ips: [], seq: 3, moves: [] } }]);
    await db.close();
    const ima = await e.restart();
    assert.is(ima.stats.published, 1, "exactly the missing message");
    assert.is(JSON.parse(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)).seq, 3);
  });
});

test("an NVE offline beyond nveHoldMs leaves its flood lists and its bindings are withdrawn; one back in time keeps them", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue" }], nveHoldMs: 150 }, async (e, p) => {
    const a = await p("nve-a"), b = await p("nve-b");
    await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
    await b.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" });
    await a.req("bind.announce", { vn: { id: 100 }, mac: M1 });
    await b.req("bind.announce", { vn: { id: 100 }, mac: "02:00:5e:00:00:02" });
    const status = (c: Peer, state: string) => c.c.publishAsync(`nvo3/v1/nve/${c.who}/status`, JSON.stringify({ state }), { qos: 1, retain: true });
    await status(a, "offline");
    await status(b, "offline");
    await until(() => e.logs.some((l) => l.includes("nve-a is offline")) && e.logs.some((l) => l.includes("nve-b is offline")), "both holds started");
    e.clock.advance(100); // inside the hold (the injected clock: no real time passes)
    await status(b, "online");
    await until(() => !(e.ima as any).offline.has("nve-b"), "nve-b's hold cancelled");
    assert.not.ok(e.logs.some((l) => l.includes("offline beyond its hold")), "nothing purged inside the hold");
    e.clock.advance(50); // nve-a's 150 ms are over
    await until(() => e.logs.some((l) => /nve-a offline beyond its hold: left 1 flood lists, 1 bindings withdrawn/.test(l)), "the purge");
    // the withdrawals are published once the purge is stored (bounded wait for the broker to hold them)
    await until(async () => (await retained(e.broker.url, "nvo3/v1/ima/vtep/100/nve-a")) === "" && (await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)) === "", "withdrawals published");
    e.clock.advance(10_000); // long past any hold: nve-b, back in time, is never purged
    assert.not.ok(e.logs.some((l) => l.includes("nve-b offline beyond")));
    assert.is(JSON.parse(await retained(e.broker.url, "nvo3/v1/ima/bind/100/02:00:5e:00:00:02")).nve, "nve-b", "back in time: kept");
    assert.ok(await retained(e.broker.url, "nvo3/v1/ima/vtep/100/nve-b"));
    // Back again: it joins and announces anew; the sequence continues.
    await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).seq, 0);
    await a.c.publishAsync("nvo3/v1/nve/nve-a/status", "", { qos: 1, retain: true });
    await b.c.publishAsync("nvo3/v1/nve/nve-b/status", "", { qos: 1, retain: true });
  });
});

// ---- malformed requests -----------------------------------------------------

test("malformed requests get §2 errors and change nothing", async () => {
  await withEnv({ seed: [{ id: 100, alias: "blue" }] }, async (e, p) => {
    const a = await p("nve-a");
    const notJson = await a.raw("{nope");
    assert.is(notJson.id, null);
    assert.is(notJson.error.code, "bad-request");
    const op = await a.req("vn.frobnicate");
    assert.is(op.error.code, "unknown-op");
    const mac = await a.req("bind.announce", { vn: { id: 100 }, mac: "01:00:5e:00:00:01" });
    assert.is(mac.error.code, "bad-request");
    assert.is(mac.error.field, "mac");
    const ip = await a.req("bind.announce", { vn: { id: 100 }, mac: M1, ips: ["10.0.0.1/8"] });
    assert.is(ip.error.field, "ips[0]");
    const vn = await a.req("vtep.join", { vn: { id: 100, alias: "x" }, ip: "192.0.2.1" });
    assert.is(vn.error.field, "vn");
    const seq = await a.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: -1 });
    assert.is(seq.error.field, "seq");
    const big = await a.raw(JSON.stringify({ id: "big", op: "vn.resolve", vn: { id: 100 }, pad: "x".repeat(300 * 1024) }), "big");
    assert.is(big.id, "big");
    assert.is(big.error.code, "too-large");
    assert.is(await retained(e.broker.url, "nvo3/v1/ima/vtep/100/nve-a"), "");
  });
});

test("through Mosquitto (generated acl_file, passwords): the race, the duplicate freeze, operator-only ops and a restart", async () => {
  await withEnv({ mosquitto: true, seed: [{ id: 100, alias: "blue" }], settings: { dupMoves: 1 } }, async (e, p) => {
    const a = await p("nve-a"), b = await p("nve-b"), alice = await p("alice");
    assert.is((await a.req("vn.create", { alias: "x" })).error.code, "not-authorized");
    assert.ok((await alice.req("vn.create", { alias: "x" })).ok);
    await a.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.1" });
    await b.req("vtep.join", { vn: { id: 100 }, ip: "192.0.2.2" });
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 2 })).seq, 0);
    assert.is((await b.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 2 })).seq, 1, "a move: the holder's + 1");
    const again = await a.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 3 });
    assert.is(again.error.field, "mac", "a second move within the window with dupMoves 1: frozen");
    assert.equal(JSON.parse(await retained(e.broker.url, `nvo3/v1/ima/bind/100/${M1}`)), { nve: "nve-b", ip: "192.0.2.2", ips: [], seq: 1, duplicate: true });
    const ima = await e.restart();
    assert.is(ima.stats.published, 0);
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1, seq: 9 })).error.field, "mac", "still frozen after a restart");
    // The operator's view and release, through Mosquitto's ACL too.
    assert.equal((await alice.req("mac.frozen")).macs, [{ vn: { id: 100 }, mac: M1, nve: "nve-b", ip: "192.0.2.2", seq: 1, moves: 1 }]);
    assert.is((await a.req("mac.unfreeze", { vn: { id: 100 }, mac: M1 })).error.code, "not-authorized", "operators only");
    assert.ok((await alice.req("mac.unfreeze", { vn: { id: 100 }, mac: M1 })).ok);
    assert.is((await a.req("bind.announce", { vn: { id: 100 }, mac: M1 })).seq, 2, "after the unfreeze the move is accepted");
  });
});

test.run();
