// IMA high availability (issue 15, host/ima/ha.ts): two `nvedge ima run`
// processes with `ha`, each with its own LMDB store, elect the active one
// through the broker; three NVEs (IMA clients, host/ima/client.ts, as in
// ima-client.test.ts) migrate MACs among themselves 1,000 times, the way the
// NVE does it (pre-associate at the destination: bind.prepare; hold at the
// source; activate at the destination: the move; the source told `moved`
// withdraws its own). In the middle the active IMA is SIGKILLed: the standby
// takes over, and every NVE ends with the same bindings, and every MAC with
// the same mobility sequence (one per move: none lost, none reused, RFC 7432
// §15), as in a run without the kill. On the embedded broker and on Mosquitto.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startEmbeddedBroker } from "../host/broker/embedded.js";
import { ImaClient, type LocalBinding } from "../host/ima-client/client.js";
import type { DpOp } from "../host/dataplane/ops.js";
import type { BrokerConnection } from "../host/control/service.js";
import { startMosquitto } from "./support/mosquitto.js";

const BIN = fileURLToPath(new URL("../../bin/nvedge.js", import.meta.url));
const NVES = ["nve-a", "nve-b", "nve-c"];
const IP: Record<string, string> = { "nve-a": "192.0.2.1", "nve-b": "192.0.2.2", "nve-c": "192.0.2.3" };
const USERS: Record<string, string> = { ima: "pw-ima", "nve-a": "pw-a", "nve-b": "pw-b", "nve-c": "pw-c" };
const MIGRATIONS = 1000;
const MACS = 40;
const LANES = 8;
const macOf = (i: number) => `02:00:5e:01:00:${i.toString(16).padStart(2, "0")}`;

interface Ima { name: string; child: ChildProcess; log: string; exited: Promise<void> }

function startIma(name: string, priority: number, url: string, dir: string, mosquitto: boolean): Ima {
  const cfg = join(dir, `${name}.json`);
  writeFileSync(cfg, JSON.stringify({
    ima: "ima", nves: NVES.map((id) => ({ id, ip: IP[id] })), vns: [{ id: 100, alias: "blue", vni: 5000 }],
    ha: { instance: name, priority, holdMs: 3000 },
    // 25 moves per MAC in seconds: duplicate detection (RFC 7432 §15) would freeze them; it is tested in ima.test.ts
    duplicate: { moves: 1000, windowMs: 1 },
    ...(mosquitto ? { auth: { password: USERS.ima } } : {}),
  }));
  const child = spawn(process.execPath, [BIN, "ima", "run", "--config", cfg, "--store", join(dir, `${name}-store`), "--broker", url, "--log-format", "text"], { stdio: ["ignore", "pipe", "pipe"] });
  const ima: Ima = { name, child, log: "", exited: new Promise((r) => child.on("exit", () => r())) };
  // A runner killed mid-test (its time bound) takes the instances with it.
  const reap = () => { if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL"); };
  process.once("exit", reap);
  child.once("exit", () => process.off("exit", reap));
  child.stdout!.setEncoding("utf8").on("data", (d) => (ima.log += d));
  child.stderr!.setEncoding("utf8").on("data", (d) => (ima.log += d));
  return ima;
}

async function until(cond: () => boolean, what: string, ms: number, detail: () => string = () => ""): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Nve { id: string; c: ImaClient; ops: DpOp[]; moved: Map<string, () => void> }

/** What an NVE forwards a MAC to, from the ops its data plane was given: `remote <ip>`, or nothing (its own or unknown). */
function dpView(ops: DpOp[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const o of ops) {
    if (o.op === "mac.remote") m.set(o.mac, `remote ${o.nve}`);
    else if (o.op === "mac.del" || o.op === "mac.local") m.delete(o.mac);
  }
  return m;
}

/**
 * A committed local change, as the NVE's transaction does it (host/control/txn.ts):
 * its own mac.local/mac.del, then the IMA client, whose data-plane ops are applied
 * before the NVE's next request is (a new request is a new event-loop turn).
 */
async function local(n: Nve, changes: (LocalBinding | { vn: number; mac: string; gone: true })[]): Promise<void> {
  for (const ch of changes) n.ops.push("gone" in ch ? { op: "mac.del", vn: ch.vn, mac: ch.mac } : { op: "mac.local", vn: ch.vn, mac: ch.mac, port: ch.port, active: ch.active });
  n.c.applyLocal(changes);
  await new Promise((r) => setImmediate(r));
}

interface Outcome { perNve: Record<string, { remote: Record<string, string>; announced: Record<string, number> }>; killedAt?: number; takeoverMs?: number }

/** 1,000 migrations among three NVEs; with `kill`, the active IMA is SIGKILLed after half of them. */
async function run(o: { mosquitto: boolean; kill: boolean }): Promise<Outcome> {
  const roles = { nves: NVES, imas: ["ima"], operators: [] as string[] };
  const b = o.mosquitto ? await startMosquitto({ users: USERS, ...roles }) : await startEmbeddedBroker({ port: 0, host: "127.0.0.1", ...roles });
  const conn = (who: string): BrokerConnection => ({ url: b.url, username: who, reconnectPeriodMs: 200, ...(o.mosquitto ? { password: USERS[who] } : {}) });
  const dir = mkdtempSync(join(tmpdir(), "nvl-imaha-"));
  const imas: Ima[] = [];
  const nves: Nve[] = [];
  const logs = () => imas.map((i) => `--- ${i.name}\n${i.log.split("\n").slice(-30).join("\n")}`).join("\n");
  try {
    const activeOf = () => imas.filter((i) => i.child.exitCode === null && i.child.signalCode === null && /is the active IMA/.test(i.log));
    // i1 alone: it takes the free lease; i2 then finds it held and stands by.
    imas.push(startIma("i1", 0, b.url, dir, o.mosquitto));
    await until(() => activeOf().length === 1, "i1 to become the active IMA", 30_000, logs);
    imas.push(startIma("i2", 0, b.url, dir, o.mosquitto));
    await until(() => /i2 is standby/.test(imas[1].log), "i2 to stand by", 30_000, logs);
    assert.equal(activeOf().map((i) => i.name), ["i1"], "one active IMA");

    for (const id of NVES) {
      const n: Nve = { id, ops: [], moved: new Map(), c: undefined as unknown as ImaClient };
      n.c = await ImaClient.start({ nve: id, ip: IP[id], broker: conn(id), programmer: { apply: async (ops) => { n.ops.push(...ops); } },
        timeoutMs: 1000, retryMs: 100,
        // As the NVE does (host/ima-client/wire.ts): a binding moved away is withdrawn locally.
        onMoved: (_vn, mac) => {
          void local(n, [{ vn: 100, mac, gone: true }]);
          n.moved.get(mac)?.();
        } });
      nves.push(n);
      await n.c.setServed([100]);
    }
    const nve = (id: string) => nves.find((n) => n.id === id)!;
    const at = new Map<string, string>();
    const bind = (mac: string, active: boolean): LocalBinding => ({ vn: 100, mac, ips: [`10.1.0.${parseInt(mac.slice(-2), 16) + 1}`], port: "p1", active });
    // Every MAC starts at nve-a.
    for (let i = 0; i < MACS; i++) at.set(macOf(i), "nve-a");
    await local(nve("nve-a"), [...at.keys()].map((m) => bind(m, true)));
    await until(() => nves.filter((n) => n.id !== "nve-a").every((n) => dpView(n.ops).size === MACS), "every MAC at nve-a on the other NVEs", 20_000, logs);

    let done = 0;
    let killedAt: number | undefined;
    const migrate = async (mac: string) => {
      const from = at.get(mac)!;
      const to = NVES[(NVES.indexOf(from) + 1) % NVES.length];
      const src = nve(from), dst = nve(to);
      const moved = new Promise<void>((r) => src.moved.set(mac, r));
      await local(dst, [bind(mac, false)]);  // pre-associate (vn.connect activate:false)
      await local(src, [bind(mac, false)]);  // vnic.deactivate reason migration: the hold
      await local(dst, [bind(mac, true)]);   // vnic.activate migration:true: the move
      // the IMA published the move; src withdrew its own (bounded: a lost move fails the test, never hangs it)
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([moved, new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`MAC ${mac} never moved ${from} → ${to} (migration ${done + 1})\n${logs()}`)), 30_000)))]);
      clearTimeout(timer);
      src.moved.delete(mac);
      at.set(mac, to);
      done++;
      if (o.kill && done === MIGRATIONS / 2 && killedAt === undefined) {
        killedAt = Date.now();
        activeOf()[0].child.kill("SIGKILL");
      }
    };
    // LANES lanes, each its own MACs, one migration at a time per MAC.
    const perLane = MIGRATIONS / LANES;
    await Promise.all(Array.from({ length: LANES }, async (_, lane) => {
      const mine = Array.from({ length: MACS / LANES }, (_, k) => macOf(lane * (MACS / LANES) + k));
      for (let j = 0; j < perLane; j++) await migrate(mine[j % mine.length]);
    }));
    assert.is(done, MIGRATIONS);
    let takeoverMs: number | undefined;
    if (o.kill) {
      const i2 = imas.find((i) => i.name === "i2")!;
      assert.ok(/is the active IMA/.test(i2.log), `the standby took over:\n${logs()}`);
      const line = /^(\S+) .*is the active IMA/m.exec(i2.log);
      takeoverMs = line && !Number.isNaN(Date.parse(line[1])) ? Date.parse(line[1]) - killedAt! : undefined;
    }
    for (const n of nves) await n.c.idle();
    // Quiet: every NVE's view of every MAC settled (the last moves reached everyone).
    await until(() => nves.every((n) => {
      const v = dpView(n.ops);
      return [...at].every(([mac, holder]) => holder === n.id ? !v.has(mac) : v.get(mac) === `remote ${IP[holder]}`);
    }), "every NVE to follow the last moves", 20_000, () => nves.map((n) => {
      const v = dpView(n.ops);
      return `${n.id}: ` + [...at].filter(([mac, holder]) => holder === n.id ? v.has(mac) : v.get(mac) !== `remote ${IP[holder]}`)
        .map(([mac, holder]) => `${mac} at ${holder}, here ${v.get(mac) ?? "local/none"}; ops ${JSON.stringify(n.ops.filter((x) => "mac" in x && x.mac === mac).slice(-4))}`).slice(0, 3).join("\n  ");
    }).join("\n"));
    const perNve: Outcome["perNve"] = {};
    for (const n of nves) {
      const v = dpView(n.ops);
      perNve[n.id] = {
        remote: Object.fromEntries([...v].sort()),
        announced: Object.fromEntries(n.c.view().announced.map((a) => [a.mac, a.seq]).sort()),
      };
    }
    return { perNve, killedAt, takeoverMs };
  } finally {
    for (const n of nves) await n.c.stop().catch(() => {});
    for (const i of imas) if (i.child.exitCode === null && i.child.signalCode === null) { i.child.kill("SIGTERM"); }
    await Promise.race([Promise.all(imas.map((i) => i.exited)), new Promise((r) => setTimeout(r, 10_000))]);
    for (const i of imas) if (i.child.exitCode === null && i.child.signalCode === null) i.child.kill("SIGKILL");
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

let reference: Outcome | undefined;

test("without a kill: 1,000 migrations among three NVEs end with each MAC at its last NVE, its sequence the number of its moves", async () => {
  reference = await run({ mosquitto: false, kill: false });
  const moves = MIGRATIONS / MACS;
  for (let i = 0; i < MACS; i++) {
    const holder = NVES[moves % NVES.length];
    assert.is(reference.perNve[holder].announced[macOf(i)], moves, `MAC ${macOf(i)}: seq = its ${moves} moves`);
  }
});

for (const mosquitto of [false, true]) {
  test(`${mosquitto ? "Mosquitto" : "embedded broker"}: the active IMA SIGKILLed in the middle of 1,000 migrations; the standby takes over; every NVE ends as without the kill`, async () => {
    if (!reference) throw new Error("the run without a kill failed (see above)");
    const r = await run({ mosquitto, kill: true });
    console.log(`ima-ha (${mosquitto ? "mosquitto" : "embedded"}): takeover ${r.takeoverMs ?? "?"} ms after the SIGKILL`);
    assert.equal(r.perNve, reference.perNve);
  });
}

test.run();
