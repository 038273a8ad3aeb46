// The one conformance suite every Store implementation runs (host/store/store.ts).
// Usage, from a test file:
//   storeConformance("memory", { fresh: async () => { const b = newMemoryBacking();
//     return { open: (v) => MemoryStore.open({ backing: b, schemaVersion: v }), cleanup: async () => {} }; } });
// `open` on one fresh location must reopen the same data (a restart).
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { STORE_SCHEMA_VERSION, StoreSchemaError, keys, type Store, type VnicRecord } from "../../host/store/store.js";

export interface StoreLocation {
  open(schemaVersion?: number): Promise<Store>;
  cleanup(): Promise<void>;
}
export interface StoreHarness { fresh(): Promise<StoreLocation> }

const vnic = (id: string, port = "eth2"): VnicRecord => ({
  vnic: id, hv: "hv-1", port, state: "active",
  vns: [{ vn: 100, addrs: [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1", "2001:db8::1"] }] }],
});
const U1 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
const U2 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b02";

export function storeConformance(name: string, h: StoreHarness): void {
  const s = suite(`store conformance: ${name}`);
  let loc: StoreLocation;
  let store: Store;
  s.before.each(async () => {
    loc = await h.fresh();
    store = await loc.open();
  });
  s.after.each(async () => {
    await store.close().catch(() => {});
    await loc.cleanup();
  });

  s("a new store is empty and carries the current schema version", () => {
    assert.is(store.schemaVersion, STORE_SCHEMA_VERSION);
    for (const c of ["vnics", "vaps", "quarantine", "hvs", "timers"] as const) assert.equal(store.list(c), []);
    assert.is(store.get("vnics", U1), undefined);
  });

  s("one transaction writes several collections; reads see them", async () => {
    await store.transaction((tx) => {
      tx.put("vnics", U1, vnic(U1));
      tx.put("vaps", keys.vap("eth2", 100), { port: "eth2", vn: 100, tag: 10 });
      tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 5 });
    });
    assert.equal(store.get("vnics", U1), vnic(U1));
    assert.equal(store.get("vaps", "eth2|100"), { port: "eth2", vn: 100, tag: 10 });
    assert.equal(store.get("hvs", "hv-1"), { hv: "hv-1", online: true, since: 5 });
  });

  s("a transaction sees its own writes and deletes before commit", async () => {
    await store.transaction((tx) => tx.put("vnics", U1, vnic(U1)));
    const seen = await store.transaction((tx) => {
      tx.put("vnics", U2, vnic(U2));
      tx.del("vnics", U1);
      return { u1: tx.get("vnics", U1), u2: tx.get("vnics", U2)?.vnic, list: tx.list("vnics").map(([k]) => k) };
    });
    assert.equal(seen, { u1: undefined, u2: U2, list: [U2] });
  });

  s("a transaction that throws writes nothing, in any collection", async () => {
    await store.transaction((tx) => tx.put("vaps", "eth2|100", { port: "eth2", vn: 100, tag: 10 }));
    let threw = false;
    try {
      await store.transaction((tx) => {
        tx.put("vnics", U1, vnic(U1));
        tx.del("vaps", "eth2|100");
        tx.put("quarantine", "eth2|10", { port: "eth2", tag: 10, vn: 100, until: 1 });
        throw new Error("boom");
      });
    } catch (e) {
      threw = (e as Error).message === "boom";
    }
    assert.ok(threw, "the transaction's error propagates");
    assert.is(store.get("vnics", U1), undefined);
    assert.equal(store.get("vaps", "eth2|100"), { port: "eth2", vn: 100, tag: 10 });
    assert.equal(store.list("quarantine"), []);
  });

  s("records are copies: mutating what was put or read changes nothing stored", async () => {
    const r = vnic(U1);
    await store.transaction((tx) => tx.put("vnics", U1, r));
    r.vns[0].addrs[0].ips.push("10.9.9.9");
    r.state = "associated";
    const got = store.get("vnics", U1)!;
    assert.equal(got, vnic(U1));
    got.vns.length = 0;
    assert.equal(store.get("vnics", U1), vnic(U1));
    assert.equal(store.list("vnics")[0][1], vnic(U1));
  });

  s("list filters by prefix and sorts by key", async () => {
    await store.transaction((tx) => {
      for (const [p, vn, tag] of [["eth3", 5, 7], ["eth2", 200, 3], ["eth2", 100, 4], ["eth20", 1, 9]] as const)
        tx.put("vaps", keys.vap(p, vn), { port: p, vn, tag });
    });
    assert.equal(store.list("vaps", "eth2|").map(([k]) => k), ["eth2|100", "eth2|200"]);
    assert.equal(store.list("vaps").map(([k]) => k), ["eth20|1", "eth2|100", "eth2|200", "eth3|5"]);
  });

  s("del of a missing key is harmless; put overwrites", async () => {
    await store.transaction((tx) => { tx.del("vnics", U1); tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 1 }); });
    await store.transaction((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: false, since: 2 }));
    assert.equal(store.list("hvs"), [["hv-1", { hv: "hv-1", online: false, since: 2 }]]);
  });

  s("transactions apply in call order even when not awaited one by one", async () => {
    const ps = [];
    for (let i = 0; i < 20; i++) ps.push(store.transaction((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: i % 2 === 0, since: i })));
    await Promise.all(ps);
    assert.equal(store.get("hvs", "hv-1"), { hv: "hv-1", online: false, since: 19 });
  });

  s("timers: absolute deadlines, listed by key, deleted one by one", async () => {
    await store.transaction((tx) => {
      tx.put("timers", keys.timer("agent-hold", "hv-2"), { kind: "agent-hold", subject: "hv-2", due: 3000 });
      tx.put("timers", keys.timer("migration-hold", U1), { kind: "migration-hold", subject: U1, due: 1000 });
      tx.put("timers", keys.timer("agent-hold", "hv-1"), { kind: "agent-hold", subject: "hv-1", due: 3000 });
    });
    assert.equal(store.list("timers").map(([k, t]) => [k, t.due]), [["agent-hold|hv-1", 3000], ["agent-hold|hv-2", 3000], [`migration-hold|${U1}`, 1000]]);
    await store.transaction((tx) => tx.del("timers", `migration-hold|${U1}`));
    assert.equal(store.list("timers").map(([k]) => k), ["agent-hold|hv-1", "agent-hold|hv-2"]);
  });

  s("reopening the same location restores every collection, deadlines included (a restart)", async () => {
    await store.transaction((tx) => {
      tx.put("vnics", U1, { ...vnic(U1), state: "associated", hold: { until: 1234567 } });
      tx.put("quarantine", "eth2|10", { port: "eth2", tag: 10, vn: 100, until: 99 });
      tx.put("timers", `migration-hold|${U1}`, { kind: "migration-hold", subject: U1, due: 1234567 });
    });
    await store.close();
    store = await loc.open();
    assert.is(store.schemaVersion, STORE_SCHEMA_VERSION);
    assert.equal(store.get("vnics", U1)?.hold, { until: 1234567 });
    assert.equal(store.get("quarantine", "eth2|10")?.until, 99);
    assert.is(store.get("timers", `migration-hold|${U1}`)?.due, 1234567);
  });

  s("a store written with another schema version refuses to open", async () => {
    await store.transaction((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 1 }));
    await store.close();
    let err: unknown;
    try {
      store = await loc.open(STORE_SCHEMA_VERSION + 1);
    } catch (e) {
      err = e;
    }
    assert.instance(err, StoreSchemaError);
    assert.match((err as Error).message, /schema version/);
    store = await loc.open(); // still readable with the right version
    assert.is(store.get("hvs", "hv-1")?.online, true);
  });

  s.run();
}
