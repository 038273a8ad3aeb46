// One translation of the configuration file's static state (host/control/static.ts,
// issue 16): what `nvedge run` programs at start (NveCore.open: the static ops,
// then the static VNICs through a sync) is what `nvedge pcap`, `nvedge trace
// --config` and `nvedge config check` program (offlineOps), for the same file,
// and a missing underlay.gatewayMac means the same in both: the next hop is
// unresolved, nothing enters a tunnel (no-next-hop) and floods stay local.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseConfig } from "../host/config/load.js";
import type { NveConfig } from "../host/config/types.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { NveCore } from "../host/control/core.js";
import { offlineOps } from "../host/control/static.js";
import { MemoryStore } from "../host/store/memory.js";
import { FakeClock } from "./support/control-harness.js";
import { udpFrame } from "./support/encoder.js";

const profile = { encap: "vxlan", mtu: 1500, portSecurity: true, arpSuppress: true };

function config(underlay: Record<string, unknown>): NveConfig {
  return parseConfig(JSON.stringify({
    nve: "nve-a",
    underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", udpPort: 4789, ...underlay },
    ports: [{ name: "eth2", hypervisors: ["hv-1"] }, { name: "eth3", hypervisors: ["hv-3"] }],
    vns: [
      { id: 100, alias: "blue", vni: 5000, profile },
      { id: 200, vni: 6000, profile: { encap: "geneve", mtu: 1400 } },
    ],
    vnics: [
      // upper-case MAC, uncompressed IPv6, a VN by alias, two VNICs sharing a tag, one only associated
      { vnic: "00000000-0000-4000-8000-000000000001", port: "eth2", vns: [{ vn: "blue", tag: 10, addrs: [{ mac: "02:00:5E:00:00:01", ips: ["10.0.0.1", "2001:db8:0:0::1"] }] }] },
      { vnic: "00000000-0000-4000-8000-000000000002", port: "eth2", vns: [{ vn: 100, tag: 10, addrs: [{ mac: "02:00:5e:00:00:02", ips: ["10.0.0.2"] }] }] },
      { vnic: "00000000-0000-4000-8000-000000000003", port: "eth3", state: "associated", vns: [{ vn: 200, tag: 20, addrs: [{ mac: "02:00:5e:00:00:03" }] }] },
    ],
    remotes: [{ nve: "nve-b", ip: "192.0.2.2", vns: ["blue", 200], addrs: [{ vn: 100, mac: "02:00:5E:00:0B:01", ips: ["10.0.0.200"] }] }],
  }), "static-ops.json");
}

/** What `nvedge run` programs at start for cfg, before any agent or IMA speaks. */
async function runOps(cfg: NveConfig): Promise<DpOp[]> {
  const ops: DpOp[] = [];
  const dp = await DataPlane.create({ macLog2: 10, ipLog2: 10 });
  const store = await MemoryStore.open();
  const core = await NveCore.open({ config: cfg, store, clock: new FakeClock(), log: () => {},
    programmer: { apply: async (o) => { dp.apply(o); ops.push(...o); } } });
  await core.close();
  await store.close();
  return ops;
}

const sorted = (ops: DpOp[]) => ops.map((o) => JSON.stringify(o)).sort();

for (const c of [
  { name: "gatewayMac given", underlay: { gatewayMac: "02:00:00:00:01:FE" } },
  { name: "no gatewayMac (gateway resolved by ARP in run)", underlay: { gateway: "192.0.2.254" } },
]) {
  test(`run and pcap/trace program the same ops for one file (${c.name})`, async () => {
    const cfg = config(c.underlay);
    const run = await runOps(cfg);
    const offline = offlineOps(cfg);
    assert.ok(offline.some((o) => o.op === "mac.local") && offline.some((o) => o.op === "tag") && offline.some((o) => o.op === "mac.remote"),
      "the fixture has static VNICs and remotes");
    assert.equal(sorted(offline), sorted(run));
    const u = offline.find((o) => o.op === "underlay") as Extract<DpOp, { op: "underlay" }>;
    assert.is(u.gatewayMac, c.underlay.gatewayMac ? "02:00:00:00:01:fe" : "ff:ff:ff:ff:ff:ff");
  });
}

test("offline without gatewayMac: a frame for a remote is no-next-hop, a broadcast stays local, as in run before the gateway resolves", async () => {
  const dp = await DataPlane.create({ macLog2: 10, ipLog2: 10 });
  dp.apply(offlineOps(config({ gateway: "192.0.2.254" })));
  const toRemote = dp.trace("eth2", udpFrame({ dst: "02:00:5e:00:0b:01", src: "02:00:5e:00:00:01", tag: { vid: 10 }, srcIp: "10.0.0.1", dstIp: "10.0.0.200" }));
  assert.is(toRemote.drop, "no-next-hop", toRemote.steps.join("\n"));
  const flood = dp.trace("eth2", udpFrame({ dst: "ff:ff:ff:ff:ff:ff", src: "02:00:5e:00:00:01", tag: { vid: 10 }, srcIp: "10.0.0.1", dstIp: "10.0.0.255" }));
  assert.equal(flood.outputs.map((o) => o.port), [], "VN 100 has no other local port and no tunnel copy");
  const dp2 = await DataPlane.create({ macLog2: 10, ipLog2: 10 });
  dp2.apply(offlineOps(config({ gatewayMac: "02:00:00:00:01:fe" })));
  const resolved = dp2.trace("eth2", udpFrame({ dst: "02:00:5e:00:0b:01", src: "02:00:5e:00:00:01", tag: { vid: 10 }, srcIp: "10.0.0.1", dstIp: "10.0.0.200" }));
  assert.equal(resolved.outputs.map((o) => o.port), ["eth1"], resolved.steps.join("\n"));
});

test.run();
