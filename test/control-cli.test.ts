// `nvedge run` and `nvedge show` as real processes (INTERFACES.md): embedded
// broker, LMDB store, admin socket; state survives a restart (PROTOCOL.md §3);
// operator actions through the admin socket reach the agent (Req-6, Req-9).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { adminRequest } from "../host/control/admin.js";
import { Agent } from "../host/agent/agent.js";
import { freePort, runNvedge, spawnNvedge, until } from "./support/control-harness.js";

const V1 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
const config = (nve: string) => ({
  nve,
  underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
  ports: [{ name: "eth2", hypervisors: ["hv-1", "hv-2"] }],
  vns: [{ id: 100, name: "6f1c3c52-6c0e-4c5e-9a57-0c8f2a2f6a10", alias: "blue", vni: 5000, profile: { encap: "vxlan", mtu: 1450 } }],
  remotes: [{ nve: "nve-b", ip: "192.0.2.2", vns: [100], addrs: [{ vn: 100, mac: "02:00:5e:00:00:02", ips: ["10.0.0.2"] }] }],
});

test("nvedge run (embedded broker, LMDB store) + nvedge show; restart restores bindings; admin removes a VNIC and the agent is told (Req-6)", async () => {
  const dir = mkdtempSync("/tmp/nvl-run-");
  const port = await freePort();
  const cfgFile = `${dir}/nve.json`;
  writeFileSync(cfgFile, JSON.stringify(config("nve-cli")));
  const args = ["run", "--config", cfgFile, "--store", `${dir}/st`, "--listen", `127.0.0.1:${port}`, "--io", "none"];
  const sock = `${dir}/st/nvedge.sock`;
  let nve = await spawnNvedge(args);
  let agent: Agent | undefined;
  try {
    await until(async () => adminRequest(sock, { cmd: "show", what: "vns" }).then(() => true, () => false), 20000, `admin socket (${nve.err()})`);
    agent = await Agent.start({ broker: { url: `mqtt://127.0.0.1:${port}`, reconnectPeriodMs: 200 }, hv: "hv-1", nve: "nve-cli", requestTimeoutMs: 5000 });
    const r = await agent.attach(V1, { alias: "blue" }, [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"] }], { tag: 12 });
    assert.is(r.tag, 12);
    let s = await runNvedge(["show", "bindings", "--json", "--store", `${dir}/st`]);
    assert.is(s.code, 0, s.err);
    const rows = JSON.parse(s.out);
    assert.equal(rows.map((x: any) => [x.mac, x.where, x.tag ?? null]), [["02:00:5e:00:00:01", "local", 12], ["02:00:5e:00:00:02", "remote", null]]);
    s = await runNvedge(["show", "ports", "--store", `${dir}/st`]);
    assert.match(s.out, /eth2\s+hv-1:online hv-2:unknown\s+12→100\(1\)/);
    s = await runNvedge(["show", "counters", "--json", "--store", `${dir}/st`]);
    assert.is(JSON.parse(s.out).frames.rx, 0);
    s = await runNvedge(["show", "vns", "--store", `${dir}/st`]);
    assert.match(s.out, /100\s+blue\s+6f1c3c52-6c0e-4c5e-9a57-0c8f2a2f6a10\s+5000\s+vxlan\s+1450\s+eth2:12\(1\)/);

    // a restart: the bindings come back from the LMDB store before any agent speaks
    await agent.stop();
    agent = undefined;
    await nve.stop();
    assert.is(await nve.exited, 0, nve.err());
    nve = await spawnNvedge(args);
    await until(async () => adminRequest(sock, { cmd: "show", what: "vns" }).then(() => true, () => false), 20000, "admin socket after restart");
    const after = (await adminRequest(sock, { cmd: "show", what: "bindings" })) as any[];
    assert.equal(after.find((x) => x.where === "local"), { vn: 100, mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"], where: "local", port: "eth2", tag: 12, vnic: V1, hv: "hv-1", state: "active" });

    // NVE-initiated removal through the admin socket reaches the agent as vn.disconnected
    agent = await Agent.start({ broker: { url: `mqtt://127.0.0.1:${port}`, reconnectPeriodMs: 200 }, hv: "hv-1", nve: "nve-cli", requestTimeoutMs: 5000 });
    await agent.attach(V1, { alias: "blue" }, [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"] }]);
    const events: any[] = [];
    agent.on("event", (e) => events.push(e));
    await adminRequest(sock, { cmd: "vnic.remove", vnic: V1, reason: "operator" });
    await until(() => events.length === 1, 5000, "event");
    assert.equal(events[0], { event: "vn.disconnected", vnic: V1, vn: { id: 100, name: "6f1c3c52-6c0e-4c5e-9a57-0c8f2a2f6a10", alias: "blue" }, reason: "operator" });
    const err = await adminRequest(sock, { cmd: "vnic.remove", vnic: V1 }).catch((e: any) => e) as any;
    assert.is(err.code, "unknown-vnic");
    const bad = await adminRequest(sock, { cmd: "explode" }).catch((e: any) => e) as any;
    assert.is(bad.code, "unknown-op");
  } finally {
    await agent?.stop().catch(() => {});
    await nve.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nvedge run --broker-thread: the embedded broker on its own thread serves agents; SIGTERM stops everything (exit 0)", async () => {
  const dir = mkdtempSync("/tmp/nvl-run-");
  const port = await freePort();
  writeFileSync(`${dir}/nve.json`, JSON.stringify(config("nve-thr")));
  const nve = await spawnNvedge(["run", "--config", `${dir}/nve.json`, "--memory-store", "--store", dir, "--listen", `127.0.0.1:${port}`, "--broker-thread", "--io", "none"]);
  let agent: Agent | undefined;
  try {
    await until(async () => adminRequest(`${dir}/nvedge.sock`, { cmd: "show", what: "vns" }).then(() => true, () => false), 20000, `admin socket (${nve.err()})`);
    agent = await Agent.start({ broker: { url: `mqtt://127.0.0.1:${port}`, reconnectPeriodMs: 200 }, hv: "hv-2", nve: "nve-thr", requestTimeoutMs: 5000 });
    assert.is((await agent.attach(V1, { id: 100 }, [{ mac: "02:00:5e:00:00:01" }])).tag, 1);
    const rows = (await adminRequest(`${dir}/nvedge.sock`, { cmd: "show", what: "bindings" })) as any[];
    assert.is(rows.find((r) => r.where === "local").hv, "hv-2");
    assert.match(nve.err(), /auth ok: method=username identity=hv-2/, "the broker thread's log reaches the NVE's log");
    await agent.stop();
    agent = undefined;
    await nve.stop();
    assert.is(await nve.exited, 0);
  } finally {
    await agent?.stop().catch(() => {});
    await nve.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nvedge run / show errors: bad config exits 2 naming the file and key; no NVE behind the socket exits 1", async () => {
  const dir = mkdtempSync("/tmp/nvl-run-");
  try {
    writeFileSync(`${dir}/bad.json`, JSON.stringify({ ...config("nve-x"), ports: [{ name: "eth2", hypervisors: ["bad hv"] }] }));
    let r = await runNvedge(["run", "--config", `${dir}/bad.json`, "--store", `${dir}/st`]);
    assert.is(r.code, 2);
    assert.match(r.err, /bad\.json: ports\.0\.hypervisors\.0/);
    r = await runNvedge(["run", "--config", `${dir}/bad.json`, "--io", "dpdk"]);
    assert.is(r.code, 2);
    r = await runNvedge(["show", "bindings", "--store", `${dir}/none`]);
    assert.is(r.code, 1);
    assert.match(r.err, /cannot reach the NVE's admin socket/);
    r = await runNvedge(["show", "everything"]);
    assert.is(r.code, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
