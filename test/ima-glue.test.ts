// host/ima-client/glue.ts with the NVE service's real Model and Txn
// (host/control), feeding a real IMA client: the client's desired state follows
// committed transactions; a migration within the NVE (the VNIC deactivated for
// migration, then activated on another port) sends nothing to the IMA (seed
// §4.3); shutdown withdraws; the last VAP leaves the flood list.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Model } from "../host/control/model.js";
import { Txn } from "../host/control/txn.js";
import type { VnicRecord } from "../host/store/store.js";
import { bindingKeys, localChangesFor, localBindingsOf, servedVnsOf, vnRefsOf } from "../host/ima-client/glue.js";
import { startEmbeddedBroker } from "../host/broker/embedded.js";
import { ImaService } from "../host/ima/service.js";
import { ImaClient } from "../host/ima-client/client.js";

const U1 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
const M1 = "02:00:5e:00:00:01";
const rec = (port: string, state: "active" | "associated", hold?: number): VnicRecord => ({
  vnic: U1, hv: "hv-1", port, state, vns: [{ vn: 100, addrs: [{ mac: M1, ips: ["10.0.0.1"] }] }], ...(hold ? { hold: { until: hold } } : {}),
});

/** One committed change through the real Txn, returning what the glue gives the client. */
function commit(model: Model, change: (tx: Txn) => void) {
  const tx = new Txn(model, 0, 0);
  change(tx);
  const keys = bindingKeys(tx.vnicChanges, model.vnics);
  tx.finish().commit();
  return { changes: localChangesFor(keys, model), served: servedVnsOf(model) };
}

test("the glue turns committed transactions into the client's desired state", () => {
  const model = new Model(["eth2", "eth3"]);
  let r = commit(model, (tx) => tx.put(rec("eth2", "active")));
  assert.equal(r.changes, [{ vn: 100, mac: M1, ips: ["10.0.0.1"], port: "eth2", active: true }]);
  assert.equal([...r.served], [100]);
  assert.equal(localBindingsOf(model), r.changes);
  r = commit(model, (tx) => tx.put(rec("eth2", "associated", 5000)));
  assert.equal(r.changes, [{ vn: 100, mac: M1, ips: ["10.0.0.1"], port: "eth2", active: false }]);
  r = commit(model, (tx) => tx.put(rec("eth3", "active")));
  assert.equal(r.changes, [{ vn: 100, mac: M1, ips: ["10.0.0.1"], port: "eth3", active: true }]);
  r = commit(model, (tx) => tx.del(U1));
  assert.equal(r.changes, [{ vn: 100, mac: M1, gone: true }]);
  assert.equal([...r.served], []);
});

test("vnRefsOf lists the VN references of agent requests", () => {
  assert.equal(vnRefsOf({ op: "vn.connect", vn: { alias: "blue" } }), [{ alias: "blue" }]);
  assert.equal(vnRefsOf({ op: "hello" }), []);
  assert.equal(vnRefsOf({ op: "sync", vnics: [{ vns: [{ vn: { id: 1 } }, { vn: { name: "x" } }] }, { vns: [] }] }), [{ id: 1 }, { name: "x" }]);
});

test("through a real IMA: a migration within the NVE sends nothing; shutdown withdraws; the last VAP leaves", async () => {
  const broker = await startEmbeddedBroker({ port: 0, nves: ["nve-a", "nve-b"] });
  const dir = mkdtempSync(join(tmpdir(), "nvl-imag-"));
  const ima = await ImaService.start({ settings: { nves: [{ id: "nve-a", ip: "192.0.2.1" }, { id: "nve-b", ip: "192.0.2.2" }] }, broker: { url: broker.url }, store: dir, seed: [{ id: 100, alias: "blue" }] });
  const model = new Model(["eth2", "eth3"]);
  const a = await ImaClient.start({ nve: "nve-a", ip: "192.0.2.1", broker: { url: broker.url }, programmer: { apply: async () => {} },
    served: servedVnsOf(model), local: localBindingsOf(model) });
  const seen: string[] = [];
  const b = await ImaClient.start({ nve: "nve-b", ip: "192.0.2.2", broker: { url: broker.url }, served: [100],
    programmer: { apply: async (ops) => { for (const o of ops) seen.push(JSON.stringify(o)); } } });
  const step = async (change: (tx: Txn) => void) => {
    const r = commit(model, change);
    await a.setServed(r.served);
    a.applyLocal(r.changes);
    await a.idle();
    await new Promise((res) => setTimeout(res, 30));
    await b.idle();
  };
  try {
    await step((tx) => tx.put(rec("eth2", "active")));
    assert.ok(seen.includes(JSON.stringify({ op: "mac.remote", vn: 100, mac: M1, nve: "192.0.2.1" })), seen.join("\n"));
    const requests = a.stats.requests, published = ima.stats.published, atB = seen.length;
    await step((tx) => tx.put(rec("eth2", "associated", Date.now() + 10_000))); // vnic.deactivate reason migration
    await step((tx) => tx.put(rec("eth3", "active")));                           // vnic.activate migration on eth3
    assert.is(a.stats.requests, requests, "no request to the IMA during a migration within the NVE");
    assert.is(ima.stats.published, published);
    assert.is(seen.length, atB, "other NVEs see nothing");
    await step((tx) => tx.del(U1)); // shutdown: the binding and the last VAP go
    assert.ok(seen.includes(JSON.stringify({ op: "mac.del", vn: 100, mac: M1 })));
    assert.ok(seen.includes(JSON.stringify({ op: "flood.leave", vn: 100, nve: "192.0.2.1" })));
  } finally {
    await a.stop();
    await b.stop();
    await ima.stop();
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
