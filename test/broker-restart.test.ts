// Broker restart under a running system (issue 17, "Untested recovery"): an
// NVE (NveService + its IMA client), the IMA, a second NVE's IMA client and an
// agent, all with reconnection on, through the embedded aedes broker and
// through Mosquitto. The broker is stopped mid-session and started again on the
// same port with nothing kept (no sessions, no retained messages: both brokers
// run without persistence). Everyone must come back by themselves: the NVE
// re-announces its retained status (PROTOCOL.md §3) with the same bootId, the
// IMA republishes its retained tree (PROTOCOL.md §6), the agent says hello and
// resyncs, no binding is lost anywhere, and a change made after the restart
// reaches the other NVE. Then a broker that is down when they all start.
import { suite } from "uvu";
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
import { MemoryStore } from "../host/store/memory.js";
import { Agent } from "../host/agent/agent.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { baseConfig, freePort, mosquittoAvailable, until, RecordingProgrammer } from "./support/control-harness.js";
import { startMosquitto } from "./support/mosquitto.js";
import { requireTool } from "./support/tools.js";

const U = (n: number) => `00000000-0000-4000-8000-${n.toString(16).padStart(12, "0")}`;
const M = (n: number) => `02:00:5e:00:0a:${n.toString(16).padStart(2, "0")}`;
const MB = "02:00:5e:00:0b:77";
const BLUE = { id: 100, alias: "blue", vni: 5000, profile: { encap: "vxlan" as const, mtu: 1450 } };
const IDS = ["nve-a", "nve-b", "ima", "hv-1"];
const pw = (id: string) => `pw-${id}-restart`;

interface Broker { url: string; creds(id: string): { username: string; password?: string }; stop(): Promise<void> }
type Kind = { name: string; start(port: number): Promise<Broker> };

const kinds: Kind[] = [{
  name: "embedded aedes",
  async start(port) {
    const b = await startEmbeddedBroker({ host: "127.0.0.1", port, nves: ["nve-a", "nve-b"], imas: ["ima"] });
    return { url: b.url, creds: (id) => ({ username: id }), stop: () => b.close() };
  },
}];
if (requireTool("mosquitto", mosquittoAvailable, "the broker restart test over Mosquitto"))
  kinds.push({
    name: "mosquitto",
    async start(port) {
      const m = await startMosquitto({ users: Object.fromEntries(IDS.map((i) => [i, pw(i)])), nves: ["nve-a", "nve-b"], imas: ["ima"], port });
      return { url: m.url, creds: (id) => ({ username: id, password: pw(id) }), stop: () => m.close() };
    },
  });

/**
 * The retained message on `topic` as a fresh subscriber `as` sees it (bounded), "" when none arrives:
 * hv-1 may read the NVE's status, nve-b the IMA's tree (the brokers' ACLs).
 */
async function retained(b: Broker, topic: string, as = topic.startsWith("nvo3/v1/ima/") ? "nve-b" : "hv-1", ms = 300): Promise<string> {
  const c = await mqtt.connectAsync(b.url, { ...b.creds(as), clientId: `${as}-watch-${Math.random().toString(16).slice(2, 8)}`, reconnectPeriod: 0 });
  try {
    const got = new Promise<string>((res) => c.on("message", (t, p) => { if (t === topic) res(p.toString()); }));
    await c.subscribeAsync(topic, { qos: 1 });
    return await Promise.race([got, new Promise<string>((res) => setTimeout(() => res(""), ms))]);
  } finally {
    await c.endAsync(true);
  }
}

/**
 * The whole system on broker `b`: the IMA first (so no request reaches the broker before the IMA's
 * subscription), then the rest; `together`: everything at once (each part waits for the broker).
 */
async function system(b: Broker, dir: string, together = false, logs: string[] = []) {
  const parts: { stop(): Promise<unknown> }[] = [];
  const log = (who: string) => (l: string) => logs.push(`${who}: ${l}`);
  const conn = (id: string) => ({ url: b.url, ...b.creds(id), reconnectPeriodMs: 100 });
  const config = baseConfig({ nve: "nve-a", ima: { id: "ima" } }, "nve-a");
  // the IMA accepts only the NVEs it lists, each with its one underlay IP (PROTOCOL.md §6)
  const nves = [{ id: "nve-a", ip: config.underlay.ip }, { id: "nve-b", ip: "192.0.2.2" }];
  const imaP = ImaService.start({ settings: { nves }, broker: conn("ima"), store: join(dir, "ima"), seed: [BLUE], log: log("ima") });
  if (!together) await imaP;
  const [ima, nve, nveB, agent] = await Promise.all([
    imaP,
    (async () => {
      const store = await MemoryStore.open();
      const prog = await RecordingProgrammer.create();
      const svc = await NveService.start({ config, store, programmer: prog, log: log("nve-a"), broker: conn("nve-a") });
      const wired = await startNveIma({ config, core: svc.core, client: svc.client, programmer: prog, store, log: log("nve-a") });
      return { svc, prog, wired };
    })(),
    (async () => {
      const ops: DpOp[] = [];
      const c = await ImaClient.start({ nve: "nve-b", ip: "192.0.2.2", broker: conn("nve-b"), programmer: { apply: async (o) => { ops.push(...o); } },
        served: [100], local: [{ vn: 100, mac: MB, ips: ["10.0.0.77"], port: "p1", active: true }], log: log("nve-b") });
      return { c, ops };
    })(),
    Agent.start({ broker: conn("hv-1"), hv: "hv-1", nve: "nve-a", requestTimeoutMs: 3000, log: log("hv-1") }),
  ]);
  parts.push(agent, { stop: () => nve.wired.stop() }, nve.svc, nveB.c, ima);
  const atB = (mac: string) => nveB.ops.some((o) => o.op === "mac.remote" && o.mac === mac);
  const atA = (mac: string) => nve.prog.since(0).some((o) => o.op === "mac.remote" && o.mac === mac);
  return {
    ima, nve, nveB, agent, logs, atA, atB,
    async stop() { for (const p of parts) await p.stop().catch(() => {}); },
  };
}

/** until(), and on a timeout the system's last log lines in the error. */
const waitLogged = (logs: string[]) => (cond: () => boolean | Promise<boolean>, ms: number, what: string) =>
  until(cond, ms, what).catch((e: Error) => { throw new Error(`${e.message}; last log lines:\n${logs.slice(-40).join("\n")}`); });

const s = suite("broker restart: NVE, IMA and agents recover by themselves");

for (const k of kinds) {
  s(`${k.name}: stopped mid-session and started again empty: status and IMA tree republished, agent resynced, no binding lost, new changes flow`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "nvl-restart-"));
    const port = await freePort();
    let b: Broker | undefined = await k.start(port);
    let sys: Awaited<ReturnType<typeof system>> | undefined;
    try {
      sys = await system(b, dir);
      const { nve, agent } = sys;
      const wait = waitLogged(sys.logs);
      await agent.attach(U(1), { alias: "blue" }, [{ mac: M(1), ips: ["10.0.0.1"] }]);
      await wait(() => sys!.atB(M(1)) && sys!.atA(MB), 10_000, "bindings exchanged through the IMA");
      const bootId = nve.svc.core.settings.bootId;
      const syncs = agent.syncs;
      const bOps = sys.nveB.ops.length;

      await b.stop();
      b = undefined;
      await wait(() => !nve.svc.client.connected && !agent.client.connected, 10_000, "everyone to see the broker gone");
      b = await k.start(port);

      // the NVE: reconnected, its retained online status back with the same bootId (no restart of its own)
      await wait(async () => (await retained(b!, "nvo3/v1/nve/nve-a/status")).includes(bootId), 15_000, "the NVE's status re-announced");
      // the agent: reconnected, said hello and synced again
      await wait(() => agent.syncs > syncs, 15_000, "the agent's resync");
      // the IMA: its retained tree republished (the broker kept none)
      await wait(async () => JSON.parse((await retained(b!, `nvo3/v1/ima/bind/100/${M(1)}`)) || "{}").nve === "nve-a", 15_000, "the IMA's binding republished");
      await wait(async () => (await retained(b!, "nvo3/v1/ima/vtep/100/nve-b")) !== "", 15_000, "the IMA's flood list republished");
      // no binding lost: the NVE's model, nve-a's and nve-b's data planes, nothing withdrawn meanwhile
      assert.is(nve.svc.core.viewHv("hv-1").vnics.length, 1);
      assert.ok(sys.atA(MB) && sys.atB(M(1)));
      assert.not.ok(sys.nveB.ops.slice(bOps).some((o) => o.op === "mac.del" && o.mac === M(1)), "nve-b never withdrew M1");
      assert.not.ok(nve.prog.since(0).some((o) => o.op === "mac.del"), "nve-a never withdrew anything");
      assert.is(nve.svc.core.settings.bootId, bootId);
      // and the system works: a new VNIC after the restart reaches nve-b through the IMA
      await agent.attach(U(2), { alias: "blue" }, [{ mac: M(2), ips: ["10.0.0.2"] }]);
      await wait(() => sys!.atB(M(2)), 10_000, "the new binding at nve-b");
      assert.ok(sys.logs.some((l) => l.startsWith("ima: ") && l.includes("reconnected")), "the IMA logged its reconnect");
    } finally {
      await sys?.stop();
      await b?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  s(`${k.name}: down when everyone starts: they wait for it, then serve`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "nvl-restart-"));
    const port = await freePort();
    let b: Broker | undefined;
    let sys: Awaited<ReturnType<typeof system>> | undefined;
    try {
      // the clients are given the URL of a broker that is not there yet
      const late: Broker = { url: `mqtt://127.0.0.1:${port}`, creds: (id) => (k.name.startsWith("embedded") ? { username: id } : { username: id, password: pw(id) }), stop: async () => {} };
      const logs: string[] = []; // filled while the parts are still starting
      let failed: unknown;
      const starting = system(late, dir, true, logs).catch((e) => { failed = e; throw e; });
      starting.catch(() => {});
      // each part meets the refused connection and keeps trying (the agent logs its MQTT errors as they come)
      const tried = (who: string) => logs.some((l) => l.startsWith(`${who}: `) && /ECONNREFUSED/.test(l));
      await until(() => failed !== undefined || ["ima", "nve-a", "nve-b", "hv-1"].every(tried), 10_000, "every part to try the missing broker");
      assert.is(failed, undefined, `a part gave up without a broker: ${failed}`);
      b = await k.start(port);
      sys = await starting;
      await sys.agent.attach(U(3), { alias: "blue" }, [{ mac: M(3) }]);
      // nve-b's first IMA request may have reached the broker before the IMA's subscription: it is retried (10 s)
      await until(() => sys!.atB(M(3)) && sys!.atA(MB), 25_000, "bindings exchanged once the broker is up");
    } finally {
      await sys?.stop();
      await b?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

s.run();
