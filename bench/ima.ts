// Scale simulation of the mapping authority (issue 6): 50 NVEs and 5,000 VMs
// as in-process IMA clients (host/ima-client/client.ts) on one embedded broker with
// the IMA (host/ima/service.ts, LMDB store in a temp dir), then 1,000
// migrations, one after another, each as the protocol does it: the departing
// NVE deactivates the VNIC (reason migration: still announced), the arriving
// NVE activates it (announces the next sequence number), the departing NVE is
// told `moved` and drops its local binding.
//
// Reported (one JSON line each):
//   ima.initial    — time until all 5,000 bindings are programmed on all 49 other NVEs
//   ima.migration  — per migration, from the arriving NVE's activation until every
//                    other NVE (the departing one included) has programmed
//                    mac.remote toward the arriving NVE: p50/p99/max ms; and MQTT
//                    PUBLISH packets per migration, into the broker (requests,
//                    responses and retained publishes sent by the clients and the
//                    IMA) and out of it (deliveries to subscribers)
// Each VN is served by every NVE (VMs spread round-robin), the worst case for
// fan-out: every binding change reaches all 50 NVEs.
// `node dist/bench/ima.js` runs it alone; NVEDGE_BENCH_QUICK=1 shortens it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { MqttClient } from "mqtt";
import { startEmbeddedBroker } from "../host/broker/embedded.js";
import { ImaService } from "../host/ima/service.js";
import { ImaClient, type LocalBinding } from "../host/ima-client/client.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { quantile } from "./stats.js";

const QUICK = process.env.NVEDGE_BENCH_QUICK === "1";
const NVES = 50;
const VMS = QUICK ? 1000 : 5000;
const VNS = 10;
const MIGRATIONS = QUICK ? 100 : 1000;
const STEP_TIMEOUT_MS = 20_000;
// Everything (broker, IMA, 50 clients) shares one event loop here, so a request
// may wait behind tens of thousands of deliveries during the initial load; a
// long request timeout keeps the clients from piling retries on top.
const REQUEST_TIMEOUT_MS = 120_000;
const TOTAL_TIMEOUT_MS = 15 * 60_000;

const nveName = (i: number) => `nve-${String(i).padStart(2, "0")}`;
const nveIp = (i: number) => `192.0.2.${i + 1}`;
const vmMac = (v: number) => `02:00:00:${((v >> 16) & 0xff).toString(16).padStart(2, "0")}:${((v >> 8) & 0xff).toString(16).padStart(2, "0")}:${(v & 0xff).toString(16).padStart(2, "0")}`;
const vmVn = (v: number) => (v % VNS) + 1;
const vmIp = (v: number) => `10.${vmVn(v)}.${(v >> 8) & 0xff}.${v & 0xff}`;

/** Deterministic PRNG (mulberry32) so every run migrates the same VMs. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const round = (x: number) => Math.round(x * 100) / 100;

export async function runImaBench(): Promise<object[]> {
  const results: object[] = [];
  const emit = (o: object) => {
    results.push(o);
    console.log(JSON.stringify(o));
  };
  const names = Array.from({ length: NVES }, (_, i) => nveName(i));
  const broker = await startEmbeddedBroker({ port: 0, nves: names, imas: ["ima"], operators: [] });
  const dir = mkdtempSync(join(tmpdir(), "nvl-ima-bench-"));
  const clients: ImaClient[] = [];
  let ima: ImaService | undefined;
  const deadline = Date.now() + TOTAL_TIMEOUT_MS;
  try {
    ima = await ImaService.start({ settings: { nves: names.map((id, i) => ({ id, ip: nveIp(i) })) }, broker: { url: broker.url, reconnectPeriodMs: 0 }, store: join(dir, "store"),
      seed: Array.from({ length: VNS }, (_, i) => ({ id: i + 1, alias: `vn${i + 1}` })) });

    // Where each NVE's data plane points each (VN, MAC): the programmer records it
    // and wakes whoever waits for a binding to reach an NVE.
    const remoteAt: Map<string, string>[] = names.map(() => new Map());
    let remoteCount = 0;
    let waiter: { key: string; ip: string; left: Set<number>; done: () => void } | undefined;
    const programmer = (i: number) => ({
      async apply(ops: DpOp[]) {
        for (const o of ops) {
          if (o.op === "mac.remote") {
            const k = `${o.vn}|${o.mac}`;
            if (!remoteAt[i].has(k)) remoteCount++;
            remoteAt[i].set(k, o.nve);
            if (waiter && waiter.key === k && waiter.ip === o.nve && waiter.left.delete(i) && waiter.left.size === 0) waiter.done();
          } else if (o.op === "mac.del") {
            if (remoteAt[i].delete(`${o.vn}|${o.mac}`)) remoteCount--;
          }
        }
      },
    });

    const where = new Int32Array(VMS); // VM → NVE index
    const local = (v: number, active: boolean): LocalBinding => ({ vn: vmVn(v), mac: vmMac(v), ips: [vmIp(v)], port: "eth2", active });
    for (let i = 0; i < NVES; i++) {
      const c: ImaClient = await ImaClient.start({
        nve: names[i], ip: nveIp(i), broker: { url: broker.url, reconnectPeriodMs: 0 }, programmer: programmer(i), timeoutMs: REQUEST_TIMEOUT_MS,
        // The NVE withdraws a binding that moved away (addr.disassociated reason moved).
        onMoved: (vn, mac) => c.applyLocal([{ vn, mac, gone: true }]),
        log: (l) => { if (/refused|retrying/.test(l)) console.error(`${names[i]}: ${l}`); },
      });
      clients.push(c);
    }
    // Count PUBLISH packets in and out of the broker, at every client (IMA included).
    const counts = { in: 0, out: 0 };
    for (const m of [ima.client, ...clients.map((c) => c.client)] as MqttClient[]) {
      m.on("packetsend", (p) => { if (p.cmd === "publish") counts.in++; });
      m.on("packetreceive", (p) => { if (p.cmd === "publish") counts.out++; });
    }

    // Initial state: every NVE serves every VN, VMs round-robin over the NVEs.
    const t0 = performance.now();
    const vnsAll = Array.from({ length: VNS }, (_, i) => i + 1);
    await Promise.all(clients.map((c) => c.setServed(vnsAll)));
    for (let v = 0; v < VMS; v++) where[v] = v % NVES;
    // NVE after NVE (as NVEs come up), each announcing all its VMs at once.
    for (let i = 0; i < NVES; i++) {
      const mine: LocalBinding[] = [];
      for (let v = i; v < VMS; v += NVES) mine.push(local(v, true));
      clients[i].applyLocal(mine);
      await clients[i].idle();
    }
    const expected = NVES * VMS - VMS; // every NVE has every VM but its own as remote
    while (remoteCount < expected) {
      if (Date.now() > deadline) throw new Error(`initial convergence: ${remoteCount} of ${expected} remote bindings programmed`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const initialMs = performance.now() - t0;
    emit({ case: "ima.initial", nves: NVES, vms: VMS, vns: VNS, bindingsProgrammed: expected, ms: round(initialMs),
      bindingsPerSecond: Math.round(expected / (initialMs / 1000)), publishesIn: counts.in, deliveriesOut: counts.out });
    await Promise.all(clients.map((c) => c.idle()));

    // Migrations, one after another.
    const rnd = prng(6);
    const lat: number[] = [];
    const before = { ...counts };
    const mt0 = performance.now();
    for (let n = 0; n < MIGRATIONS; n++) {
      const v = Math.floor(rnd() * VMS);
      const from = where[v];
      let to = Math.floor(rnd() * (NVES - 1));
      if (to >= from) to++;
      const key = `${vmVn(v)}|${vmMac(v)}`;
      const left = new Set<number>();
      for (let i = 0; i < NVES; i++) if (i !== to) left.add(i);
      const reached = new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`migration ${n} of ${vmMac(v)} ${names[from]} → ${names[to]}: ${left.size} NVEs not reached within ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
        waiter = { key, ip: nveIp(to), left, done: () => { clearTimeout(t); resolve(); } };
      });
      clients[from].applyLocal([local(v, false)]); // deactivate, reason migration: held, still announced
      const s = performance.now();
      clients[to].applyLocal([local(v, true)]);    // activate with migration: announce seq+1
      await reached;
      lat.push(performance.now() - s);
      where[v] = to;
      await Promise.all([clients[from].idle(), clients[to].idle()]);
      if (Date.now() > deadline) throw new Error(`time limit reached after ${n + 1} migrations`);
    }
    const total = performance.now() - mt0;
    // Let the last publishes and deliveries settle before counting.
    await Promise.all(clients.map((c) => c.idle()));
    await new Promise((r) => setTimeout(r, 200));
    lat.sort((a, b) => a - b);
    const pin = counts.in - before.in, pout = counts.out - before.out;
    emit({ case: "ima.migration", nves: NVES, vms: VMS, migrations: MIGRATIONS,
      reachEveryNveMs: { p50: round(quantile(lat, 0.5, true)), p99: round(quantile(lat, 0.99, true)), max: round(lat[lat.length - 1]) },
      migrationsPerSecond: round(MIGRATIONS / (total / 1000)),
      messagesPerMigration: { intoBroker: round(pin / MIGRATIONS), outOfBroker: round(pout / MIGRATIONS), total: round((pin + pout) / MIGRATIONS) },
      imaBatches: ima.stats.batches, imaRequests: ima.stats.requests });
  } finally {
    for (const c of clients) await c.stop().catch(() => {});
    await ima?.stop().catch(() => {});
    await broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runImaBench().catch((e) => { console.error(`bench/ima: ${(e as Error).message}`); process.exit(1); });
}
