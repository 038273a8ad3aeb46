// The agent's port driver (host/agent/driver.ts): the agent itself puts the
// tag the NVE returned on the VM's bridge port (RFC 8394 Req-7) and takes the
// port off the VN when its binding goes away (detach, shutdown, an
// NVE-initiated vn.disconnected: Req-6).
// - "agent port driver": the agent library against an in-process NVE, with a
//   driver that records what it is asked (and fails on demand) — the agent's
//   decisions: when to set, when to clear, what a failure does.
// - "agent drives OVS" (root): the real `nvedge agent run --ovs-db` and
//   `nvedge agent attach --port` against a private Open vSwitch (userspace
//   datapath) in an `nvl-` namespace: the tag read back from OVS.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { Agent, AgentError } from "../host/agent/agent.js";
import type { PortDriver } from "../host/agent/driver.js";
import { daemonRequest } from "../host/agent/daemon.js";
import { getPortTag, setPortTag, PARKING_VLAN } from "../host/agent/ovs-driver.js";
import { startOvs, stopOvs, ovsAnswers, vsctl } from "../host/lab/ovs.js";
import type { OvsInstance } from "../host/lab/topology.js";
import { sleep } from "../host/sys/sh.js";
import { createNetns, removeNetns, uniqueName, type Ns } from "./support/netns.js";
import { requireRootAnd } from "./support/tools.js";
import {
  HVS, NVE_POOL, baseConfig, brokerFixtures, nextNve, runNvedge, spawnNvedge, startNve, until, type RunningBroker,
} from "./support/control-harness.js";
import { newMemoryBacking } from "../host/store/memory.js";

const V1 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
const V2 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b02";
const V3 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b03";
const MAC1 = "02:00:5e:00:00:01", MAC2 = "02:00:5e:00:00:02";

/** Records every call; `fail` makes the named ports fail (as OVS would for a missing port). */
class RecordingDriver implements PortDriver {
  readonly name = "recording";
  readonly enabled = true;
  calls: string[] = [];
  fail = new Set<string>();
  async setTag(port: string, tag: number): Promise<void> {
    if (this.fail.has(port)) throw new Error(`port "${port}" is not on the bridge`);
    this.calls.push(`set ${port} ${tag}`);
  }
  async clearTag(port: string): Promise<void> {
    if (this.fail.has(port)) throw new Error(`port "${port}" is not on the bridge`);
    this.calls.push(`clear ${port}`);
  }
  take(): string[] {
    const c = this.calls;
    this.calls = [];
    return c;
  }
}

async function rejects(p: Promise<unknown>): Promise<AgentError> {
  try {
    await p;
  } catch (e) {
    return e as AgentError;
  }
  throw new Error("expected a rejection");
}

// ---------------------------------------------------------------------------
const unit = suite("agent port driver");
let b: RunningBroker;
let dir: string;
unit.before(async () => {
  b = await brokerFixtures()[0].start([...HVS, ...NVE_POOL], NVE_POOL);
  dir = mkdtempSync("/tmp/nvl-agent-ovs-");
});
unit.after(async () => {
  await b?.close();
  rmSync(dir, { recursive: true, force: true });
});

const agentOn = (nve: string, driver: PortDriver, hv = "hv-1", statePath?: string) =>
  Agent.start({ broker: { url: b.url, protocolVersion: b.protocolVersion, ...b.creds(hv), reconnectPeriodMs: 200 }, hv, nve, driver, statePath, requestTimeoutMs: 5000 });

unit("attach sets the port's tag; suspend keeps it; detach of the VN and a shutdown deactivate clear it", async () => {
  const nve = nextNve();
  const run = await startNve(b, { config: baseConfig({}, nve) });
  const drv = new RecordingDriver();
  const a = await agentOn(nve, drv);
  try {
    const r1 = await a.attach(V1, { alias: "blue" }, [{ mac: MAC1 }], { port: "vnet1" });
    const r2 = await a.attach(V2, { alias: "red" }, [{ mac: MAC2 }], { port: "vnet2", tag: 7 });
    assert.is(r2.tag, 7);
    assert.equal(drv.take(), [`set vnet1 ${r1.tag}`, "set vnet2 7"]);
    assert.is(a.desired.get(V1)!.vns[0].port, "vnet1");
    // the same attach again: idempotent at the NVE, the port already has its tag
    await a.attach(V1, { alias: "blue" }, [{ mac: MAC1 }]);
    assert.equal(drv.take(), []);
    assert.is(a.desired.get(V1)!.vns[0].port, "vnet1", "an attach without a port keeps the one named before");
    await a.deactivate(V1, "suspend");
    assert.equal(drv.take(), [], "Associated: the NVE holds the bindings, the port keeps its tag");
    await a.activate(V1);
    await a.detach(V1, { alias: "blue" });
    assert.equal(drv.take(), ["clear vnet1"]);
    assert.is(run.svc.core.viewHv("hv-1").vnics.length, 1);
    await a.deactivate(V2, "shutdown");
    assert.equal(drv.take(), ["clear vnet2"]);
    assert.equal(a.portState(), {});
  } finally {
    await a.stop();
    await run.stop();
  }
});

unit("an NVE-initiated vn.disconnected clears that VNIC's port and no other (Req-6)", async () => {
  const nve = nextNve();
  const run = await startNve(b, { config: baseConfig({}, nve) });
  const drv = new RecordingDriver();
  const a = await agentOn(nve, drv);
  try {
    await a.attach(V1, { alias: "blue" }, [{ mac: MAC1 }], { port: "vnet1" });
    await a.attach(V2, { alias: "blue" }, [{ mac: MAC2 }], { port: "vnet2" });
    drv.take();
    const ev = new Promise((r) => a.once("event", r));
    await run.svc.core.disconnectVnic(V1, "blue");
    await ev;
    await until(() => drv.calls.length > 0, 5000, "the driver call");
    assert.equal(drv.take(), ["clear vnet1"]);
    assert.is(a.desired.has(V1), false);
    await run.svc.core.removeVnic(V2);
    await until(() => drv.calls.length > 0, 5000, "the driver call");
    assert.equal(drv.take(), ["clear vnet2"]);
    assert.equal(a.portState(), {});
  } finally {
    await a.stop();
    await run.stop();
  }
});

unit("a driver failure fails the attach naming the port; the NVE keeps the VNIC; the next sync sets the port; a failed clear is retried too", async () => {
  const nve = nextNve();
  const run = await startNve(b, { config: baseConfig({}, nve) });
  const drv = new RecordingDriver();
  const a = await agentOn(nve, drv);
  const reported: unknown[] = [];
  a.on("driver-error", (e) => reported.push(e));
  try {
    drv.fail.add("vnet9");
    const e = await rejects(a.attach(V1, { alias: "blue" }, [{ mac: MAC1 }], { port: "vnet9" }));
    assert.ok(e instanceof AgentError);
    assert.is(e.code, "driver");
    assert.match(e.message, /port "vnet9" is not on the bridge/);
    assert.match(e.message, /holds at the NVE with tag 1/);
    assert.is(e.field, "port");
    assert.equal(reported, [{ port: "vnet9", tag: 1, message: 'port "vnet9" is not on the bridge' }]);
    assert.is(run.svc.core.viewHv("hv-1").vnics.length, 1, "the NVE side stays as it is");
    assert.is(a.desired.get(V1)!.vns[0].port, "vnet9");
    assert.equal(a.portState(), { vnet9: "unknown" });
    drv.fail.delete("vnet9");
    await a.resync();
    assert.equal(drv.take(), ["set vnet9 1"]);
    await a.resync();
    assert.equal(drv.take(), [], "a sync with nothing changed sets nothing");
    // clear fails: the detach reports it, the port stays listed, the next sync clears it
    drv.fail.add("vnet9");
    const e2 = await rejects(a.detach(V1));
    assert.is(e2.code, "driver");
    assert.match(e2.message, /vnet9.*the detach of VNIC .* is done at the NVE/);
    assert.is(run.svc.core.viewHv("hv-1").vnics.length, 0);
    drv.fail.delete("vnet9");
    await a.resync();
    assert.equal(drv.take(), ["clear vnet9"]);
    assert.equal(a.portState(), {});
  } finally {
    await a.stop();
    await run.stop();
  }
});

unit("a bad port name, or a port another VNIC already has: bad-request, nothing sent to the NVE", async () => {
  const nve = nextNve();
  const run = await startNve(b, { config: baseConfig({}, nve) });
  const drv = new RecordingDriver();
  const a = await agentOn(nve, drv);
  try {
    let e = await rejects(a.attach(V1, { alias: "blue" }, [{ mac: MAC1 }], { port: "bad port" }));
    assert.is(e.code, "bad-request");
    assert.match(e.message, /port "bad port": not a valid port name/);
    assert.is(run.svc.core.viewHv("hv-1").vnics.length, 0);
    await a.attach(V1, { alias: "blue" }, [{ mac: MAC1 }], { port: "vnet1" });
    e = await rejects(a.attach(V2, { alias: "blue" }, [{ mac: MAC2 }], { port: "vnet1" }));
    assert.is(e.code, "bad-request");
    assert.match(e.message, new RegExp(`port "vnet1" already carries VNIC ${V1}`));
    assert.equal(run.svc.core.viewHv("hv-1").vnics.map((v: any) => v.vnic), [V1]);
    assert.equal(drv.take(), ["set vnet1 1"]);
  } finally {
    await a.stop();
    await run.stop();
  }
});

unit("the port follows a tag the NVE changes at a sync; a restarted agent re-asserts its ports from the state file (PROTOCOL.md §3)", async () => {
  const nve = nextNve();
  let run = await startNve(b, { config: baseConfig({}, nve) });
  const drv = new RecordingDriver();
  const statePath = `${dir}/hv-1-follow.json`;
  let a = await agentOn(nve, drv, "hv-1", statePath);
  try {
    const r = await a.attach(V1, { alias: "blue" }, [{ mac: MAC1 }], { port: "vnet1" });
    assert.is(r.tag, 1);
    drv.take();
    // The NVE comes back with an empty store and a static VNIC of VN red holding
    // tag 1 on the same port (eth2): the sync's requested tag 1 is only a
    // preference, blue gets another one, and the port must follow.
    await run.stop();
    const syncs = a.syncs;
    run = await startNve(b, { backing: newMemoryBacking(), config: baseConfig({
      vnics: [{ vnic: V3, port: "eth2", state: "active", vns: [{ vn: 200, tag: 1, addrs: [{ mac: "02:00:5e:00:00:03" }] }] }],
    }, nve) });
    await until(() => a.syncs > syncs && drv.calls.length > 0, 10000, "the resync after the NVE restart");
    const tag = a.desired.get(V1)!.vns[0].tag!;
    assert.is.not(tag, 1);
    assert.equal(drv.take(), [`set vnet1 ${tag}`]);
    assert.is((run.svc.core.viewHv("hv-1").vnics[0] as any).vns[0].tag, tag);
    // the state file keeps the port; a new agent process sets it again (it may have drifted meanwhile)
    await a.stop();
    assert.is(JSON.parse(readFileSync(statePath, "utf8")).vnics[0].vns[0].port, "vnet1");
    a = await agentOn(nve, drv, "hv-1", statePath);
    assert.equal(drv.take(), [`set vnet1 ${tag}`]);
    assert.equal(a.portState(), { vnet1: tag });
  } finally {
    await a.stop();
    await run.stop();
  }
});

unit.run();

// ---------------------------------------------------------------------------
if (requireRootAnd(["ovs-vswitchd", "ovsdb-server", "ovs-vsctl"], "the agent driving a real Open vSwitch")) {
  const real = suite("agent drives OVS");
  let rb: RunningBroker;
  let n: Ns | undefined;
  let ovs: OvsInstance | undefined;
  let tmp: string;
  real.before(async () => {
    tmp = mkdtempSync("/tmp/nvl-ao-");
    rb = await brokerFixtures()[0].start([...HVS, ...NVE_POOL], NVE_POOL);
    n = createNetns(uniqueName("aovs"));
    // Short directory: OVS unix socket paths must stay under 108 bytes (host/lab/ovs.ts).
    const d = `${tmp}/ovs`;
    ovs = { ns: n.name, dir: d, db: `unix:${d}/db.sock`, ctl: `${d}/ovs-vswitchd.ctl` };
    startOvs(ovs);
    const deadline = Date.now() + 10_000;
    while (!ovsAnswers(ovs)) {
      if (Date.now() > deadline) throw new Error("the private OVS did not answer within 10 s");
      await sleep(100);
    }
    vsctl(ovs, ["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"]);
  });
  real.after(async () => {
    try {
      if (ovs) await stopOvs(ovs);
    } finally {
      if (n) removeNetns(n.name);
      await rb?.close();
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  /** A VM's port: one end of a veth pair in the namespace, on br0. */
  const vmPort = (name: string) => {
    n!.exec(["ip", "link", "add", name, "type", "veth", "peer", "name", `${name}p`]);
    n!.exec(["ip", "link", "set", name, "up"]);
    vsctl(ovs!, ["add-port", "br0", name]);
  };

  real("nvedge agent run --ovs-db / attach --port: the OVS port takes the NVE's tag; a missing port fails naming it and is set at the next sync; restart re-asserts; detach and vn.disconnected park the port", async () => {
    const nve = nextNve();
    const run = await startNve(rb, { config: baseConfig({}, nve) });
    const sfx = randomBytes(2).toString("hex");
    const p1 = `nvl-v1${sfx}`, p2 = `nvl-v2${sfx}`;
    vmPort(p1);
    const sock = `${tmp}/hv-1.sock`;
    const args = ["agent", "run", "--broker", rb.url, "--hv", "hv-1", "--nve", nve, "--state", `${tmp}/hv-1.json`, "--socket", sock, "--ovs-db", ovs!.db];
    let agent = await spawnNvedge(args);
    try {
      await until(async () => daemonRequest(sock, { cmd: "show" }).then(() => true, () => false), 10000, "agent daemon socket");
      let r = await runNvedge(["agent", "attach", "--socket", sock, "--vnic", V1, "--vn", "blue", "--mac", MAC1, "--tag", "42", "--port", p1]);
      assert.is(r.code, 0, r.err);
      assert.match(r.out, new RegExp(`attached: VN blue tag 42 .* on port ${p1}`));
      assert.is(await getPortTag(ovs!.db, p1), 42);
      let show = JSON.parse((await runNvedge(["agent", "show", "--json", "--socket", sock])).out);
      assert.equal(show.ports, { [p1]: 42 });
      assert.match(show.driver, /^OVS unix:/);

      // the port does not exist (yet): exit 1, one line naming it and the OVS error; the NVE keeps the VNIC
      r = await runNvedge(["agent", "attach", "--socket", sock, "--vnic", V2, "--vn", "red", "--mac", MAC2, "--port", p2]);
      assert.is(r.code, 1);
      assert.match(r.err, new RegExp(`OVS port "${p2}" does not exist in unix:`));
      assert.is(r.err.trim().split("\n").length, 1, r.err);
      assert.equal(run.svc.core.viewHv("hv-1").vnics.map((v: any) => v.vnic).sort(), [V1, V2]);
      vmPort(p2);
      await daemonRequest(sock, { cmd: "resync" });
      assert.is(await getPortTag(ovs!.db, p2), 1);

      // bad usage changes nothing
      r = await runNvedge(["agent", "attach", "--socket", sock, "--vnic", V2, "--vn", "red", "--mac", MAC2, "--port", "no such"]);
      assert.is(r.code, 2);
      assert.match(r.err, /--port "no such"/);
      r = await runNvedge(["agent", "run", "--broker", rb.url, "--hv", "hv-2", "--nve", nve, "--socket", `${tmp}/x.sock`, "--ovs-db", "db.sock"]);
      assert.is(r.code, 2);
      assert.match(r.err, /--ovs-db: OVS database "db.sock": expected unix:PATH/);

      // the port drifted while the agent was down: the restarted agent sets it from its state file
      agent.child.kill("SIGKILL");
      await agent.exited;
      await setPortTag(ovs!.db, p1, 99);
      agent = await spawnNvedge(args);
      await until(async () => (await getPortTag(ovs!.db, p1)) === 42, 10000, "the restarted agent re-tagging the port");

      // NVE-initiated disconnect (Req-6): the agent parks the port
      await until(async () => daemonRequest(sock, { cmd: "show" }).then(() => true, () => false), 10000, "agent daemon socket");
      await run.svc.core.disconnectVnic(V2, "red");
      await until(async () => (await getPortTag(ovs!.db, p2)) === PARKING_VLAN, 10000, "the port parked after vn.disconnected");
      // detach parks the port too
      r = await runNvedge(["agent", "detach", "--socket", sock, "--vnic", V1]);
      assert.is(r.code, 0, r.err);
      assert.is(await getPortTag(ovs!.db, p1), PARKING_VLAN);
      assert.is(vsctl(ovs!, ["get", "Port", p1, "protected"]).stdout.trim(), "true");
      show = JSON.parse((await runNvedge(["agent", "show", "--json", "--socket", sock])).out);
      assert.equal(show.ports, {});
    } finally {
      await agent.stop();
      await run.stop();
    }
  });

  real.run();
}
