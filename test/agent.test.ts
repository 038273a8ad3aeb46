// The agent side (PROTOCOL.md §3): the `nvedge agent run` daemon as a real
// process (killed with SIGKILL), its control socket and one-shot commands,
// its state file, and the library's auto-reconnect — against an in-process NVE
// (fake clock) through every broker fixture.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import mqtt from "mqtt";
import { daemonRequest } from "../host/agent/daemon.js";
import type { Agent } from "../host/agent/agent.js";
import { topics } from "../host/protocol/topics.js";
import {
  HVS, NVE_POOL, baseConfig, brokerFixtures, mosquittoAvailable, mosquittoUnixFixture, nextNve, rawClient, rejects, runNvedge, spawnNvedge, startAgent, startNve, until,
  type BrokerFixture, type RunningBroker,
} from "./support/control-harness.js";
import { requireTool } from "./support/tools.js";

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

  // both MQTT clients the library can use (AgentOptions.mqttClient: the control bench's agents use the lean one)
  for (const mqttClient of ["mqttjs", "lean"] as const)
  s(`the library (${mqttClient} client) reconnects on its own and sends hello + sync; nothing changes at the NVE (PROTOCOL.md §3)`, async () => {
    const nve = nextNve();
    const run = await startNve(b, { config: baseConfig({}, nve) });
    const a = await startAgent(b, "hv-2", { nve, mqttClient });
    try {
      assert.is(a.client.constructor.name, mqttClient === "lean" && !/^wss?:/.test(b.url) ? "LeanMqttClient" : "MqttClient");
      const r = await a.attach(V1, { alias: "red" }, [{ mac: "02:00:5e:00:00:01" }]);
      assert.is(r.tag, 1);
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

  // ---- request timeout and retry (host/agent/agent.ts request()) ----------

  /**
   * `nvedge run --io none` as a process of its own, so that it can be stopped
   * for real (SIGSTOP: it reads nothing and answers nothing, as a hung NVE) and
   * continued (SIGCONT). Resolves once it answers a hello (from hv-3).
   */
  const spawnNve = async (nve: string) => {
    writeFileSync(`${dir}/nve.json`, JSON.stringify({
      nve, underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
      ports: [{ name: "eth2", hypervisors: ["hv-1", "hv-2"] }, { name: "eth3", hypervisors: ["hv-3"] }, { name: "eth4", hypervisors: ["hv-4"] }],
      vns: [{ id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan", mtu: 1450 } }],
    }));
    const c = b.creds(nve);
    const p = await spawnNvedge(["run", "--config", `${dir}/nve.json`, "--io", "none", "--memory-store", "--store", dir, "--admin-socket", `${dir}/admin.sock`,
      "--broker", b.url, "--mqtt", String(b.protocolVersion)], (c.password ? { NVEDGE_MQTT_PASSWORD: c.password } : {}) as Record<string, string>);
    const probe = await rawClient(b, "hv-3", nve);
    try {
      await until(async () => (await probe.send(JSON.stringify({ id: "h", op: "hello", agent: "probe" }), "h", "hv-3", 1000).catch(() => undefined))?.ok === true,
        20_000, `nvedge run serving (stderr: ${p.err().slice(-500)})`);
    } catch (e) {
      await p.stop("SIGKILL");
      throw e;
    } finally {
      await probe.close();
    }
    return p;
  };

  /**
   * Every request published on hv's request topic of the NVE, as the NVE's
   * broker delivers them (a second session of the NVE's identity). `fence()`
   * publishes a marker request as hv (a client of its own) and waits for it:
   * whatever the agent sent before it has arrived by then (one topic, in order
   * per publisher; the agent's sends precede the marker).
   */
  const requestSpy = async (nve: string, hv: string) => {
    const c = await mqtt.connectAsync(b.url, { protocolVersion: b.protocolVersion, ...b.creds(nve), clientId: `${nve}-spy-${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 0 });
    const seen: { id: string; op: string; raw: string }[] = [];
    c.on("message", (_t, payload) => {
      const m = JSON.parse(payload.toString());
      seen.push({ id: m.id, op: m.op, raw: payload.toString() });
    });
    const granted = await c.subscribeAsync(topics.req(nve, hv), { qos: 1 });
    assert.is(granted[0].qos, 1, "the NVE's identity reads its request topics");
    const marker = await mqtt.connectAsync(b.url, { protocolVersion: b.protocolVersion, ...b.creds(hv), clientId: `${hv}-marker-${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 0 });
    let n = 0;
    return {
      seen,
      /** The requests seen before a marker published now. */
      async fence() {
        const id = `marker-${++n}`;
        await marker.publishAsync(topics.req(nve, hv), JSON.stringify({ id, op: "vn.profile", vn: { alias: "blue" } }), { qos: 1 });
        await until(() => seen.some((x) => x.id === id), 5000, `the marker ${id}`);
        return seen.slice(0, seen.findIndex((x) => x.id === id)).filter((x) => !x.id.startsWith("marker-"));
      },
      async close() {
        await c.endAsync(true);
        await marker.endAsync(true);
      },
    };
  };

  /** An NVE process, an agent of hv-4 with a short request timeout (its log kept), a spy on its requests; all stopped after `fn`. */
  const withStoppableNve = async (o: { requestTimeoutMs: number; retries: number }, fn: (x: {
    nve: Awaited<ReturnType<typeof spawnNve>>; agent: Agent; logs: string[]; spy: Awaited<ReturnType<typeof requestSpy>>;
  }) => Promise<void>) => {
    const name = nextNve();
    const nve = await spawnNve(name);
    const logs: string[] = [];
    let agent: Agent | undefined, spy: Awaited<ReturnType<typeof requestSpy>> | undefined;
    try {
      agent = await startAgent(b, "hv-4", { nve: name, ...o, log: (l) => logs.push(l) });
      spy = await requestSpy(name, "hv-4");
      await fn({ nve, agent, logs, spy });
    } finally {
      nve.child.kill("SIGCONT"); // a stopped process does not act on SIGTERM
      await agent?.stop().catch(() => {});
      await spy?.close().catch(() => {});
      await nve.stop();
    }
  };

  const resends = (logs: string[]) => logs.filter((l) => / sending it again$/.test(l));

  s("an NVE that answers nothing (stopped): the request goes again with the same id `retries` times, then fails with timeout naming op, id and attempts; continued, the NVE answers the next request (PROTOCOL.md §2)", async () => {
    await withStoppableNve({ requestTimeoutMs: 300, retries: 2 }, async ({ nve, agent, logs, spy }) => {
      assert.is((await agent.vnProfile({ alias: "blue" })).vni, 5000, "answered while running");
      await spy.fence();
      spy.seen.length = 0;
      nve.child.kill("SIGSTOP");
      const e = await rejects(agent.vnProfile({ alias: "blue" }), "timeout");
      const m = /^timeout: no response to vn\.profile (hv-4-\d+) within 300 ms \(3 attempts\)$/.exec(e.message);
      assert.ok(m, e.message);
      const id = m![1];
      assert.equal(resends(logs), [1, 2].map(() => `no response to vn.profile ${id} within 300 ms: sending it again`));
      // on the wire: the first send and two retries, byte for byte the same request, and nothing more
      const sent = await spy.fence();
      assert.equal(sent.map((x) => x.id), [id, id, id]);
      assert.equal(new Set(sent.map((x) => x.raw)).size, 1, "each retry is the same request (same id: every op is idempotent)");
      nve.child.kill("SIGCONT");
      // the NVE answers again: the next request succeeds (after the late answers to the three copies, in order on one topic)
      assert.is((await agent.vnProfile({ alias: "blue" })).vni, 5000);
      assert.equal(logs.filter((l) => /late answer/.test(l)), [], "a late answer to a read-only op needs no sync");
      assert.is(agent.syncs, 1);
    });
  });

  s("a retry answered: the NVE stopped through the first attempt and continued, the attach succeeds once (same id, idempotent) and no sync follows", async () => {
    await withStoppableNve({ requestTimeoutMs: 400, retries: 8 }, async ({ nve, agent, logs, spy }) => {
      nve.child.kill("SIGSTOP");
      const attach = agent.attach(V1, { alias: "blue" }, [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"] }]);
      await until(() => resends(logs).length >= 1, 5000, "the first retry");
      nve.child.kill("SIGCONT");
      const r = await attach;
      assert.is(r.vni, 5000);
      const sent = await spy.fence();
      assert.ok(sent.length >= 2, `sent ${sent.length} times`);
      assert.equal(new Set(sent.map((x) => x.id)).size, 1, "every attempt carries the same id");
      assert.equal(sent.map((x) => x.op), sent.map(() => "vnic.attach"));
      // the NVE applied it once: one VNIC, its address once, the tag the agent holds
      const view = await agent.show();
      assert.equal((view.vnics as any[]).map((v) => [v.vnic, v.state, v.vns.map((x: any) => [x.vn.id, x.tag, x.addrs])]),
        [[V1, "active", [[100, r.tag, [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"] }]]]]]);
      assert.equal([...agent.desired.keys()], [V1]);
      // the answers to the retries came before show's (one topic, in order): none was taken for a late answer
      assert.equal(logs.filter((l) => /late answer/.test(l)), []);
      assert.is(agent.syncs, 1);
    });
  });

  s("an attach that timed out but which the NVE applies later (continued): its late answer makes the agent sync, so the NVE does not keep what the caller was told failed (PROTOCOL.md §3)", async () => {
    await withStoppableNve({ requestTimeoutMs: 300, retries: 1 }, async ({ nve, agent, logs }) => {
      nve.child.kill("SIGSTOP");
      const e = await rejects(agent.attach(V1, { alias: "blue" }, [{ mac: "02:00:5e:00:00:01" }]), "timeout");
      const id = /no response to vnic\.attach (\S+) within 300 ms \(2 attempts\)/.exec(e.message)?.[1];
      assert.ok(id, e.message);
      assert.equal([...agent.desired.keys()], [], "the agent does not hold what failed");
      nve.child.kill("SIGCONT");
      // the NVE now applies the queued attach and answers it: too late, so the agent syncs
      await until(() => agent.syncs === 2, 10_000, "the sync after the late answer");
      assert.ok(logs.some((l) => l === `late answer to vnic.attach ${id}, which timed out: hello + sync so the NVE holds exactly the desired state`), logs.join("\n"));
      assert.equal((await agent.show()).vnics, [], "the NVE holds exactly the desired state: nothing");
      // and the agent works on: the caller's retry succeeds
      const r = await agent.attach(V1, { alias: "blue" }, [{ mac: "02:00:5e:00:00:01" }]);
      assert.equal(((await agent.show()).vnics as any[]).map((v) => [v.vnic, v.vns[0].tag]), [[V1, r.tag]]);
    });
  });

  s("a change requested while a resync is under way waits for its sync, which would otherwise undo it at the NVE (PROTOCOL.md §3)", async () => {
    const nve = nextNve();
    const run = await startNve(b, { config: baseConfig({}, nve) });
    const a = await startAgent(b, "hv-1", { nve });
    try {
      // the library's default client: the lean one, but over WebSockets (issue 15)
      assert.is(a.client.constructor.name, /^wss?:/.test(b.url) ? "MqttClient" : "LeanMqttClient");
      // hello goes first; the attach, sent before hello's answer, would reach
      // the NVE between hello and a sync whose snapshot of the desired state
      // (taken at hello's answer) lacks it
      const [, r] = await Promise.all([a.resync(), a.attach(V1, { alias: "blue" }, [{ mac: "02:00:5e:00:00:01" }])]);
      assert.is(a.syncs, 2);
      assert.equal([...a.desired.keys()], [V1]);
      assert.equal(((await a.show()).vnics as any[]).map((v) => [v.vnic, v.vns[0].tag]), [[V1, r.tag]], "the NVE holds the attach");
      assert.equal(run.svc.core.viewHv("hv-1").vnics.map((v: any) => v.vnic), [V1]);
    } finally {
      await a.stop();
      await run.stop();
    }
  });

  s.run();
}

for (const fx of brokerFixtures()) agentSuite(fx);
// and through Mosquitto's Unix socket (mqtt+unix://, issue 15: a broker on the same host without TCP), the NVE and every agent on it
if (process.env.NVEDGE_TEST_MOSQUITTO_UNIX !== "1" && requireTool("mosquitto", mosquittoAvailable, "the agent suite through Mosquitto's Unix socket")) agentSuite(mosquittoUnixFixture());
