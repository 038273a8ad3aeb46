// The NVE wired to the mapping authority (issue 6 "The NVE side";
// host/ima-client/wire.ts, NveCore.ima): a real NveService and a real ImaService
// on the embedded broker, an agent speaking raw nvo3-hv/1, a second NVE as a
// bare IMA client. Checks: a VN the NVE's config lacks is resolved through the
// IMA (and cached in the store, and programmed); an attach is announced; a
// binding and flood-list entry announced elsewhere are programmed and written
// to the store's IMA cache (issue 4); a move to another NVE with a higher
// sequence de-associates the local binding and tells the agent (`moved`,
// RFC 7432 §15); a profile change at the IMA reaches the agent (`vn.profile`,
// seed §4.5); a disconnect withdraws and leaves the flood list.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt from "mqtt";
import { startEmbeddedBroker } from "../host/broker/embedded.js";
import { ImaService } from "../host/ima/service.js";
import { ImaClient } from "../host/ima-client/client.js";
import { startNveIma } from "../host/ima-client/wire.js";
import { NveService } from "../host/control/service.js";
import { MemoryStore, newMemoryBacking } from "../host/store/memory.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { baseConfig, rawClient, until, RecordingProgrammer, type RunningBroker } from "./support/control-harness.js";

const VNIC = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
const M1 = "02:00:5e:00:09:01", M2 = "02:00:5e:00:09:02";
const VIOLET = { id: 400, alias: "violet", vni: 9000, profile: { encap: "vxlan" as const, mtu: 1450 } };
const has = (ops: DpOp[], o: Record<string, unknown>) => ops.some((x) => Object.entries(o).every(([k, v]) => JSON.stringify((x as unknown as Record<string, unknown>)[k]) === JSON.stringify(v)));

/** The embedded broker (nve-a, nve-b, the IMA, operator alice) and a store folder, with their cleanups (run last first). */
async function brokerAndDir() {
  const b = await startEmbeddedBroker({ host: "127.0.0.1", port: 0, nves: ["nve-a", "nve-b"], imas: ["ima"], operators: ["alice"] });
  const rb: RunningBroker = { name: "embedded", url: b.url, protocolVersion: 4, creds: (id) => ({ username: id }), close: () => b.close() };
  const dir = mkdtempSync(join(tmpdir(), "nvl-imanve-"));
  const cleanup: (() => Promise<unknown>)[] = [() => b.close(), async () => rmSync(dir, { recursive: true, force: true })];
  return { b, rb, dir, cleanup };
}

test("an NVE with an ima key: resolve, announce, remote bindings cached, moved, profile, withdraw", async () => {
  const { b, rb, dir, cleanup } = await brokerAndDir();
  try {
    const config = baseConfig({ ima: { id: "ima" } });
    assert.equal(config.ima, { id: "ima", operators: [] }, "the ima key's defaults");
    const blue = config.vns.find((v) => v.id === 100)!;
    const ima = await ImaService.start({ settings: { operators: ["alice"], nves: [{ id: "nve-a", ip: config.underlay.ip }, { id: "nve-b", ip: "192.0.2.2" }] }, broker: { url: b.url, username: "ima", reconnectPeriodMs: 0 }, store: dir,
      seed: [{ id: blue.id, name: blue.name, alias: blue.alias, vni: blue.vni, profile: blue.profile }, VIOLET] });
    cleanup.unshift(() => ima.stop());
    const backing = newMemoryBacking();
    const store = await MemoryStore.open({ backing });
    const prog = await RecordingProgrammer.create();
    const logs: string[] = [];
    let svc = await NveService.start({ config, store, programmer: prog, log: (l) => logs.push(l), broker: { url: b.url, username: "nve-a", reconnectPeriodMs: 200 } });
    cleanup.unshift(() => svc.stop());
    let wired = await startNveIma({ config, core: svc.core, client: svc.client, programmer: prog, store, log: (l) => logs.push(l) });
    cleanup.unshift(() => wired.stop());
    const hv = await rawClient(rb, "hv-1");
    assert.ok((await hv.request("hello", { agent: "raw" })).ok); // first on every session (PROTOCOL.md §2)
    cleanup.unshift(() => hv.close());

    // A VN the config does not define: resolved through the IMA before the transaction.
    assert.not.ok(svc.core.catalog.get(400));
    const att = await hv.request("vnic.attach", { vnic: VNIC, vn: { alias: "violet" }, addrs: [{ mac: M1, ips: ["10.9.0.1"] }] });
    assert.ok(att.ok, JSON.stringify(att));
    assert.is(att.vn.id, 400);
    assert.is(att.vni, 9000);
    assert.ok(has(prog.since(0), { op: "vn", vn: 400, vni: 9000 }), "the resolved VN was programmed");
    assert.is(store.get("vns", "400")?.vni, 9000, "and cached in the store");
    const none = await hv.request("vn.connect", { vnic: VNIC, vn: { alias: "no-such-vn" } });
    assert.is(none.error?.code, "unknown-vn", "a VN the IMA does not know either: unknown-vn");

    // Announced (seq 0) after the flood-list join.
    await until(() => wired.client.view().announced.some((a) => a.vn === 400 && a.mac === M1), 5000, "nve-a's announcement");
    assert.equal(wired.client.view().joined, [400]);

    // Another NVE on VN violet with a binding of its own: programmed and cached.
    const progB: DpOp[] = [];
    const nveB = await ImaClient.start({ nve: "nve-b", ip: "192.0.2.2", broker: { url: b.url, username: "nve-b", reconnectPeriodMs: 0 },
      programmer: { apply: async (ops) => { progB.push(...ops); } }, served: [400], local: [{ vn: 400, mac: M2, ips: ["10.9.0.2"], port: "p1", active: true }] });
    cleanup.unshift(() => nveB.stop());
    await until(() => has(prog.since(0), { op: "mac.remote", vn: 400, mac: M2, nve: "192.0.2.2" }) && has(prog.since(0), { op: "flood.join", vn: 400, nve: "192.0.2.2" }), 5000, "nve-b's binding and flood entry at nve-a");
    await until(() => store.get("remotes", `400|${M2}`)?.ip === "192.0.2.2" && store.get("vteps", "400|nve-b")?.ip === "192.0.2.2", 5000, "the IMA cache in nve-a's store");
    assert.is(store.get("vteps", "400|nve-a"), undefined, "its own flood-list entry is not cached");

    // The VM moves to nve-b: announced there with the next sequence; nve-a de-associates and tells its agent.
    nveB.applyLocal([{ vn: 400, mac: M1, ips: ["10.9.0.1"], port: "p1", active: true }]);
    const ev = await hv.waitFor((m) => m?.event === "addr.disassociated");
    assert.is(ev.reason, "moved");
    assert.is(ev.vnic, VNIC);
    assert.equal(ev.addrs.map((a: { mac: string }) => a.mac), [M1]);
    await until(() => !svc.core.model.macOwner.has(`400|${M1}`), 5000, "nve-a to drop its binding");
    await until(() => has(prog.since(0), { op: "mac.remote", vn: 400, mac: M1, nve: "192.0.2.2" }), 5000, "nve-a forwarding M1 to nve-b");
    await until(() => store.get("remotes", `400|${M1}`)?.nve === "nve-b", 5000, "the moved binding cached");
    const shown = svc.core.bindings().find((r) => r.mac === M1);
    assert.equal([shown?.where, shown?.nve, shown?.source], ["remote", "nve-b", "ima"], "nvedge show bindings: M1 is at nve-b");

    // A profile change at the IMA reaches the data plane and the agent.
    const alice = await mqtt.connectAsync(b.url, { username: "alice", clientId: "alice-op", reconnectPeriod: 0 });
    cleanup.unshift(() => alice.endAsync(true));
    await alice.subscribeAsync("nvo3/v1/ima/rsp/alice", { qos: 1 });
    const rsp = new Promise<any>((res) => alice.on("message", (_t, p) => res(JSON.parse(p.toString()))));
    await alice.publishAsync("nvo3/v1/ima/req/alice", JSON.stringify({ id: "p1", op: "vn.set-profile", vn: { id: 400 }, profile: { encap: "vxlan", mtu: 1400 } }), { qos: 1 });
    assert.ok((await rsp).ok);
    const pe = await hv.waitFor((m) => m?.event === "vn.profile");
    assert.is(pe.vn.id, 400);
    assert.is(pe.profile.mtu, 1400);
    await until(() => prog.since(0).some((o: DpOp) => o.op === "vn" && o.vn === 400 && o.profile.mtu === 1400), 5000, "the new profile programmed");
    await until(() => store.get("vns", "400")?.profile.mtu === 1400, 5000, "and cached");

    // A restart (issue 4): the store's IMA cache is in the data plane before anything is answered.
    await wired.stop();
    await svc.stop();
    await store.close();
    const store2 = await MemoryStore.open({ backing });
    const prog2 = await RecordingProgrammer.create();
    svc = await NveService.start({ config, store: store2, programmer: prog2, log: (l) => logs.push(l), broker: { url: b.url, username: "nve-a", reconnectPeriodMs: 200 } });
    cleanup.unshift(() => svc.stop());
    const opened = prog2.since(0);
    assert.ok(opened.some((o) => o.op === "vn" && o.vn === 400 && o.profile.mtu === 1400), "the cached VN, with its new profile");
    assert.ok(has(opened, { op: "mac.remote", vn: 400, mac: M1, nve: "192.0.2.2" }), "the moved binding, from the cache");
    assert.ok(has(opened, { op: "mac.remote", vn: 400, mac: M2, nve: "192.0.2.2" }));
    assert.ok(has(opened, { op: "flood.join", vn: 400, nve: "192.0.2.2" }));
    wired = await startNveIma({ config, core: svc.core, client: svc.client, programmer: prog2, store: store2, log: (l) => logs.push(l) });
    cleanup.unshift(() => wired.stop());
    await until(() => wired.client.view().joined.includes(400), 5000, "the restarted NVE back on VN 400's flood list");

    // The last VAP of VN violet goes: nve-a leaves its flood list.
    assert.ok((await hv.request("hello", { agent: "raw" })).ok); // a restarted NVE: a new session
    const disc = await hv.request("vn.disconnect", { vnic: VNIC, vn: { id: 400 } });
    assert.ok(disc.ok, JSON.stringify(disc));
    await until(() => wired.client.view().joined.length === 0, 5000, "nve-a to leave VN 400's flood list");
    await until(() => !nveB.vteps.get(400)?.has("nve-a"), 5000, "nve-b to see nve-a leave");
  } finally {
    for (const c of cleanup) await c().catch(() => {});
  }
});

// Issue 15 (make before break): the data plane's entry for a MAC that moves is
// re-pointed in the apply of the commit that changes it (NveCore commitGroup →
// ImaClient.overlay), never an inactive local entry in between (a frame then
// was dropped as dst-inactive): at the destination's pre-association (the VM
// still runs at nve-b) and at the source's migration hold (nve-b named `next`).
test("hitless migration: pre-association and migration hold program the remote holder in the commit's own apply, never an inactive local entry", async () => {
  const { b, rb, dir, cleanup } = await brokerAndDir();
  try {
    const config = baseConfig({ ima: { id: "ima" } });
    const blue = config.vns.find((v) => v.id === 100)!;
    const ima = await ImaService.start({ settings: { operators: ["alice"], nves: [{ id: "nve-a", ip: config.underlay.ip }, { id: "nve-b", ip: "192.0.2.2" }] }, broker: { url: b.url, username: "ima", reconnectPeriodMs: 0 }, store: dir,
      seed: [{ id: blue.id, name: blue.name, alias: blue.alias, vni: blue.vni, profile: blue.profile }] });
    cleanup.unshift(() => ima.stop());
    const store = await MemoryStore.open({ backing: newMemoryBacking() });
    const prog = await RecordingProgrammer.create();
    const logs: string[] = [];
    const svc = await NveService.start({ config, store, programmer: prog, log: (l) => logs.push(l), broker: { url: b.url, username: "nve-a", reconnectPeriodMs: 200 } });
    cleanup.unshift(() => svc.stop());
    const wired = await startNveIma({ config, core: svc.core, client: svc.client, programmer: prog, store, log: (l) => logs.push(l) });
    cleanup.unshift(() => wired.stop());
    const hv = await rawClient(rb, "hv-1");
    cleanup.unshift(() => hv.close());
    assert.ok((await hv.request("hello", { agent: "raw" })).ok);
    const M3 = "02:00:5e:00:09:03";
    const VNIC2 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b02", VNIC3 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b03";
    // nve-a serves VN blue (a VM of its own, M3) and announces it.
    assert.ok((await hv.request("vnic.attach", { vnic: VNIC3, vn: { id: 100 }, addrs: [{ mac: M3, ips: ["10.0.0.3"] }] })).ok);
    await until(() => wired.client.view().announced.some((a) => a.mac === M3), 5000, "nve-a's announcement of M3");
    // The moving VM (M1) runs at nve-b.
    const nveB = await ImaClient.start({ nve: "nve-b", ip: "192.0.2.2", broker: { url: b.url, username: "nve-b", reconnectPeriodMs: 0 },
      programmer: { apply: async () => {} }, served: [100], local: [{ vn: 100, mac: M1, ips: ["10.0.0.1"], port: "p1", active: true }] });
    cleanup.unshift(() => nveB.stop());
    await until(() => has(prog.since(0), { op: "mac.remote", vn: 100, mac: M1, nve: "192.0.2.2" }), 5000, "M1 at nve-b programmed at nve-a");
    const macOps = (mark: number, mac: string) => prog.since(mark).filter((o) => (o.op === "mac.local" || o.op === "mac.remote" || o.op === "mac.del") && o.mac === mac);

    // 1. nve-a pre-associates M1 (vn.connect activate:false, then its address).
    let mark = prog.batches.length;
    assert.ok((await hv.request("vn.connect", { vnic: VNIC2, vn: { id: 100 }, activate: false })).ok);
    const assoc = await hv.request("addr.associate", { vnic: VNIC2, vn: { id: 100 }, addrs: [{ mac: M1, ips: ["10.0.0.1"] }] });
    assert.ok(assoc.ok, JSON.stringify(assoc));
    // The IMA has heard the pre-association (bind.prepare: nve-a is M1's next), so applyLocal ran and re-programmed what it wanted.
    await until(() => nveB.records.get(`100|${M1}`)?.next?.nve === "nve-a", 5000, "nve-a named next at the IMA");
    await wired.client.idle();
    const commitBatch = prog.batches.slice(mark).find((bt) => bt.some((o) => o.op === "ip" && o.ip === "10.0.0.1"));
    assert.ok(commitBatch, "the pre-association's commit was programmed");
    assert.ok(has(commitBatch!, { op: "mac.remote", vn: 100, mac: M1, nve: "192.0.2.2" }), "its own apply points M1 at nve-b");
    const pre = macOps(mark, M1);
    assert.ok(pre.length > 0);
    assert.ok(pre.every((o) => o.op === "mac.remote" && o.nve === "192.0.2.2"), `M1 never an (inactive) local entry at nve-a: ${JSON.stringify(pre)}`);

    // 2. The activation (the VM arrived): M1 is nve-a's own, active.
    mark = prog.batches.length;
    assert.ok((await hv.request("vnic.activate", { vnic: VNIC2, migration: true })).ok);
    assert.ok(has(macOps(mark, M1), { op: "mac.local", vn: 100, mac: M1, active: true }), "M1 local and active at the activation");

    // 3. The reverse: nve-b pre-associates M3 (next = nve-b), nve-a's VM stops and is held for migration.
    nveB.applyLocal([{ vn: 100, mac: M3, ips: ["10.0.0.3"], port: "p1", active: false }]);
    await until(() => wired.client.records.get(`100|${M3}`)?.next?.nve === "nve-b", 5000, "nve-a sees nve-b as M3's next");
    mark = prog.batches.length;
    assert.ok((await hv.request("vnic.deactivate", { vnic: VNIC3, reason: "migration" })).ok);
    const hold = macOps(mark, M3);
    assert.ok(hold.length > 0 && hold.every((o) => o.op === "mac.remote" && o.nve === "192.0.2.2"), `the hold forwards M3 to nve-b from its own apply: ${JSON.stringify(hold)}`);
  } finally {
    for (const c of cleanup) await c().catch(() => {});
  }
});

test.run();
