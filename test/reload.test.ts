// applyConfig (host/cli/reload.ts, issue 13): a running NVE taken from one
// configuration to the next as a diff. Only the ops of what changed reach the
// data plane (nothing of what stayed is re-programmed, so its traffic is not
// touched); a profile change is told to the End Devices; ports' hypervisors
// take effect; what needs a restart, or a VN still in use, is refused with
// nothing changed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { MemoryStore } from "../host/store/memory.js";
import { NveCore } from "../host/control/core.js";
import { applyConfig, ReloadError, staticDiff } from "../host/cli/reload.js";
import { parseConfig } from "../host/config/load.js";
import type { NveConfig } from "../host/config/types.js";
import { RecordingProgrammer } from "./support/control-harness.js";

const V1 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
const base = () => ({
  nve: "nve-r",
  underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
  ports: [{ name: "eth2", hypervisors: ["hv-1"] }],
  vns: [{ id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan" } }, { id: 200, alias: "red", vni: 6000, profile: { encap: "geneve" } }],
  vnics: [{ vnic: V1, port: "eth2", vns: [{ vn: 100, tag: 10, addrs: [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"] }] }] }],
  remotes: [{ nve: "nve-b", ip: "192.0.2.2", vns: [100], addrs: [{ vn: 100, mac: "02:00:5e:00:00:02", ips: ["10.0.0.2"] }] }],
});
const cfgOf = (o: object): NveConfig => parseConfig(JSON.stringify(o), "nve.json");

async function start(o: object) {
  const programmer = await RecordingProgrammer.create();
  const store = await MemoryStore.open();
  const events: { hv: string; event: unknown }[] = [];
  const cfg = cfgOf(o);
  const core = await NveCore.open({ config: cfg, store, programmer, onEvent: (hv, event) => events.push({ hv, event }) });
  return { core, programmer, cfg, events };
}

test("staticDiff: removals innermost first, then additions; unchanged ops are not repeated", () => {
  const a = [{ op: "vn", vn: 1, vni: 1, profile: { encap: "vxlan" } }, { op: "flood.join", vn: 1, nve: "192.0.2.2" },
    { op: "mac.remote", vn: 1, mac: "02:00:00:00:00:02", nve: "192.0.2.2" }, { op: "ip", vn: 1, ip: "10.0.0.2", mac: "02:00:00:00:00:02" }] as never[];
  const b = [a[0], { op: "flood.join", vn: 1, nve: "192.0.2.3" }] as never[];
  assert.equal(staticDiff(a, b), [{ op: "ip.del", vn: 1, ip: "10.0.0.2" }, { op: "mac.del", vn: 1, mac: "02:00:00:00:00:02" },
    { op: "flood.leave", vn: 1, nve: "192.0.2.2" }, { op: "flood.join", vn: 1, nve: "192.0.2.3" }]);
  assert.equal(staticDiff(a, a), []);
});

test("a reload programs only what changed: a remote moved and a MAC added; the rest is not re-programmed", async () => {
  const { core, programmer, cfg } = await start(base());
  const next = base();
  next.remotes = [{ nve: "nve-b", ip: "192.0.2.2", vns: [100], addrs: [{ vn: 100, mac: "02:00:5e:00:00:02", ips: ["10.0.0.2"] },
    { vn: 100, mac: "02:00:5e:00:00:03", ips: [] }] }, { nve: "nve-c", ip: "192.0.2.3", vns: [200], addrs: [] }];
  const mark = programmer.mark();
  const r = await applyConfig(core, cfg, cfgOf(next));
  assert.equal(programmer.since(mark), [{ op: "flood.join", vn: 200, nve: "192.0.2.3" }, { op: "mac.remote", vn: 100, mac: "02:00:5e:00:00:03", nve: "192.0.2.2" }]);
  assert.is(r.ops, 2);
  // The same file again: nothing at all.
  const m2 = programmer.mark();
  assert.equal((await applyConfig(core, cfgOf(next), cfgOf(next))).ops, 0);
  assert.equal(programmer.since(m2), []);
  // The data plane forwards to the new MAC through nve-b.
  const { udpFrame } = await import("./support/encoder.js");
  const t = programmer.dp.trace("eth2", udpFrame({ dst: "02:00:5e:00:00:03", src: "02:00:5e:00:00:01", tag: { vid: 10 }, srcIp: "10.0.0.1", dstIp: "10.0.0.3" }));
  assert.is(t.drop, undefined);
  assert.equal([...t.outputs[0].frame.subarray(30, 34)].join("."), "192.0.2.2");
  await core.close();
});

test("a reload: a profile change is told to the End Devices; hypervisors added to a port are served; static VNICs follow the file", async () => {
  const { core, cfg, events } = await start(base());
  // hv-1 holds a VNIC in VN 100 (through the protocol), so it is told of the profile change.
  const hello = await core.request("hv-1", Buffer.from(JSON.stringify({ id: "h", op: "hello", agent: "t" })));
  assert.ok(hello.ok, JSON.stringify(hello));
  const att = await core.request("hv-1", Buffer.from(JSON.stringify({ id: "a", op: "vnic.attach", vnic: "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b09", vn: { id: 100 },
    addrs: [{ mac: "02:00:5e:00:00:09" }] })));
  assert.ok(att.ok, JSON.stringify(att));
  assert.is(core.portOf("hv-2"), undefined);
  const next = base();
  next.vns[0].profile = { encap: "vxlan", mtu: 1400 } as never;
  next.ports[0].hypervisors.push("hv-2");
  next.vnics = [];
  const r = await applyConfig(core, cfg, cfgOf(next));
  assert.ok(r.changes.includes("VN 100 profile"), r.changes.join("; "));
  assert.ok(events.some((e) => e.hv === "hv-1" && (e.event as { event: string; profile?: { mtu: number } }).event === "vn.profile"
    && (e.event as { profile: { mtu: number } }).profile.mtu === 1400));
  assert.is(core.portOf("hv-2"), "eth2");
  assert.is(core.model.vnics.has(V1), false, "the static VNIC left with the file");
  assert.is(core.model.vnics.has("0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b09"), true, "hv-1's own VNIC stays");
  await core.close();
});

test("a reload is refused, with nothing changed, for what needs a restart and for a VN still in use", async () => {
  const { core, programmer, cfg } = await start(base());
  const mark = programmer.mark();
  for (const [edit, re] of [
    [(c: ReturnType<typeof base>) => { c.underlay.ip = "192.0.2.9"; }, /need a restart.*underlay/],
    [(c: ReturnType<typeof base>) => { c.ports.push({ name: "eth3", hypervisors: [] }); }, /need a restart.*ports/],
    [(c: ReturnType<typeof base>) => { c.nve = "nve-x"; }, /need a restart.*nve/],
    [(c: ReturnType<typeof base>) => { c.vns = c.vns.filter((v) => v.id !== 100); c.remotes = []; c.vnics = []; }, /VN 100 is removed but 1 VNICs are connected/],
  ] as const) {
    const next = base();
    edit(next);
    try {
      await applyConfig(core, cfg, cfgOf(next));
      assert.unreachable(String(re));
    } catch (e) {
      assert.instance(e, ReloadError);
      assert.match((e as Error).message, re);
    }
  }
  assert.equal(programmer.since(mark), []);
  assert.is(core.model.vnics.has(V1), true);
  // An unused VN may go.
  const next = base();
  next.vns = next.vns.filter((v) => v.id !== 200);
  await applyConfig(core, cfg, cfgOf(next));
  assert.equal(programmer.since(mark), [{ op: "vn.del", vn: 200 }]);
  assert.is(core.catalog.get(200), undefined);
  await core.close();
});

test.run();
