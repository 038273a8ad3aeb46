// The NVE core without a broker: group commit (many requests stored in one
// transaction and programmed with one apply), its all-or-nothing fallback when
// the data plane refuses the group, the store always matching the model, and a
// sync of unchanged state writing nothing (PROTOCOL.md §2, §3).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NveCore } from "../host/control/core.js";
import { MemoryStore, newMemoryBacking, type MemoryBacking } from "../host/store/memory.js";
import type { Store, StoreWriter } from "../host/store/store.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { RecordingProgrammer, FakeClock, baseConfig } from "./support/control-harness.js";
import { ConfigError } from "../host/config/load.js";
import { ANSWER_TEXT, answerText } from "../host/protocol/codec.js";

const u = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
const m = (n: number) => `02:00:5e:00:00:${n.toString(16).padStart(2, "0")}`;
const req = (o: Record<string, unknown>) => Buffer.from(JSON.stringify(o));

/** Counts what reaches the store, per collection. */
function counting(inner: Store) {
  const puts: Record<string, number> = {};
  let txns = 0;
  const s: Store = Object.create(inner);
  s.transaction = <T>(fn: (tx: StoreWriter) => T) => {
    txns++;
    return inner.transaction((tx) => fn({
      get: (c, k) => tx.get(c, k), list: (c, p) => tx.list(c, p),
      put: (c, k, v) => { puts[c] = (puts[c] ?? 0) + 1; tx.put(c, k, v); },
      del: (c, k) => { puts[c] = (puts[c] ?? 0) + 1; tx.del(c, k); },
    }));
  };
  return { store: s, puts, txns: () => txns };
}

/** A recording programmer whose applies the data plane refuses, with the reason `refuses` gives. */
async function refusingProgrammer(refuses: (ops: DpOp[]) => string | undefined): Promise<RecordingProgrammer> {
  const base = await RecordingProgrammer.create();
  return Object.assign(Object.create(base), {
    async apply(ops: DpOp[]) {
      const why = refuses(ops);
      if (why) throw new Error(why);
      return base.apply(ops);
    },
  }) as RecordingProgrammer;
}

async function open(backing: MemoryBacking, prog: RecordingProgrammer) {
  const c = counting(await MemoryStore.open({ backing }));
  const core = await NveCore.open({ config: baseConfig(), store: c.store, programmer: prog, clock: new FakeClock() });
  return { core, ...c };
}

const views = (core: NveCore) => JSON.stringify([core.bindings(), core.vns(), core.ports(), ["hv-1", "hv-2", "hv-3"].map((h) => core.viewHv(h))]);

test("concurrent requests are stored in one transaction and programmed with one apply; answered with each one's own result (Req-2)", async () => {
  const backing = newMemoryBacking();
  const prog = await RecordingProgrammer.create();
  const { core, txns } = await open(backing, prog);
  for (const hv of ["hv-1", "hv-2"]) assert.is((await core.request(hv, req({ id: "h", op: "hello", agent: "t" }))).ok, true);
  const t0 = txns(), b0 = prog.mark();
  const rs = await Promise.all([1, 2, 3, 4].map((i) => core.request(i % 2 ? "hv-1" : "hv-2",
    req({ id: `a${i}`, op: "vnic.attach", vnic: u(i), vn: { id: 100 }, addrs: [{ mac: m(i) }] }))));
  assert.equal(rs.map((r) => [r.id, r.ok, r.tag]), [["a1", true, 1], ["a2", true, 1], ["a3", true, 1], ["a4", true, 1]]);
  assert.is(txns() - t0, 1, "one store transaction for the group");
  assert.is(prog.batches.length - b0, 1, "one apply for the group");
  assert.is(prog.since(b0).filter((o) => o.op === "tag").length, 1, "the shared VAP is created once");
  await core.close();
});

test("a group the data plane refuses is undone and replayed one by one: only the faulty request fails, store = model", async () => {
  const backing = newMemoryBacking();
  // refuses any list containing MAC m(3) (as a full table would)
  const prog = await refusingProgrammer((ops) => (ops.some((o) => "mac" in o && o.mac === m(3)) ? "table full" : undefined));
  const { core } = await open(backing, prog);
  await core.request("hv-1", req({ id: "h", op: "hello", agent: "t" }));
  await core.request("hv-1", req({ id: "pre", op: "vnic.attach", vnic: u(9), vn: { alias: "red" }, addrs: [{ mac: m(9) }] }));
  const rs = await Promise.all([1, 2, 3, 4].map((i) => core.request("hv-1",
    req({ id: `a${i}`, op: "vnic.attach", vnic: u(i), vn: { id: 100 }, addrs: [{ mac: m(i), ips: [`10.0.0.${i}`] }] }))));
  assert.equal(rs.map((r) => [r.id, r.ok, (r.error as any)?.code ?? null]), [["a1", true, null], ["a2", true, null], ["a3", false, "internal"], ["a4", true, null]]);
  assert.equal(core.viewHv("hv-1").vnics.map((v: any) => v.vnic), [u(1), u(2), u(4), u(9)]);
  // the store holds exactly what the model holds: a fresh core on it shows the same
  const v1 = views(core);
  await core.close();
  const again = await open(backing, await RecordingProgrammer.create());
  assert.is(views(again.core), v1);
  await again.core.close();
});

test("a sync that repeats the NVE's state writes nothing to the store and emits no op (PROTOCOL.md §3)", async () => {
  const backing = newMemoryBacking();
  const prog = await RecordingProgrammer.create();
  const { core, puts } = await open(backing, prog);
  await core.request("hv-1", req({ id: "h", op: "hello", agent: "t" }));
  await core.request("hv-1", req({ id: "a", op: "vnic.attach", vnic: u(1), vn: { id: 100 }, addrs: [{ mac: m(1), ips: ["10.0.0.1"] }], tag: 9 }));
  await core.request("hv-1", req({ id: "b", op: "vn.connect", vnic: u(2), vn: { alias: "red" }, activate: false }));
  const view = core.viewHv("hv-1");
  const before = { ...puts };
  const mark = prog.mark();
  const r = await core.request("hv-1", req({ id: "s", op: "sync", syncId: "31111111-2222-4333-8444-555555555555", final: true,
    vnics: view.vnics.map((v: any) => ({ vnic: v.vnic, state: v.state, vns: v.vns.map((b: any) => ({ vn: { id: b.vn.id }, tag: b.tag, addrs: b.addrs })) })) }));
  assert.is(r.ok, true, JSON.stringify(r));
  assert.equal(r.tags, [{ vn: { id: 100, name: "6f1c3c52-6c0e-4c5e-9a57-0c8f2a2f6a10", alias: "blue" }, tag: 9 }, { vn: { id: 200, name: "7a2d4d63-7d1f-4d6f-8b68-1d9f3b3f7b21", alias: "red" }, tag: 1 }]);
  assert.equal(puts, before, "no store write");
  assert.equal(prog.since(mark), [], "no data-plane op");
  await core.close();
});

test("config: limits are on by default; ports[].vns and { id, vns } hypervisors load; an {hv} on two ports is refused (INTERFACES.md)", () => {
  const cfg = baseConfig({ ports: [{ name: "eth2", vns: ["blue", 200], hypervisors: ["hv-1", { id: "hv-2", vns: ["blue"] }] }] });
  assert.equal(cfg.limits, { maxPayload: 262144, ratePerSecond: 200, burst: 400, maxSyncChunks: 64, maxVnicsPerHv: 4096,
    maxAddrsPerVnic: 256, maxPrefixesPerHv: 64, minPrefixLen: { ipv4: 8, ipv6: 32 } });
  assert.equal(cfg.ports[0].hypervisors, ["hv-1", { id: "hv-2", vns: ["blue"] }]);
  assert.equal(baseConfig({ limits: { minPrefixLen: { ipv6: 48 } } }).limits.minPrefixLen, { ipv4: 8, ipv6: 48 });
  assert.throws(() => baseConfig({ ports: [{ name: "eth2", hypervisors: ["hv-1"] }, { name: "eth3", hypervisors: [{ id: "hv-1" }] }] }),
    (e: Error) => e instanceof ConfigError && e.key === "ports.1.hypervisors.0" && e.message.includes('"hv-1" is already listed on port "eth2"'));
  assert.throws(() => baseConfig({ ports: [{ name: "eth2", hypervisors: [{ id: "hv 1" }] }] }), (e: Error) => e instanceof ConfigError);
  assert.throws(() => baseConfig({ limits: { burst: -1 } }), (e: Error) => e instanceof ConfigError && e.key === "limits.burst");
});

test("a group that fails puts the sync state back: chunks of the group are dropped, the earlier ones kept (all-or-nothing)", async () => {
  const backing = newMemoryBacking();
  let fail = false;
  const prog = await refusingProgrammer(() => (fail ? "data plane down" : undefined));
  const { core } = await open(backing, prog);
  for (const hv of ["hv-1", "hv-2"]) await core.request(hv, req({ id: "h", op: "hello", agent: "t" }));
  const syncId = "41111111-2222-4333-8444-555555555555";
  const chunk = (id: string, n: number) => req({ id, op: "sync", syncId, final: false, vnics: [{ vnic: u(n), state: "active", vns: [{ vn: { id: 100 }, addrs: [{ mac: m(n) }] }] }] });
  assert.is((await core.request("hv-1", chunk("c1", 1))).ok, true);
  fail = true;
  // one group: the second chunk (no op) and the final chunk, whose ops the data plane refuses
  const final = req({ id: "c3", op: "sync", syncId, final: true, vnics: [{ vnic: u(3), state: "active", vns: [{ vn: { id: 100 }, addrs: [{ mac: m(3) }] }] }] });
  const rs = await Promise.all([core.request("hv-1", chunk("c2", 2)), core.request("hv-1", final)]);
  assert.equal(rs.map((r) => [r.ok, (r.error as any)?.code ?? null]), [[true, null], [false, "internal"]], "replayed one by one: only the final chunk fails");
  assert.equal(core.syncStats(), { open: 1, chunks: 2, entries: 2 }, "the sync is still open, the final chunk not taken");
  assert.equal(core.viewHv("hv-1").vnics, []);
  fail = false;
  const fin = await core.request("hv-1", final);
  assert.is(fin.ok, true, JSON.stringify(fin));
  assert.equal(core.viewHv("hv-1").vnics.map((v: any) => v.vnic), [u(1), u(2), u(3)]);
  await core.close();
});


test("a profile change or VN removal the data plane refuses changes nothing: catalog, VNICs and End Devices as before (issue 16 one commit path)", async () => {
  const backing = newMemoryBacking();
  let fail = false;
  const prog = await refusingProgrammer(() => (fail ? "data plane down" : undefined));
  const { core } = await open(backing, prog);
  const events: string[] = [];
  core.onEvent = (hv, e) => events.push(`${hv} ${e.event}`);
  await core.request("hv-1", req({ id: "h", op: "hello", agent: "t" }));
  assert.is((await core.request("hv-1", req({ id: "a", op: "vnic.attach", vnic: u(1), vn: { id: 100 }, addrs: [{ mac: m(1) }] }))).ok, true);
  const before = views(core);
  const profile = { ...core.catalog.get(100)!.profile, mtu: 1400 };
  fail = true;
  await core.setProfile(100, profile).then(() => assert.unreachable("refused"), (e) => assert.is(e.code, "internal"));
  await core.removeVn(100).then(() => assert.unreachable("refused"), (e) => assert.is(e.code, "internal"));
  assert.is(views(core), before, "catalog, VNICs and VAPs unchanged");
  assert.equal(events, [], "no End Device told of a change that did not happen");
  fail = false;
  await core.setProfile(100, profile);
  assert.is(core.catalog.get(100)!.profile.mtu, 1400);
  assert.equal(await core.removeVn(100), 1);
  assert.is(core.catalog.get(100), undefined);
  assert.equal(core.viewHv("hv-1").vnics, []);
  assert.equal(events, ["hv-1 vn.profile", "hv-1 vn.disconnected"]);
  await core.close();
});


// The attach and connect answers carry their JSON text, made with them (issue
// 15: the NVE sends it instead of stringifying the object); it must be the
// very bytes JSON.stringify writes of the answer, for VNs with and without a
// name, a VN whose profile changed since (the cached part follows), and ids
// that need escaping. Other answers carry none and are stringified as before.
test("an attach's or connect's answer text is JSON.stringify's of the answer, across VNs and a profile change; other answers have none", async () => {
  const prog = await RecordingProgrammer.create();
  const { core } = await open(newMemoryBacking(), prog);
  const text = (r: Record<string, unknown>) => (r as { [ANSWER_TEXT]?: string })[ANSWER_TEXT];
  const hello = await core.request("hv-1", req({ id: "h", op: "hello", agent: "t" }));
  assert.is(text(hello), undefined);
  assert.is(answerText(hello), JSON.stringify(hello));
  const seen: string[] = [];
  const check = (r: Record<string, unknown>) => {
    assert.is(r.ok, true, JSON.stringify(r));
    assert.type(text(r), "string");
    assert.is(text(r), JSON.stringify(r));
    assert.is(answerText(r), JSON.stringify(r));
    seen.push(text(r)!);
  };
  check(await core.request("hv-1", req({ id: "a\"1\u00e9", op: "vnic.attach", vnic: u(1), vn: { id: 100 }, addrs: [{ mac: m(1) }] })));
  check(await core.request("hv-1", req({ id: "a2", op: "vnic.attach", vnic: u(2), vn: { alias: "green" }, addrs: [{ mac: m(2), ips: ["10.3.0.2"] }] })));
  check(await core.request("hv-1", req({ id: "c3", op: "vn.connect", vnic: u(3), vn: { id: 200 }, activate: false })));
  // the same VN again (its part from the cache), then after a profile change
  check(await core.request("hv-1", req({ id: "a4", op: "vnic.attach", vnic: u(4), vn: { id: 100 }, addrs: [{ mac: m(4) }] })));
  const profile = { ...core.catalog.get(100)!.profile, mtu: 1400 };
  await core.setProfile(100, profile);
  const after = await core.request("hv-1", req({ id: "a5", op: "vnic.attach", vnic: u(5), vn: { id: 100 }, addrs: [{ mac: m(5) }] }));
  check(after);
  assert.is((after.profile as { mtu: number }).mtu, 1400);
  assert.ok(text(after)!.includes('"mtu":1400'), text(after));
  // a refused attach: an error answer, no text of its own
  const refused = await core.request("hv-1", req({ id: "x", op: "vnic.attach", vnic: u(6), vn: { id: 100 }, addrs: [{ mac: m(1) }] }));
  assert.is(refused.ok, false);
  assert.is(text(refused), undefined);
  assert.is(seen.length, 5);
  await core.close();
});


// PROTOCOL.md §2 "answer only after the change is durable" with group commit
// (issue 15): a store that pipelines (Store.commit, as LMDB does) lets the next
// group be built while one is flushed, but no request of a group may be answered
// before that group's flush resolves. The flush here is held by the test.
test("group commit, pipelined: no answer of a group leaves before its group is durable; the next group is built meanwhile", async () => {
  const inner = await MemoryStore.open({ backing: newMemoryBacking() });
  const flushes: { release(): void; ids: string[] }[] = [];
  const store: Store = Object.create(inner);
  store.commit = async <T>(fn: (tx: StoreWriter) => T) => {
    const ids: string[] = [];
    const result = await inner.transaction((tx) => fn({
      get: (c, k) => tx.get(c, k), list: (c, p) => tx.list(c, p),
      put: (c, k, v) => { if (c === "vnics") ids.push(k); tx.put(c, k, v); }, del: (c, k) => tx.del(c, k),
    }));
    let release!: () => void;
    const durable = new Promise<void>((r) => { release = r; });
    flushes.push({ release, ids });
    return { result, durable };
  };
  const core = await NveCore.open({ config: baseConfig(), store, programmer: await RecordingProgrammer.create(), clock: new FakeClock() });
  const flushAll = () => { for (const f of flushes.splice(0)) f.release(); };
  const hello = core.request("hv-1", req({ id: "h", op: "hello", agent: "t" }));
  await new Promise((r) => setTimeout(r, 10));
  flushAll();
  assert.is((await hello).ok, true);
  const answered: string[] = [];
  const send = (i: number) => core.request("hv-1", req({ id: `a${i}`, op: "vnic.attach", vnic: u(i), vn: { id: 100 }, addrs: [{ mac: m(i) }] }))
    .then((r) => { answered.push(String(r.id)); return r; });
  const first = [1, 2, 3].map(send); // one group
  await new Promise((r) => setTimeout(r, 10));
  assert.is(flushes.length, 1, "the first group is stored in one commit, its flush held");
  assert.equal(flushes[0].ids, [u(1), u(2), u(3)]);
  const second = [4, 5].map(send); // built and stored while the first is still being flushed
  await new Promise((r) => setTimeout(r, 10));
  assert.is(flushes.length, 2, "the next group is committed before the first is durable (pipelined)");
  assert.equal(answered, [], "nothing is answered before its group is durable");
  // A store's flushes end in order (LMDB: one transaction after the other).
  flushes[0].release();
  await Promise.all(first);
  await new Promise((r) => setTimeout(r, 10));
  assert.equal([...answered].sort(), ["a1", "a2", "a3"], "the first group's answers, and none of the group still being flushed");
  flushes[1].release();
  const rs = await Promise.all([...first, ...second]);
  assert.ok(rs.every((r) => r.ok), JSON.stringify(rs));
  assert.equal(answered.slice(3).sort(), ["a4", "a5"]);
  flushAll();
  await core.close();
});

test.run();
