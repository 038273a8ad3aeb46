// The agent side (PROTOCOL.md §3): the `nvedge agent run` daemon as a real
// process (killed with SIGKILL), its control socket and one-shot commands,
// its state file, and the library's auto-reconnect — against an in-process NVE
// (fake clock) through every broker fixture.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, readFileSync } from "node:fs";
import { daemonRequest } from "../host/agent/daemon.js";
import {
  HVS, NVE_POOL, baseConfig, brokerFixtures, nextNve, runNvedge, spawnNvedge, startAgent, startNve, until,
  type BrokerFixture, type RunningBroker,
} from "./support/control-harness.js";

const V1 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
const V2 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b02";

function agentSuite(fx: BrokerFixture): void {
  const s = suite(`agent via ${fx.name}`);
  let b: RunningBroker;
  let dir: string;
  s.before(async () => {
    b = await fx.start([...HVS, ...NVE_POOL], NVE_POOL);
  });
  s.after(async () => {
    await b?.close();
  });
  s.before.each(() => {
    dir = mkdtempSync("/tmp/nvl-agent-");
  });
  s.after.each(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const daemonArgs = (nve: string, hv: string) => {
    const c = b.creds(hv);
    return {
      args: ["agent", "run", "--broker", b.url, "--hv", hv, "--nve", nve, "--state", `${dir}/${hv}.json`, "--socket", `${dir}/${hv}.sock`, "--mqtt", String(b.protocolVersion)],
      env: (c.password ? { NVEDGE_MQTT_PASSWORD: c.password } : {}) as Record<string, string>,
    };
  };

  s("an agent daemon killed with SIGKILL is held for agentHoldMs, then purged; restarted, it resyncs its state file (PROTOCOL.md §3, Req-5)", async () => {
    const nve = nextNve();
    const run = await startNve(b, { config: baseConfig({}, nve) });
    const d = daemonArgs(nve, "hv-1");
    let agent = await spawnNvedge(d.args, d.env);
    try {
      const sock = `${dir}/hv-1.sock`;
      await until(async () => daemonRequest(sock, { cmd: "show" }).then(() => true, () => false), 10000, "agent daemon socket");
      const r = (await daemonRequest(sock, { cmd: "attach", vnic: V1, vn: { alias: "blue" }, addrs: [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"] }] })) as any;
      assert.is(r.tag, 1);
      assert.is(run.svc.core.viewHv("hv-1").vnics.length, 1);
      agent.child.kill("SIGKILL");
      await agent.exited;
      await until(() => (run.svc.core.ports() as any[])[0].hypervisors[0].state === "offline", 10000, "the will");
      // hv-2's session (hello first, PROTOCOL.md §2) for the read-only requests below
      assert.is((await run.svc.core.request("hv-2", Buffer.from(JSON.stringify({ id: "h", op: "hello", agent: "probe" })))).ok, true);
      const mark = run.prog.mark();
      run.clock.advance(29_000);
      // a read-only request through the NVE's queue: answered after anything the advance fired
      assert.is((await run.svc.core.request("hv-2", Buffer.from(JSON.stringify({ id: "q", op: "vn.profile", vn: { alias: "blue" } })))).ok, true);
      assert.is(run.svc.core.viewHv("hv-1").vnics.length, 1, "held: still forwarding");
      assert.equal(run.prog.since(mark), []);
      run.clock.advance(1_000);
      await until(() => run.svc.core.viewHv("hv-1").vnics.length === 0, 5000, "purge");
      assert.ok(run.logs.some((l) => l.includes("agent hv-1: not back within agentHoldMs (30000 ms): 1 VNICs deactivated (shutdown)")));
      // the state file kept the desired state; a restarted daemon syncs it back
      assert.equal(JSON.parse(readFileSync(`${dir}/hv-1.json`, "utf8")).vnics.map((v: any) => v.vnic), [V1]);
      agent = await spawnNvedge(d.args, d.env);
      await until(() => run.svc.core.viewHv("hv-1").vnics.length === 1, 10000, "resync from the state file");
      assert.equal((run.svc.core.viewHv("hv-1").vnics[0] as any).vns[0].addrs, [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"] }]);
    } finally {
      await agent.stop();
      await run.stop();
    }
  });

  s("one-shot commands talk to the daemon: attach, show, deactivate, activate, detach; errors exit 1 with the code, bad usage exits 2", async () => {
    const nve = nextNve();
    const run = await startNve(b, { config: baseConfig({}, nve) });
    const d = daemonArgs(nve, "hv-3");
    const agent = await spawnNvedge(d.args, d.env);
    const sock = `${dir}/hv-3.sock`;
    try {
      await until(async () => daemonRequest(sock, { cmd: "show" }).then(() => true, () => false), 10000, "agent daemon socket");
      let r = await runNvedge(["agent", "attach", "--socket", sock, "--vnic", V1, "--vn", "blue", "--mac", "02:00:5e:00:00:01", "--ip", "10.0.0.1", "--tag", "42"]);
      assert.is(r.code, 0, r.err);
      assert.match(r.out, /attached: VN blue tag 42/);
      r = await runNvedge(["agent", "show", "--socket", sock]);
      assert.is(r.code, 0, r.err);
      assert.match(r.out, /0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01\s+active\s+blue\s+42\s+02:00:5e:00:00:01\s+10.0.0.1/);
      r = await runNvedge(["agent", "deactivate", "--socket", sock, "--vnic", V1, "--reason", "suspend"]);
      assert.is(r.code, 0, r.err);
      assert.is((run.svc.core.viewHv("hv-3").vnics[0] as any).state, "associated");
      r = await runNvedge(["agent", "activate", "--socket", sock, "--vnic", V1]);
      assert.is(r.code, 0, r.err);
      r = await runNvedge(["agent", "attach", "--socket", sock, "--vnic", V2, "--vn", "100", "--mac", "02:00:5e:00:00:01"]);
      assert.is(r.code, 1);
      assert.match(r.err, /address-conflict/);
      r = await runNvedge(["agent", "attach", "--socket", sock, "--vnic", V2, "--vn", "100", "--mac", "01:00:5e:00:00:01"]);
      assert.is(r.code, 2);
      assert.match(r.err, /--mac 01:00:5e:00:00:01/);
      r = await runNvedge(["agent", "deactivate", "--socket", sock, "--vnic", V1, "--reason", "nap"]);
      assert.is(r.code, 2);
      const show = JSON.parse((await runNvedge(["agent", "show", "--json", "--socket", sock])).out);
      assert.equal(show.desired.map((x: any) => [x.vnic, x.state]), [[V1, "active"]]);
      r = await runNvedge(["agent", "detach", "--socket", sock, "--vnic", V1]);
      assert.is(r.code, 0, r.err);
      assert.is(run.svc.core.viewHv("hv-3").vnics.length, 0);
      r = await runNvedge(["agent", "show", "--socket", `${dir}/nobody.sock`]);
      assert.is(r.code, 1);
      assert.match(r.err, /cannot reach the agent daemon/);
    } finally {
      await agent.stop();
      await run.stop();
    }
  });

  s("the library reconnects on its own and sends hello + sync; nothing changes at the NVE (PROTOCOL.md §3)", async () => {
    const nve = nextNve();
    const run = await startNve(b, { config: baseConfig({}, nve) });
    const a = await startAgent(b, "hv-2", { nve });
    try {
      await a.attach(V1, { alias: "red" }, [{ mac: "02:00:5e:00:00:01" }]);
      const mark = run.prog.mark();
      const before = JSON.stringify(run.svc.core.viewHv("hv-2"));
      (a.client as any).stream.destroy(); // connection lost (not a clean disconnect)
      await until(() => a.syncs >= 2, 10000, "resync after the reconnect");
      assert.equal(run.prog.since(mark), []);
      assert.is(JSON.stringify(run.svc.core.viewHv("hv-2")), before);
      await until(() => (run.svc.core.ports() as any[])[0].hypervisors[1].state === "online", 5000, "online again");
      assert.is((run.svc.core.ports() as any[])[0].hypervisors[1].holdUntil, undefined, "the agent hold was cancelled");
    } finally {
      await a.stop();
      await run.stop();
    }
  });

  s.run();
}

for (const fx of brokerFixtures()) agentSuite(fx);
