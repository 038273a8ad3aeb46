// The NVE's core in-process, one request at a time (issue 15, bench/README.md
// "gc15"): what a lone request costs the NVE's own code when requests come
// one per turn of the event loop, as the control bench's paced case sends
// them (a group of one per request: the group's Txn, store transaction, data
// plane apply, log write and promises are per request then), against the
// same requests in batches. No MQTT, no other process: CPU µs per request from
// this process's own clock, and (NVEDGE_BENCH_HEAP=1) the bytes allocated per
// lone attach by V8's sampling heap profiler (collected objects counted), a
// figure the machine's load does not move.
//
//   node dist/bench/lone.js                 # one JSON line
//   NVEDGE_BENCH_HEAP=1 node dist/bench/lone.js   # + bytes per lone attach, the allocating sites on stderr
//   NVEDGE_BENCH_ROOT=/other/checkout node dist/bench/lone.js   # that build's core (an A/B in one harness)
import { mkdtempSync, openSync, rmSync, writeSync, closeSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { heapSites } from "./heap-sites.js";
import { pathToFileURL } from "node:url";
import type * as CoreMod from "../host/control/core.js";
import type * as MemoryMod from "../host/store/memory.js";
import type * as DpMod from "../host/dataplane/dataplane.js";
import type * as LogMod from "../host/log/logger.js";
import type * as MetricsMod from "../host/metrics/metrics.js";
import type * as LoadMod from "../host/config/load.js";
import type * as CodecMod from "../host/protocol/codec.js";

const AGENTS = 100, VNS = 100, PORTS = 10, PER_AGENT = 100;

const root = process.env.NVEDGE_BENCH_ROOT ? `${pathToFileURL(process.env.NVEDGE_BENCH_ROOT).href}/dist` : new URL("..", import.meta.url).href.replace(/\/$/, "");
const mod = <T>(p: string) => import(`${root}/${p}`) as Promise<T>;

const uuid = (a: number, i: number) => `00000000-0001-4000-8000-${a.toString(16).padStart(4, "0")}${i.toString(16).padStart(8, "0")}`;
const mac = (a: number, i: number) => [0x02, 1, a & 0xff, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff].map((x) => x.toString(16).padStart(2, "0")).join(":");

async function main(): Promise<void> {
  const { NveCore } = await mod<typeof CoreMod>("host/control/core.js");
  const { MemoryStore } = await mod<typeof MemoryMod>("host/store/memory.js");
  const { DataPlane } = await mod<typeof DpMod>("host/dataplane/dataplane.js");
  const { Logger } = await mod<typeof LogMod>("host/log/logger.js");
  const { NveMetrics } = await mod<typeof MetricsMod>("host/metrics/metrics.js");
  const { parseConfig } = await mod<typeof LoadMod>("host/config/load.js");
  const { answerText } = await mod<typeof CodecMod>("host/protocol/codec.js");
  const dir = mkdtempSync("/tmp/nvl-bench-lone-");
  const fd = openSync(`${dir}/nve.log`, "w");
  // the log as nvedge run writes it: a turn's lines, then one write
  let held = "", armed = false;
  const flush = () => { armed = false; const s = held; held = ""; if (s) writeSync(fd, s); };
  const logger = new Logger({ service: "nve", id: "nve-bench", format: "text", dest: { write: (l: string) => { held += l; if (!armed) { armed = true; setImmediate(flush); } } } });
  try {
    const cfg = parseConfig(JSON.stringify({
      nve: "nve-bench",
      underlay: { port: "eth0", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
      ports: Array.from({ length: PORTS }, (_, p) => ({ name: `acc${p}`, hypervisors: Array.from({ length: AGENTS / PORTS }, (_, h) => `hv-${p * (AGENTS / PORTS) + h}`) })),
      vns: Array.from({ length: VNS }, (_, v) => ({ id: v + 1, alias: `vn${v + 1}`, vni: 10000 + v, profile: { encap: "vxlan", mtu: 1450 } })),
      timers: { holdMs: 10000, agentHoldMs: 30000, tagQuarantineMs: 5000 },
      limits: { ratePerSecond: 0 },
    }), "bench");
    const metrics = new NveMetrics({ counters: () => undefined, control: () => ({}) as never, mqttConnected: () => true }, { nve: cfg.nve });
    const store = metrics.instrumentStore(await MemoryStore.open());
    const dp = await DataPlane.create({});
    const core = await NveCore.open({ config: cfg, store, programmer: { apply: async (ops) => dp.apply(ops) }, log: logger.lines() });
    const enc = (o: object) => Buffer.from(JSON.stringify(o));
    for (let a = 0; a < AGENTS; a++) await core.request(`hv-${a}`, enc({ id: "h", op: "hello", agent: "bench", capabilities: [] }));
    let seq = 0;
    const requests = (op: "attach" | "detach") => {
      const r: [string, Buffer][] = [];
      for (let i = 0; i < PER_AGENT; i++) for (let a = 0; a < AGENTS; a++) r.push([`hv-${a}`, enc(op === "attach"
        ? { id: `r${seq++}`, op: "vnic.attach", vnic: uuid(a, i), vn: { id: ((a * PER_AGENT + i) % VNS) + 1 }, addrs: [{ mac: mac(a, i), ips: [`10.1.${a}.${i % 250 + 1}`] }] }
        : { id: `r${seq++}`, op: "vnic.deactivate", vnic: uuid(a, i), reason: "shutdown" })]);
      return r;
    };
    const turn = () => new Promise((r) => setImmediate(r));
    const answer = (op: string, r: Record<string, unknown>) => {
      Buffer.from(answerText(r)); // as NveService sends it
      metrics.observeRequest(op, r.ok ? "ok" : "other", 0.0005);
      if (!r.ok) throw new Error(`refused: ${JSON.stringify(r)}`);
    };
    // 400 requests outstanding (the control bench's 100 agents × window 4): the core batches them
    const batched = async (op: "attach" | "detach") => {
      const reqs = requests(op);
      let next = 0;
      const c0 = process.cpuUsage();
      await Promise.all(Array.from({ length: 400 }, async () => {
        while (next < reqs.length) { const [hv, p] = reqs[next++]; answer(op, await core.request(hv, p)); }
      }));
      const c = process.cpuUsage(c0);
      return (c.user + c.system) / reqs.length;
    };
    // one request, its answer, then the next turn: a group of one each
    const lone = async (op: "attach" | "detach") => {
      const reqs = requests(op);
      const c0 = process.cpuUsage();
      for (const [hv, p] of reqs) { answer(op, await core.request(hv, p)); await turn(); }
      const c = process.cpuUsage(c0);
      return (c.user + c.system) / reqs.length;
    };
    const r2 = (x: number) => Math.round(x * 10) / 10;
    // a cold round, then warm ones (the tables faulted in, the code tiered up)
    await batched("attach"); await batched("detach"); await batched("attach"); await batched("detach");
    const loneUs: number[] = [], batchedUs: number[] = [];
    for (let k = 0; k < 3; k++) { loneUs.push(r2(await lone("attach"))); await batched("detach"); }
    for (let k = 0; k < 3; k++) { batchedUs.push(r2(await batched("attach"))); await batched("detach"); }
    const out: Record<string, unknown> = { case: "control.core.lone", vnics: AGENTS * PER_AGENT, lone_attach_cpu_us: loneUs, batched_attach_cpu_us: batchedUs };
    if (process.env.NVEDGE_BENCH_HEAP) {
      const reqs = requests("attach"); // built before the profile counts: the harness's own garbage stays out
      const n = reqs.length;
      const s = new Session();
      s.connect();
      await s.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
      for (const [hv, p] of reqs) { answer("attach", await core.request(hv, p)); await turn(); }
      const { profile } = await s.post("HeapProfiler.stopSampling");
      s.disconnect();
      const { total, sites } = heapSites(profile.head);
      for (const [site, b] of sites.slice(0, 25)) console.error(`lone heap ${Math.round(b / n)} B/op ${site}`);
      out.lone_attach_heap_bytes = Math.round(total / n);
    }
    console.log(JSON.stringify(out));
    await core.close();
  } finally {
    logger.close();
    flush();
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
