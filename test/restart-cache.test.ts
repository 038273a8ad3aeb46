// The IMA cache in the store (issue 4; host/ima-client/cache.ts): VNs, flood
// lists and remote bindings learned from the IMA survive a restart in the LMDB
// store and program a fresh data plane, so frames to remote VMs are
// encapsulated before the IMA (or any broker) answers.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openLmdbStore } from "../host/store/lmdb.js";
import { cacheRemote, cacheVn, cacheVtep, cachedOps, cachedVns, uncacheRemote, uncacheVn } from "../host/ima-client/cache.js";
import { parseConfig } from "../host/config/load.js";
import { staticOps } from "../host/control/static.js";
import { VnCatalog } from "../host/control/catalog.js";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { udpFrame } from "./support/encoder.js";

const profile = { encap: "vxlan" as const, service: "l2" as const, mtu: 1500, portSecurity: true, arpSuppress: true, learn: "explicit" as const };
const cfg = parseConfig(JSON.stringify({
  nve: "nve-a",
  underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe", udpPort: 4789 },
  ports: [{ name: "eth2", hypervisors: ["hv-1"] }],
  vns: [{ id: 100, vni: 5000, profile }],
  vnics: [], remotes: [],
}), "test");
const LOCAL = { mac: "02:00:5e:00:02:01", ip: "10.2.0.1" };
const REMOTE = { mac: "02:00:5e:00:02:99", ip: "10.2.0.99" };

test("cached VN, flood list and remote binding program a fresh data plane after a restart; the file's VNs win; own IP skipped", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvedge-cache-"));
  try {
    let s = await openLmdbStore(dir);
    await s.transaction((tx) => {
      cacheVn(tx, { id: 200, vni: 6000, alias: "red", profile });
      cacheVn(tx, { id: 100, vni: 9999, profile: { ...profile, mtu: 1400 } }); // the file defines 100: ignored
      cacheVtep(tx, { vn: 200, nve: "nve-b", ip: "192.0.2.2" });
      cacheVtep(tx, { vn: 200, nve: "nve-a", ip: "192.0.2.1" }); // ourselves
      cacheRemote(tx, { vn: 200, mac: REMOTE.mac, nve: "nve-b", ip: "192.0.2.2", ips: [REMOTE.ip], seq: 1 });
      cacheRemote(tx, { vn: 200, mac: "02:00:5e:00:02:77", nve: "nve-a", ip: "192.0.2.1", ips: [], seq: 1 }); // our own, echoed
      cacheRemote(tx, { vn: 300, mac: "02:00:5e:00:03:01", nve: "nve-b", ip: "192.0.2.2", ips: [], seq: 1 }); // VN unknown
    });
    await s.close();
    s = await openLmdbStore(dir); // the restart
    const catalog = VnCatalog.fromConfig(cfg);
    for (const v of cachedVns(s)) if (!catalog.get(v.id)) catalog.add(v);
    assert.is(catalog.resolve("red").id, 200);
    assert.is(catalog.get(100)!.vni, 5000);
    const ops = cachedOps(s, cfg);
    assert.equal(ops, [
      { op: "vn", vn: 200, vni: 6000, profile },
      { op: "flood.join", vn: 200, nve: "192.0.2.2" },
      { op: "mac.remote", vn: 200, mac: REMOTE.mac, nve: "192.0.2.2" },
      { op: "ip", vn: 200, ip: REMOTE.ip, mac: REMOTE.mac },
    ]);
    const dp = await DataPlane.create({ macLog2: 10, ipLog2: 10 });
    dp.apply([...staticOps(cfg, catalog), ...ops,
      { op: "tag", port: "eth2", tag: 20, vn: 200 },
      { op: "mac.local", vn: 200, mac: LOCAL.mac, port: "eth2", active: true },
      { op: "ip", vn: 200, ip: LOCAL.ip, mac: LOCAL.mac }]);
    const toRemote = dp.trace("eth2", udpFrame({ dst: REMOTE.mac, src: LOCAL.mac, tag: { vid: 20 }, srcIp: LOCAL.ip, dstIp: REMOTE.ip }));
    assert.is(toRemote.drop, undefined, toRemote.steps.join("\n"));
    assert.equal(toRemote.outputs.map((o) => o.port), ["eth1"]);
    // VXLAN to the cached NVE: outer IPv4 destination 192.0.2.2, VNI 6000.
    const f = toRemote.outputs[0].frame;
    assert.equal([...f.subarray(30, 34)], [192, 0, 2, 2]);
    assert.is((f[46] << 16) | (f[47] << 8) | f[48], 6000);
    const flood = dp.trace("eth2", udpFrame({ dst: "ff:ff:ff:ff:ff:ff", src: LOCAL.mac, tag: { vid: 20 }, srcIp: LOCAL.ip, dstIp: "10.2.255.255" }));
    assert.equal(flood.outputs.map((o) => o.port), ["eth1"], "one copy to the cached flood list (not to ourselves)");
    // The IMA withdraws: the cache follows, containment for a deleted VN.
    await s.transaction((tx) => uncacheRemote(tx, 200, REMOTE.mac));
    assert.is(s.get("remotes", `200|${REMOTE.mac}`), undefined);
    await s.transaction((tx) => uncacheVn(tx, 200));
    assert.equal([s.list("vns").map(([k]) => k), s.list("vteps", "200|"), s.list("remotes", "200|")], [["100"], [], []]);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("NveCore.open programs the cache with the stored VNICs: a VNIC of a cached VN reaches a cached remote after a restart", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvedge-cache-"));
  try {
    let s = await openLmdbStore(dir);
    await s.transaction((tx) => {
      cacheVn(tx, { id: 200, vni: 6000, alias: "red", profile });
      cacheVtep(tx, { vn: 200, nve: "nve-b", ip: "192.0.2.2" });
      cacheRemote(tx, { vn: 200, mac: REMOTE.mac, nve: "nve-b", ip: "192.0.2.2", ips: [REMOTE.ip], seq: 1 });
      tx.put("vnics", "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01", { vnic: "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01", hv: "hv-1", port: "eth2", state: "active",
        vns: [{ vn: 200, addrs: [{ mac: LOCAL.mac, ips: [LOCAL.ip] }] }] });
      tx.put("vaps", "eth2|200", { port: "eth2", vn: 200, tag: 20 });
    });
    await s.close();
    s = await openLmdbStore(dir);
    const dp = await DataPlane.create({ macLog2: 10, ipLog2: 10 });
    const { NveCore } = await import("../host/control/core.js");
    const core = await NveCore.open({ config: cfg, store: s, programmer: { apply: async (ops) => dp.apply(ops) } });
    try {
      assert.is(core.catalog.resolve("red").id, 200);
      const r = dp.trace("eth2", udpFrame({ dst: REMOTE.mac, src: LOCAL.mac, tag: { vid: 20 }, srcIp: LOCAL.ip, dstIp: REMOTE.ip }));
      assert.is(r.drop, undefined, r.steps.join("\n"));
      assert.equal(r.outputs.map((o) => o.port), ["eth1"]);
      assert.equal([...r.outputs[0].frame.subarray(30, 34)], [192, 0, 2, 2]);
    } finally {
      await core.close();
      await s.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
