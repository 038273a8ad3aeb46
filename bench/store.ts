// Store benchmarks (issue 4, "npm run bench adds"):
// - restart: time from `nvedge run` process start to the data plane programmed
//   from a store holding 100,000 VNICs and 1,000,000 addresses (100k MACs + 900k
//   IPs), aim < 1 s; plus an in-process breakdown (store read, model, programming);
// - the store's size on disk per binding;
// - attach throughput through the NVE core (request → store → data plane →
//   answer) with the LMDB store's durable commits vs the in-memory store (aim
//   >= 0.8x), and the store alone under concurrent transactions (group commit).
// Each row is one JSON object; `runStoreBench` is the export bench/run.ts calls.
import { spawn } from "node:child_process";
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { openLmdbStore } from "../host/store/lmdb.js";
import { MemoryStore } from "../host/store/memory.js";
import type { Store, VnicRecord } from "../host/store/store.js";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { Model } from "../host/control/model.js";
import { NveCore } from "../host/control/core.js";
import { parseConfig } from "../host/config/load.js";
import type { NveConfig } from "../host/config/types.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const VNS = 100;
const profile = { encap: "vxlan", service: "l2", mtu: 1500, portSecurity: true, arpSuppress: true, learn: "explicit" };

function configJson(): Record<string, unknown> {
  return {
    nve: "nve-a",
    underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe", udpPort: 4789 },
    ports: [{ name: "eth2", hypervisors: ["hv-1"] }],
    vns: Array.from({ length: VNS }, (_, i) => ({ id: i + 1, vni: 10000 + i, profile })),
    vnics: [], remotes: [],
    timers: { holdMs: 10000, agentHoldMs: 0, tagQuarantineMs: 5000 },
  };
}

const macOf = (i: number) => `02:00:${[(i >>> 24) & 255, (i >>> 16) & 255, (i >>> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, "0")).join(":")}`;
const ipOf = (j: number) => `10.${(j >>> 16) & 255}.${(j >>> 8) & 255}.${j & 255}`;
const uuidOf = (i: number) => `0d6c8a8e-2f5b-4a8e-8d2e-${i.toString(16).padStart(12, "0")}`;

/** Fills `store` as the NVE core would after `vnics` attaches of 1 MAC + `ipsPer` IPs each (VNIC records + VAPs). */
async function fill(store: Store, vnics: number, ipsPer: number): Promise<void> {
  await store.transaction((tx) => {
    for (let vn = 1; vn <= VNS; vn++) tx.put("vaps", `eth2|${vn}`, { port: "eth2", vn, tag: vn });
  });
  const chunk = 10_000;
  for (let s = 0; s < vnics; s += chunk) {
    await store.transaction((tx) => {
      for (let i = s; i < Math.min(vnics, s + chunk); i++) {
        const ips = Array.from({ length: ipsPer }, (_, k) => ipOf(i * ipsPer + k));
        const r: VnicRecord = { vnic: uuidOf(i), hv: "hv-1", port: "eth2", state: "active", vns: [{ vn: (i % VNS) + 1, addrs: [{ mac: macOf(i), ips }] }] };
        tx.put("vnics", r.vnic, r);
      }
    });
  }
}

/** Spawns `nvedge run` on the store; resolves with ms from spawn to the core's "ready" line (store restored, data plane programmed). */
function timeCliRestart(cfgFile: string, storeDir: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    // Port 1 on loopback refuses: the NVE forwards from its store while it retries the broker.
    const child = spawn(process.execPath, [join(ROOT, "bin", "nvedge.js"), "run", "--config", cfgFile, "--io", "none", "--store", storeDir,
      "--broker", "mqtt://127.0.0.1:1", "--admin-socket", join(storeDir, "..", "bench.sock")], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`nvedge run: not ready in 60 s: ${err.slice(-2000)}`)); }, 60_000);
    child.stderr!.on("data", (d) => {
      err += d;
      if (/ ready: bootId/.test(err)) {
        const ms = performance.now() - t0;
        clearTimeout(timer);
        child.kill("SIGKILL");
        child.once("exit", () => resolve(ms));
      }
    });
    child.once("exit", (c) => { clearTimeout(timer); if (!/ ready: bootId/.test(err)) reject(new Error(`nvedge run exited ${c}: ${err.slice(-2000)}`)); });
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const r1 = (x: number) => Math.round(x * 10) / 10;

async function restartBench(quick: boolean): Promise<object[]> {
  const vnics = quick ? 10_000 : 100_000;
  const ipsPer = 9;
  const work = mkdtempSync(join(tmpdir(), "nvedge-bench-store-"));
  try {
    const storeDir = join(work, "store");
    const cfgFile = join(work, "nve.json");
    writeFileSync(cfgFile, JSON.stringify(configJson()));
    let store = await openLmdbStore(storeDir);
    let t = performance.now();
    await fill(store, vnics, ipsPer);
    const fillMs = performance.now() - t;
    await store.close();
    const addresses = vnics * (1 + ipsPer);
    const bytes = statSync(join(storeDir, "data.mdb")).size;
    const rows: object[] = [{
      case: "store.size", vnics, addresses, bytes, bytesPerAddress: r1(bytes / addresses), bytesPerVnic: r1(bytes / vnics),
      fillMs: Math.round(fillMs),
    }];

    // In-process breakdown of a restart.
    t = performance.now();
    store = await openLmdbStore(storeDir);
    const tOpen = performance.now() - t;
    t = performance.now();
    const listed = store.list("vnics").length;
    const tList = performance.now() - t;
    if (listed !== vnics) throw new Error(`store lists ${listed} VNICs, wrote ${vnics}`);
    t = performance.now();
    const model = new Model(["eth2"]);
    model.load(store);
    const tLoad = performance.now() - t;
    t = performance.now();
    const ops = model.programAll();
    const tOps = performance.now() - t;
    t = performance.now();
    const dp = await DataPlane.create();
    const tCreate = performance.now() - t;
    const cfg = parseConfig(JSON.stringify(configJson()), "bench");
    const { staticOps } = await import("../host/control/static.js");
    const { VnCatalog } = await import("../host/control/catalog.js");
    t = performance.now();
    dp.apply([...staticOps(cfg, VnCatalog.fromConfig(cfg)), ...ops]);
    const tApply = performance.now() - t;
    // The (VN, IP) owner index: built after the data plane is programmed (NveCore.open warms it next turn).
    t = performance.now();
    model.warm();
    const tWarm = performance.now() - t;
    await store.close();
    rows.push({
      case: "store.restart.inprocess", vnics, addresses, ops: ops.length,
      openMs: r1(tOpen), listVnicsMs: r1(tList), loadMs: r1(tLoad), opsMs: r1(tOps), dataplaneCreateMs: r1(tCreate), applyMs: r1(tApply),
      totalMs: r1(tOpen + tLoad + tOps + tCreate + tApply), ipIndexAfterReadyMs: r1(tWarm),
    });

    // The real thing: process start → "ready" (restored and programmed), median of 5
    // (the machine is shared: a single run says little).
    const runs: number[] = [];
    for (let i = 0; i < 5; i++) runs.push(await timeCliRestart(cfgFile, storeDir));
    rows.push({ case: "store.restart.process", vnics, addresses, ms: Math.round(median(runs)), runsMs: runs.map(Math.round), aimMs: 1000 });
    return rows;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Attaches through the NVE core (the whole request path, serial as the core is). */
async function attachRate(store: Store, cfg: NveConfig, n: number, offset: number, serial = false): Promise<number> {
  const dp = await DataPlane.create({ macLog2: 16, ipLog2: 16 });
  const core = await NveCore.open({ config: cfg, store, programmer: { apply: async (ops) => dp.apply(ops) }, limits: { maxVnicsPerHv: 1 << 20, ratePerSecond: 0 } });
  await core.request("hv-1", new TextEncoder().encode(JSON.stringify({ id: "h", op: "hello", agent: "bench" }))); // first on every session (PROTOCOL.md §2)
  const enc = new TextEncoder();
  const reqs = Array.from({ length: n }, (_, k) => {
    const i = offset + k;
    return enc.encode(JSON.stringify({ id: `a${i}`, op: "vnic.attach", vnic: uuidOf(i), vn: { id: (i % VNS) + 1 }, addrs: [{ mac: macOf(i), ips: [ipOf(i)] }] }));
  });
  const t = performance.now();
  // All outstanding at once, as many agents would send them (the core groups them),
  // or one at a time (each waits for its own durable commit: latency bound).
  const rsps: Record<string, unknown>[] = [];
  if (serial) for (const p of reqs) rsps.push(await core.request("hv-1", p));
  else rsps.push(...await Promise.all(reqs.map((p) => core.request("hv-1", p))));
  const s = (performance.now() - t) / 1000;
  const bad = rsps.find((r) => r.ok !== true);
  if (bad) throw new Error(`attach failed: ${JSON.stringify(bad)}`);
  await core.close();
  return n / s;
}

export async function attachBench(quick: boolean): Promise<object[]> {
  const n = quick ? 200 : 1000;
  const cfg = parseConfig(JSON.stringify(configJson()), "bench");
  const work = mkdtempSync(join(tmpdir(), "nvedge-bench-attach-"));
  try {
    // Warm-up (JIT of both write paths), then measured runs on fresh stores.
    let dir = 0;
    const lmdbRate = async (count: number, serial: boolean) => {
      const st = await openLmdbStore(join(work, `store${dir++}`));
      try { return await attachRate(st, cfg, count, 0, serial); } finally { await st.close(); }
    };
    await attachRate(await MemoryStore.open(), cfg, n, 0);
    await lmdbRate(n, false);
    const mem = await attachRate(await MemoryStore.open(), cfg, n, 0);
    const durable = await lmdbRate(n, false);
    const ns = quick ? 50 : 200;
    const memSerial = await attachRate(await MemoryStore.open(), cfg, ns, 0, true);
    const durableSerial = await lmdbRate(ns, true);

    // The store alone: attach-shaped transactions, all outstanding (what a pipelined core could get from group commit).
    const s2 = await openLmdbStore(join(work, "concurrent"));
    const m2 = await MemoryStore.open();
    const rate = async (st: Store, count: number) => {
      const t = performance.now();
      await Promise.all(Array.from({ length: count }, (_, i) => st.transaction((tx) => {
        tx.put("vnics", uuidOf(i), { vnic: uuidOf(i), hv: "hv-1", port: "eth2", state: "active", vns: [{ vn: 1, addrs: [{ mac: macOf(i), ips: [ipOf(i)] }] }] });
        tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: i });
      })));
      return count / ((performance.now() - t) / 1000);
    };
    const storeMem = await rate(m2, quick ? 2000 : 20000);
    const storeLmdb = await rate(s2, quick ? 2000 : 20000);
    await s2.close();
    return [
      { case: "store.attach.core", attaches: n, outstanding: n, memoryPerSec: Math.round(mem), lmdbDurablePerSec: Math.round(durable), ratio: Math.round((durable / mem) * 1000) / 1000, aimRatio: 0.8 },
      { case: "store.attach.core.serial", attaches: ns, outstanding: 1, memoryPerSec: Math.round(memSerial), lmdbDurablePerSec: Math.round(durableSerial), ratio: Math.round((durableSerial / memSerial) * 1000) / 1000 },
      { case: "store.transactions.concurrent", memoryPerSec: Math.round(storeMem), lmdbDurablePerSec: Math.round(storeLmdb), ratio: Math.round((storeLmdb / storeMem) * 1000) / 1000 },
    ];
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * What one fsync costs on the disk the store lives on (issue 15 "durable
 * attach ratio": say what the disk's fsync costs): a 4 KiB write then
 * fdatasync(2), the floor of a durable commit (LMDB's needs one or two). A
 * durable group per fsync is the physical limit: `groupsPerSecLimit`
 * (1 s / mean); a group of N requests reaches N times that.
 */
export function fsyncBench(quick: boolean): object[] {
  const dir = mkdtempSync(join(tmpdir(), "nvedge-bench-fsync-"));
  try {
    const fd = openSync(join(dir, "f"), "w");
    const page = Buffer.alloc(4096, 0x5a);
    const n = quick ? 50 : 300;
    const us: number[] = [];
    for (let i = 0; i < n + 5; i++) {
      writeSync(fd, page, 0, page.length, (i % 64) * 4096);
      const t = performance.now();
      fdatasyncSync(fd);
      if (i >= 5) us.push((performance.now() - t) * 1000); // after 5 warm-up syncs
    }
    closeSync(fd);
    us.sort((a, b) => a - b);
    const mean = us.reduce((a, b) => a + b, 0) / us.length;
    const q = (p: number) => Math.round(us[Math.min(us.length - 1, Math.floor(p * us.length))]);
    return [{ case: "store.fsync", syncs: n, p50_us: q(0.5), p99_us: q(0.99), mean_us: Math.round(mean), groupsPerSecLimit: Math.round(1e6 / mean), dir: tmpdir() }];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runStoreBench(o: { quick?: boolean } = {}): Promise<object[]> {
  const quick = o.quick ?? process.env.NVEDGE_BENCH_QUICK === "1";
  return [...fsyncBench(quick), ...(await restartBench(quick)), ...(await attachBench(quick))];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const r of await runStoreBench({ quick: process.argv.includes("--quick") })) console.log(JSON.stringify(r));
}
