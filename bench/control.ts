// Control-plane bench (issue 3): vnic.attach operations per second and the
// request→response latency (p50/p99) with 100 agents and 10,000 VNICs, through
// the embedded broker and through Mosquitto (3.1.1) when installed. The NVE is
// a real `nvedge run --io none --memory-store` process (its embedded broker in
// the same process, as deployed); the 100 agents (host/agent) run here.
// Cases: "max" (every agent keeps `window` requests outstanding), into fresh
// tables ("cold") and again after a detach ("warm"), "paced" (a fixed offered
// load spread over the agents), and detach (shutdown) at max.
//   node dist/bench/control.js            (NVEDGE_BENCH_QUICK=1: 1,000 VNICs; NVEDGE_BENCH_BROKER=core|embedded|embedded-thread|mosquitto: one only (core: no MQTT, benchCore);
//                                          NVEDGE_BENCH_NVE_ARGS: more `nvedge run` arguments; NVEDGE_BENCH_NVE_BIN: another build's bin/nvedge.js; NVEDGE_BENCH_NVE_NODE_ARGS: node's, e.g. --cpu-prof;
//                                          NVEDGE_BENCH_HEAP=1 (core): the bytes allocated per request, by V8's sampling heap profiler (=live: those still alive after the round);
//                                          NVEDGE_BENCH_AUTOGROUP_NICE=N: this session's scheduler weight (the bench's processes before other work on the machine); NVEDGE_BENCH_WARM_ROUNDS=N (default 2); NVEDGE_BENCH_PACED_ROUNDS=N (default 1); NVEDGE_BENCH_AGENT_CLIENT=lean|mqttjs;
//                                          NVEDGE_BENCH_NVE_NODE=firmware|PATH: the Node the NVE runs under (firmware: the bundle's pinned Node 24, the device's runtime);
//                                          NVEDGE_BENCH_NVE_CPU=N|none: the NVE alone on CPU N (default: the last CPU of two or more); NVEDGE_BENCH_NVE_LOG=FILE: its log and stdout kept; NVEDGE_BENCH_CASES=cold,warm,paced,serial,detach: some only;
//                                          NVEDGE_BENCH_THREADS=1: the NVE's CPU per request by thread on stderr; NVEDGE_BENCH_PACED_TRACE=FILE: each paced request's start and latency, and this process's GC pauses and stalls (FILE.k: round k of several);
//                                          NVEDGE_BENCH_PACED_PCAP=FILE: the paced case's MQTT captured (tcpdump) for bench/mqtt-hops.ts: each request's time per hop;
//                                          NVEDGE_BENCH_AGENT_HEAP=1: the agents' bytes per paced request; NVEDGE_BENCH_UNIX=nve|all: the NVE (and the agents) on Mosquitto's Unix socket;
//                                          NVEDGE_BENCH_AGENT_SEMI_SPACE=N: the agents' (this process's) young generation, MiB (run.ts --only control: 8; 0 for V8's default);
//                                          NVEDGE_BENCH_MOSQUITTO_INFLIGHT=N: Mosquitto's max_inflight_messages;
//                                          NVEDGE_BENCH_SCHED=batch: the bench's processes under SCHED_BATCH (schedBatch);
//                                          NVEDGE_BENCH_LOAD=raw: 100 raw hypervisor connections instead of the agent library (benchLoad: the NVE and broker's capacity, an extra row);
//                                          NVEDGE_BENCH_SYSCALLS=1: each process's syscalls and context switches per request in the row (perf stat, root), syscalls_per_op;
//                                          the NVE gets the Node flags of bin/nvedge.js's first line (launcherFlags), or the firmware's, before NVEDGE_BENCH_NVE_NODE_ARGS)
import { closeSync, copyFileSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, write, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { spawn, execFileSync } from "node:child_process";
import { PerformanceObserver } from "node:perf_hooks";
import { cpuSecondsOf } from "./proc-cpu.js";
import { countSyscalls, perOp } from "./syscalls.js";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { Session } from "node:inspector/promises";
import { Agent } from "../host/agent/agent.js";
import { connectLeanWhenReachable, type LeanMqttClient } from "../host/protocol/mqtt-lean.js";
import { topics } from "../host/protocol/topics.js";
import { adminRequest } from "../host/control/admin.js";
import { NveCore } from "../host/control/core.js";
import { MemoryStore } from "../host/store/memory.js";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { Logger } from "../host/log/logger.js";
import { NveMetrics } from "../host/metrics/metrics.js";
import { parseConfig } from "../host/config/load.js";
import { answerText } from "../host/protocol/codec.js";
import { quantile } from "./stats.js";
import { heapSites } from "./heap-sites.js";
import { firmwareNode, type FirmwareNode } from "./firmware-node.js";

const AGENTS = 100;
const PORTS = 10;
const VNS = 100;
const WINDOW = 4;

interface Broker { name: string; url?: string; unixUrl?: string; pid?: number; creds(id: string): { username: string; password?: string }; close(): Promise<void> }

/** The p-th percentile (0..100) of an ascending array (bench/stats quantile: nearest rank). */
const pct = (sorted: number[], p: number) => quantile(sorted, p / 100, true);
const r2 = (x: number) => Math.round(x * 100) / 100;

function uuid(a: number, i: number, set: number): string {
  return `00000000-${set.toString(16).padStart(4, "0")}-4000-8000-${a.toString(16).padStart(4, "0")}${i.toString(16).padStart(8, "0")}`;
}
function mac(a: number, i: number, set: number): string {
  const b = [0x02, set & 0xff, a & 0xff, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff];
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

function config(nve: string) {
  return {
    nve,
    underlay: { port: "eth0", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
    ports: Array.from({ length: PORTS }, (_, p) => ({ name: `acc${p}`, hypervisors: Array.from({ length: AGENTS / PORTS }, (_, h) => `hv-${p * (AGENTS / PORTS) + h}`) })),
    vns: Array.from({ length: VNS }, (_, v) => ({ id: v + 1, alias: `vn${v + 1}`, vni: 10000 + v, profile: { encap: "vxlan", mtu: 1450 } })),
    timers: { holdMs: 10000, agentHoldMs: 30000, tagQuarantineMs: 5000 },
    // The benchmark measures the NVE's capacity: no per-{hv} rate limit (issue 10 puts one on by default).
    limits: { ratePerSecond: 0 },
  };
}

type Job = (a: Agent) => Promise<unknown>;

/** Runs jobs[agent][k] with `window` outstanding per agent; returns latencies in ms. */
async function runMax(agents: Agent[], jobs: Job[][], window: number): Promise<{ lat: number[]; errors: number; secs: number }> {
  const lat: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  await Promise.all(agents.map(async (a, ai) => {
    let next = 0;
    const lane = async () => {
      while (next < jobs[ai].length) {
        const job = jobs[ai][next++];
        const t = performance.now();
        await job(a).then(() => lat.push(performance.now() - t), () => errors++);
      }
    };
    await Promise.all(Array.from({ length: window }, lane));
  }));
  return { lat, errors, secs: (performance.now() - t0) / 1000 };
}

/** Offers `rate` requests per second in total, round-robin over the agents (bounded by the job count). */
async function runPaced(agents: Agent[], jobs: Job[][], rate: number, round = 0): Promise<{ lat: number[]; errors: number; secs: number; steady: number[]; agentsGc: AgentsGc }> {
  const lat: number[] = [];
  // the requests issued after the first second (PACED_SETTLE_MS): the steady state at this rate, without the
  // start (the NVE and the agents paying off the garbage of the rounds at max before it: bench/README.md "cp17")
  const steady: number[] = [];
  let errors = 0;
  const total = jobs.reduce((s, j) => s + j.length, 0);
  const cursor = jobs.map(() => 0);
  // the requests still open, counted (an array of the case's 10,000 promises kept them all alive: each
  // scavenge of the agents' heap copied them, a pause every answer arriving meanwhile waits for)
  let open = 0, drained: (() => void) | undefined;
  const closed = () => { if (--open === 0 && drained) drained(); };
  let issued = 0, ai = 0;
  // NVEDGE_BENCH_PACED_TRACE=FILE: each request's start (ms since the epoch)
  // and latency, one line each, to line the slow ones up with the NVE's
  // log and GC trace (what the paced p99 waits for)
  // (with NVEDGE_BENCH_PACED_ROUNDS > 1, round k's in FILE.k: each case's own)
  const traceFile = process.env.NVEDGE_BENCH_PACED_TRACE && (round ? `${process.env.NVEDGE_BENCH_PACED_TRACE}.${round}` : process.env.NVEDGE_BENCH_PACED_TRACE);
  const trace: string[] | undefined = traceFile ? [] : undefined;
  // and this process's own GC pauses (the agents' heap), as "gc.KIND START MS"
  // and in every case the pauses counted by kind for the row (agents_gc: what run.ts's young generation size is for)
  const agentsGc: AgentsGc = { minor: { n: 0, ms: 0, max_ms: 0 }, major: { n: 0, ms: 0, max_ms: 0 } };
  const gcSeen = (e: PerformanceEntry) => {
    const kind = GC_KIND[((e as { detail?: { kind?: number } }).detail)?.kind ?? 0] ?? "other";
    const k = kind === "minor" ? agentsGc.minor : kind === "major" || kind === "incremental" ? agentsGc.major : undefined;
    if (k) { k.n++; k.ms += e.duration; k.max_ms = Math.max(k.max_ms, e.duration); }
    trace?.push(`gc.${kind} ${(performance.timeOrigin + e.startTime).toFixed(2)} ${e.duration.toFixed(2)}`);
  };
  const gcObs = new PerformanceObserver((l) => { for (const e of l.getEntries()) gcSeen(e); });
  gcObs.observe({ entryTypes: ["gc"] });
  const t0 = performance.now();
  let wakeDue = t0;
  while (issued < total) {
    // a wake-up of this loop later than its 1 ms timer asked (the agents' own event loop held, or waiting for
    // CPU 0): "stall START MS" in the trace, where it overlaps the slow requests (bench/mqtt-hops.ts)
    const now = performance.now();
    if (trace && now - wakeDue > STALL_MS) trace.push(`stall ${(performance.timeOrigin + wakeDue).toFixed(2)} ${(now - wakeDue).toFixed(2)}`);
    const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
    while (issued < due) {
      while (cursor[ai] >= jobs[ai].length) ai = (ai + 1) % agents.length;
      const ji = cursor[ai]++, aj = ai;
      const job = jobs[ai][ji];
      const a = agents[ai];
      ai = (ai + 1) % agents.length;
      issued++;
      const t = performance.now();
      open++;
      job(a).then(() => {
        const ms = performance.now() - t;
        lat.push(ms);
        if (t - t0 >= PACED_SETTLE_MS) steady.push(ms);
        trace?.push(`${(performance.timeOrigin + t).toFixed(2)} ${ms.toFixed(2)} ${aj} ${ji}`); // the agent and its job: the VNIC (uuid), to find it in the NVE's log
      }, () => errors++).then(closed);
    }
    wakeDue = performance.now() + 1;
    await new Promise((r) => setTimeout(r, 1));
  }
  if (open > 0) await new Promise<void>((r) => (drained = r));
  const secs = (performance.now() - t0) / 1000;
  for (const e of gcObs.takeRecords()) gcSeen(e); // those not yet delivered
  gcObs.disconnect();
  if (traceFile && trace) writeFileSync(traceFile, trace.join("\n") + "\n");
  return { lat, errors, secs, steady, agentsGc };
}

/** The agents' (this process's) GC pauses in a paced case, by kind (ms). */
interface AgentsGc { minor: { n: number; ms: number; max_ms: number }; major: { n: number; ms: number; max_ms: number } }

/** The row's form of it, with the young generation's size this process was started with (bench/run.ts). */
function agentsGcRow(g: AgentsGc): object {
  const f = (k: AgentsGc["minor"]) => ({ n: k.n, mean_ms: k.n ? r2(k.ms / k.n) : 0, max_ms: r2(k.max_ms) });
  const semi = /--max-semi-space-size[= ](\d+)/.exec([...process.execArgv, process.env.NODE_OPTIONS ?? ""].join(" "))?.[1];
  return { agents_gc: { minor: f(g.minor), major: f(g.major) }, agents_semi_space_mb: semi !== undefined ? Number(semi) : "default" };
}

const PACED_SETTLE_MS = 1000;
/** perf_hooks' GC entry kinds (NODE_PERFORMANCE_GC_*) as the trace names them. */
const GC_KIND: Record<number, string> = { 1: "minor", 4: "major", 8: "incremental", 16: "weakcb" };
/** How much later than asked the pacing loop may wake before the trace calls it a stall (ms; its timer asks for 1). */
const STALL_MS = 2;

/** A case measured with the NVE's CPU time (nvePid) and the bench's own (the agents). */
let brokerPid: number | undefined; // a broker process of its own (Mosquitto): its CPU per request too

async function measured<T extends { lat: number[]; secs: number }>(nvePid: number, run: () => Promise<T>, phase = ""): Promise<T & { nveCpu: number; nveSys: number; nveMain: number; benchCpu: number; benchSys: number; brokerCpu?: number; brokerSys?: number; runqWait: number[]; syscalls?: Record<string, Record<string, number>> }> {
  // NVEDGE_BENCH_SYSCALLS=1: each process's syscalls per request (perf stat on the kernel's tracepoints), given time to attach before the case
  const sc = process.env.NVEDGE_BENCH_SYSCALLS ? countSyscalls({ nve: nvePid, agents: process.pid, ...(brokerPid ? { broker: brokerPid } : {}) }) : undefined;
  if (sc) await new Promise((r) => setTimeout(r, 500));
  // the NVE's main thread (its tid is its pid) apart from its other threads
  // (libuv's pool: the log's writes to stderr; V8's: concurrent GC and
  // compilation; an embedded broker's thread)
  const n0 = cpuSecondsOf(nvePid), t0m = cpuSecondsOf(nvePid, nvePid), b0 = process.cpuUsage();
  const m0 = brokerPid ? cpuSecondsOf(brokerPid) : undefined;
  const w0 = [runDelayMs(nvePid, nvePid), brokerPid ? runDelayMs(brokerPid) : NaN, runDelayMs(process.pid, process.pid)];
  const th0 = process.env.NVEDGE_BENCH_THREADS ? threadCpu(nvePid) : undefined;
  const ta0 = th0 && threadCpu(process.pid);
  const t0 = process.hrtime.bigint();
  const r = await run();
  // NVEDGE_BENCH_THREADS=1: the NVE's CPU per request by thread name (V8's GC and compiler helpers, libuv's pool), on stderr
  if (th0) {
    const th1 = threadCpu(nvePid), by = new Map<string, number>();
    for (const [tid, [name, sec]] of th1) by.set(name, (by.get(name) ?? 0) + sec - (th0.get(tid)?.[1] ?? 0));
    console.error(`control threads ${phase} ${[...by].filter(([, x]) => x > 0).map(([n, x]) => `${n}=${Math.round((x * 1e6) / Math.max(1, r.lat.length))}µs`).join(" ")}`);
    // and the agents' (this process's): its main thread against V8's helpers (the GC's parallel tasks share CPU 0 with Mosquitto)
    const ta1 = threadCpu(process.pid), ba = new Map<string, number>();
    for (const [tid, [name, sec]] of ta1) ba.set(name, (ba.get(name) ?? 0) + sec - (ta0!.get(tid)?.[1] ?? 0));
    console.error(`control agents threads ${phase} ${[...ba].filter(([, x]) => x > 0).map(([n, x]) => `${n}=${Math.round((x * 1e6) / Math.max(1, r.lat.length))}µs`).join(" ")}`);
  }
  const w1 = [runDelayMs(nvePid, nvePid), brokerPid ? runDelayMs(brokerPid) : NaN, runDelayMs(process.pid, process.pid)];
  const syscalls = sc ? perOp(await sc.stop(), r.lat.length) : undefined;

  // With a profiled NVE (NVEDGE_BENCH_NVE_NODE_ARGS), each case's span on the
  // monotonic clock in µs, the clock of the .cpuprofile's sample times: a
  // profile can be cut to one case.
  if (process.env.NVEDGE_BENCH_NVE_NODE_ARGS) console.error(`control phase ${phase} ${t0 / 1000n} ${process.hrtime.bigint() / 1000n}`);
  const b = process.cpuUsage(b0);
  const n1 = cpuSecondsOf(nvePid), t1m = cpuSecondsOf(nvePid, nvePid);
  const m1 = brokerPid ? cpuSecondsOf(brokerPid) : undefined;
  return { ...r, nveCpu: n1.user + n1.sys - n0.user - n0.sys, nveSys: n1.sys - n0.sys, nveMain: t1m.user + t1m.sys - t0m.user - t0m.sys, benchCpu: (b.user + b.system) / 1e6, benchSys: b.system / 1e6,
    ...(m0 && m1 ? { brokerCpu: m1.user + m1.sys - m0.user - m0.sys, brokerSys: m1.sys - m0.sys } : {}), runqWait: w1.map((x, i) => x - w0[i]), ...(syscalls ? { syscalls } : {}) };
}

/**
 * The time a thread was ready to run but waited for a CPU (ms; the kernel's
 * run_delay, /proc/PID/task/TID/schedstat's second field): what a request
 * waits for when another process holds the core its handler needs (the
 * paced p99: issue 15). Without a tid: the process's first thread.
 */
/** Each thread's name and CPU seconds (utime + stime) of process `pid`. */
function threadCpu(pid: number): Map<string, [string, number]> {
  const m = new Map<string, [string, number]>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const c = cpuSecondsOf(pid, Number(tid));
      m.set(tid, [tid === String(pid) ? "main" : name, c.user + c.sys]);
    }
  } catch { /* gone */ }
  return m;
}

function runDelayMs(pid: number, tid = pid): number {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[1]) / 1e6;
  } catch {
    return NaN;
  }
}

function row(broker: string, mode: string, op: string, vnics: number, r: { lat: number[]; errors: number; secs: number; nveCpu?: number; nveSys?: number; nveMain?: number; benchCpu?: number; benchSys?: number; brokerCpu?: number; brokerSys?: number; runqWait?: number[]; syscalls?: Record<string, Record<string, number>> }, extra: object = {}) {
  const s = [...r.lat].sort((a, b) => a - b);
  const out = {
    case: `control.${op}`, broker, mode, agents: AGENTS, vnics, ...extra,
    ops_per_s: Math.round(r.lat.length / r.secs), p50_ms: r2(pct(s, 50)), p99_ms: r2(pct(s, 99)), max_ms: r2(s[s.length - 1] ?? NaN),
    errors: r.errors, secs: r2(r.secs),
    // the NVE process's CPU per answered request (its embedded broker included), and its share of one core
    ...(r.nveCpu !== undefined ? {
      nve_cpu_us_per_op: Math.round((r.nveCpu * 1e6) / Math.max(1, r.lat.length)), nve_cpu_cores: r2(r.nveCpu / r.secs),
      nve_sys_share: r2((r.nveSys ?? 0) / r.nveCpu),
      ...(r.nveMain !== undefined && !Number.isNaN(r.nveMain) ? { nve_main_thread_us_per_op: Math.round((r.nveMain * 1e6) / Math.max(1, r.lat.length)) } : {}),
      agents_cpu_us_per_op: Math.round(((r.benchCpu ?? 0) * 1e6) / Math.max(1, r.lat.length)),
      // the kernel's share of it (on loopback a write(2) carries the segment through TCP into the peer's socket)
      agents_sys_share: r2((r.benchSys ?? 0) / Math.max(1e-9, r.benchCpu ?? 0)),
      ...(r.brokerCpu !== undefined ? { broker_cpu_us_per_op: Math.round((r.brokerCpu * 1e6) / Math.max(1, r.lat.length)), broker_sys_share: r2((r.brokerSys ?? 0) / Math.max(1e-9, r.brokerCpu)) } : {}),
      nve_cpu_bound_ops_per_s: Math.round(r.lat.length / r.nveCpu), load1: r2(loadavg()[0]),
      // ms each main thread waited for a CPU while ready during the case: the NVE's, the broker's, the agents'
      ...(r.runqWait ? { runq_wait_ms: { nve: Math.round(r.runqWait[0]), broker: Number.isNaN(r.runqWait[1]) ? undefined : Math.round(r.runqWait[1]), agents: Math.round(r.runqWait[2]) } } : {}),
      ...(nveCpu() !== undefined ? { nve_pinned_cpu: nveCpu() } : {}),
      ...(nveNodeVersion ? { nve_node: nveNodeVersion } : {}),
      ...(autogroupNice !== undefined ? { autogroup_nice: autogroupNice } : {}),
      ...(sched !== undefined ? { sched } : {}),
    } : {}),
    // NVEDGE_BENCH_SYSCALLS=1: each process's syscalls and context switches per request (bench/syscalls.ts)
    ...(r.syscalls ? { syscalls_per_op: r.syscalls } : {}),
  };
  console.log(JSON.stringify(out));
  return out;
}

async function startBroker(kind: "embedded" | "mosquitto", nve: string): Promise<Broker> {
  if (kind === "embedded") return { name: "embedded", creds: (id) => ({ username: id }), close: async () => {} };
  const { startMosquitto } = await import("../test/support/mosquitto.js");
  const ids = [nve, ...Array.from({ length: AGENTS }, (_, i) => `hv-${i}`)];
  const pw = (id: string) => `bench-${id}`;
  // NVEDGE_BENCH_MOSQUITTO_INFLIGHT=N: Mosquitto's max_inflight_messages instead of the shipped configuration's (an A/B)
  const inflight = process.env.NVEDGE_BENCH_MOSQUITTO_INFLIGHT;
  if (inflight !== undefined && !/^\d+$/.test(inflight)) throw new Error(`NVEDGE_BENCH_MOSQUITTO_INFLIGHT=${inflight}: a count (0: no limit)`);
  const m = await startMosquitto({ users: Object.fromEntries(ids.map((i) => [i, pw(i)])), nves: [nve], unixSocket: benchUnix() !== "none",
    ...(inflight !== undefined ? { maxInflightMessages: Number(inflight) } : {}) });
  // its pid, for its CPU per request (broker_cpu_us_per_op): the process whose command line names its directory
  let pid: number | undefined;
  try { pid = Number(execFileSync("pgrep", ["-f", m.dir], { encoding: "utf8" }).trim().split("\n")[0]) || undefined; } catch { /* not counted */ }
  return { name: `mosquitto-3.1.1${inflight !== undefined ? `-inflight-${inflight}` : ""}`, url: m.url, unixUrl: m.unixUrl, pid, creds: (id) => ({ username: id, password: pw(id) }), close: () => m.close() };
}

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => res(typeof a === "object" && a ? a.port : 0));
    });
  });
}

async function benchOne(kind: "embedded" | "mosquitto", perAgent: number, threaded = false): Promise<object[]> {
  const nve = "nve-bench";
  const dir = mkdtempSync("/tmp/nvl-bench-control-");
  const broker = await startBroker(kind, nve);
  brokerPid = broker.pid;
  if (threaded) broker.name += "-thread";
  const port = await freePort();
  const metricsPort = await freePort();
  const url = broker.url ?? `mqtt://127.0.0.1:${port}`;
  // NVEDGE_BENCH_UNIX (Mosquitto only): the NVE, or the NVE and the agents, on the broker's Unix socket
  const unix = broker.unixUrl ? benchUnix() : "none";
  const nveUrl = unix !== "none" ? broker.unixUrl! : url, agentUrl = unix === "all" ? broker.unixUrl! : url;
  if (unix !== "none") broker.name += `-unix-${unix}`;
  writeFileSync(`${dir}/nve.json`, JSON.stringify(config(nve)));
  // NVEDGE_BENCH_NVE_BIN=<another built checkout>/bin/nvedge.js: that build's NVE under this bench (an A/B in one run of the same agents and columns)
  const bin = process.env.NVEDGE_BENCH_NVE_BIN || fileURLToPath(new URL("../../bin/nvedge.js", import.meta.url));
  // NVEDGE_BENCH_NVE_ARGS (e.g. "--log-level warn") adds arguments to `nvedge run`.
  const nveArgs = (process.env.NVEDGE_BENCH_NVE_ARGS ?? "").split(" ").filter(Boolean);
  // NVEDGE_BENCH_STORE=lmdb: the NVE's LMDB store (as shipped) in a directory
  // on tmpfs, so that the disk's fsync (the `store` module's figure) stays out
  // of the control plane's; default the memory store
  const lmdb = process.env.NVEDGE_BENCH_STORE === "lmdb";
  const storeDir = lmdb ? mkdtempSync("/dev/shm/nvl-bench-store-") : dir;
  const args = [bin, "run", ...nveArgs, "--config", `${dir}/nve.json`, ...(lmdb ? [] : ["--memory-store"]), "--store", storeDir, "--io", "none", "--metrics", `127.0.0.1:${metricsPort}`,
    ...(broker.url ? ["--broker", nveUrl] : ["--listen", `127.0.0.1:${port}`, ...(threaded ? ["--broker-thread"] : [])])];
  // NVEDGE_BENCH_NVE_CPU=N (issue 15 "measure the NVE, not the bench"): the
  // NVE on CPU N alone (taskset), this process (the agents) and a Mosquitto
  // it starts on every other CPU, so the NVE's rate is what one core of its
  // own sustains. pinBench() moved this process already.
  const cpu = nveCpu();
  const nodeBin = await nveNode();
  nveNodeVersion = nodeBin === process.execPath ? process.version : execFileSync(nodeBin, ["-v"], { encoding: "utf8" }).trim();
  // NVEDGE_BENCH_NVE_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/p") profiles the NVE process.
  // the firmware's Node with the flags its launcher gives it (firmware/build.mjs NODE_FLAGS), as on the device; those asked for after them
  // On another Node (the machine's, or NVEDGE_BENCH_NVE_NODE=PATH): the flags bin/nvedge.js's own first line
  // gives Node when it runs as the `nvedge` command (launcherFlags), as a systemd unit or a shell starts it.
  const shipped = nveNodeBin && nodeBin === nveNodeBin.node ? nveNodeBin.flags : launcherFlags(readFileSync(bin, "utf8"));
  if (shipped.length) nveNodeVersion += ` ${shipped.join(" ")}`;
  const nodeArgs = [...shipped, ...(process.env.NVEDGE_BENCH_NVE_NODE_ARGS ?? "").split(" ").filter(Boolean)];
  const argv0 = cpu === undefined ? [nodeBin] : ["taskset", "-c", String(cpu), nodeBin];
  // The NVE's log (stderr) into a file, as a journal would take it: through
  // a pipe, this process (the agents' side) paid for reading ~2 lines per
  // attach, and a slow reader held the NVE's writes back.
  const logFd = openSync(`${dir}/nve.log`, "w");
  // stdout too (node's --trace-gc and the like write there; nvedge itself does not)
  const child = spawn(argv0[0], [...argv0.slice(1), ...nodeArgs, ...args], { stdio: ["ignore", logFd, logFd], env: { ...process.env, NVEDGE_MQTT_PASSWORD: broker.creds(nve).password ?? "" } });
  closeSync(logFd);
  const tail = () => { try { return readFileSync(`${dir}/nve.log`, "utf8").slice(-4000); } catch { return ""; } };
  const killChild = () => child.kill("SIGKILL"); // the bench dying must not leave the NVE behind
  process.once("exit", killChild);
  const agents: Agent[] = [];
  const raws: RawHv[] = [];
  const rows: object[] = [];
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (await adminRequest(`${storeDir}/nvedge.sock`, { cmd: "show", what: "vns" }, 1000).then(() => true, () => false)) break;
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the NVE did not start: ${tail().trim().split("\n").slice(-2).join(" | ")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // NVEDGE_BENCH_LOAD=raw: the NVE and its broker without the agent library's cost (an extra row, not the headline)
    if (benchLoad() === "raw") return await benchRaw(broker, agentUrl, nve, perAgent, child.pid!, rows, raws);
    for (let i = 0; i < AGENTS; i += 20)
      agents.push(...await Promise.all(Array.from({ length: Math.min(20, AGENTS - i) }, (_, k) =>
        Agent.start({ broker: { url: agentUrl, ...broker.creds(`hv-${i + k}`) }, hv: `hv-${i + k}`, nve, requestTimeoutMs: 5_000, retries: 5, mqttClient: agentClient() }))));
    const vnics = AGENTS * perAgent;
    const attachJobs = (set: number) => agents.map((_, a) => Array.from({ length: perAgent }, (_, i): Job =>
      (ag) => ag.attach(uuid(a, i, set), { id: ((a * perAgent + i) % VNS) + 1 }, [{ mac: mac(a, i, set), ips: [`10.${set}.${a}.${i % 250 + 1}`] }])));
    const detachJobs = (set: number) => agents.map((_, a) => Array.from({ length: perAgent }, (_, i): Job => (ag) => ag.detach(uuid(a, i, set))));
    // The data plane's MAC and IP tables (32 + 64 MiB, sized for 1,000,000
    // bindings) are faulted in page by page as bindings first land in them:
    // on this VM 30-100 µs per 4 KiB page, one or two pages per attach into
    // fresh tables, a once-per-process cost. The first round ("cold") pays it;
    // the same VNICs detached and attached again ("warm": the same keys land
    // in the same slots) measure what every later attach costs.
    // NVEDGE_BENCH_CASES (e.g. "serial" or "warm,paced"): only these cases
    // (the rounds between them still run, unmeasured, so each finds the
    // tables as in a whole run).
    const cases = new Set((process.env.NVEDGE_BENCH_CASES ?? "cold,warm,paced,serial,detach").split(",").map((c) => c.trim()));
    const want = (c: string) => cases.has(c);
    const need = (...c: string[]) => c.some(want);
    if (need("cold", "warm", "paced", "detach")) {
      const cold = await measured(child.pid!, () => runMax(agents, attachJobs(1), WINDOW), "attach.max.cold");
      if (want("cold")) rows.push(row(broker.name, "max", "attach", vnics, cold, { window: WINDOW, tables: "cold" }));
      await measured(child.pid!, () => runMax(agents, detachJobs(1), WINDOW), "detach.max.0");
    }
    if (need("warm", "paced", "detach")) {
      // NVEDGE_BENCH_WARM_ROUNDS=N (default 2): N warm rounds, each after a
      // detach at max, each its own row. The first still pays V8's tier-up
      // of the paths it is the first to take (the tags in quarantine from
      // the detach, the index entries put back: 29 TurboFan compiles in it
      // by --trace-opt, their threads 13-18 µs per attach); the second is
      // what an NVE that has run a while spends (issue 15, bench/README.md
      // "cp17").
      const rounds = Math.max(1, Number(process.env.NVEDGE_BENCH_WARM_ROUNDS ?? 2) || 1);
      for (let k = 0; k < rounds; k++) {
        if (k > 0) await measured(child.pid!, () => runMax(agents, detachJobs(1), WINDOW), `detach.max.w${k}`);
        const warm = await measured(child.pid!, () => runMax(agents, attachJobs(1), WINDOW), "attach.max");
        if (want("warm")) rows.push(row(broker.name, "max", "attach", vnics, warm, { window: WINDOW, tables: "warm", ...(rounds > 1 ? { round: k + 1 } : {}) }));
      }
    }
    if (want("paced")) {
      // NVEDGE_BENCH_PACED_ROUNDS=N (default 1): N paced cases, each after a
      // detach at max, each its own row (`round`). The rounds at max leave the
      // per-turn path (a turn per request when paced: the socket's read and
      // write, the immediates, the streams) colder than the per-request one: the
      // first paced case tiers it up (--trace-opt: ~50 TurboFan compiles on the
      // NVE's own CPU during it, bench/README.md "gc15"); the second is what a
      // paced NVE that has run a while spends.
      const pacedRounds = Math.max(1, Number(process.env.NVEDGE_BENCH_PACED_ROUNDS ?? 1) || 1);
      for (let k = 0; k < pacedRounds; k++) {
        await measured(child.pid!, () => runMax(agents, detachJobs(1), WINDOW), k === 0 ? "detach.max.1" : `detach.max.p${k}`);
        // one scrape before and one after: each scrape resets the NVE's event-loop delay monitor (prom-client)
        const s0 = await scrape(metricsPort);
        const cap = await capture(url);
        const heap = await agentHeap();
        const paced = await measured(child.pid!, () => runPaced(agents, attachJobs(1), 2000, pacedRounds > 1 ? k + 1 : 0), "attach.paced");
        await heap?.stop(paced.lat.length);
        await cap?.stop();
        const s1 = await scrape(metricsPort);
        const st = [...paced.steady].sort((a, b) => a - b);
        rows.push(row(broker.name, "paced", "attach", vnics, paced, { offered_per_s: 2000, tables: "warm", ...(pacedRounds > 1 ? { round: k + 1 } : {}),
          after_1s: { requests: st.length, p50_ms: r2(pct(st, 50)), p99_ms: r2(pct(st, 99)), max_ms: r2(st[st.length - 1] ?? NaN) },
          ...agentsGcRow(paced.agentsGc),
          ...inNve(attachLatencies(s0), attachLatencies(s1)),
          ...pausesIn(s0 === undefined ? undefined : parsePauses(s0), s1 === undefined ? undefined : parsePauses(s1)) }));
      }
    }
    if (want("serial")) {
      // the latency floor: one agent, one request at a time
      const serial = agents.map((_, a) => (a === 0 ? Array.from({ length: Math.min(500, perAgent * 5) }, (_, i): Job =>
        (ag) => ag.attach(uuid(0, i, 3), { id: (i % VNS) + 1 }, [{ mac: mac(0, i, 3) }])) : []));
      rows.push(row(broker.name, "serial", "attach", serial[0].length, await measured(child.pid!, () => runMax(agents, serial, 1), "attach.serial"), { window: 1, agents_busy: 1 }));
    }
    if (want("detach")) rows.push(row(broker.name, "max", "detach", vnics, await measured(child.pid!, () => runMax(agents, detachJobs(1), WINDOW), "detach.max"), { window: WINDOW }));
    return rows;
  } finally {
    await Promise.all(agents.map((a) => a.stop().catch(() => {})));
    await Promise.all(raws.map((r) => r.client.endAsync(true).catch(() => {})));
    process.off("exit", killChild);
    child.kill("SIGTERM");
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)));
    await broker.close();
    // NVEDGE_BENCH_NVE_LOG=FILE: the NVE's log (and stdout) kept there
    if (process.env.NVEDGE_BENCH_NVE_LOG) try { copyFileSync(`${dir}/nve.log`, process.env.NVEDGE_BENCH_NVE_LOG); } catch { /* none */ }
    rmSync(dir, { recursive: true, force: true });
    if (storeDir !== dir) rmSync(storeDir, { recursive: true, force: true });
  }
}

/**
 * NVEDGE_BENCH_LOAD=agents|raw. `raw` (issue 15, bench/README.md "rate15"):
 * instead of the 100 agents (host/agent on the lean client), 100 hypervisor
 * connections with the same credentials speak nvo3-hv/1 directly: each
 * sends hello, then its requests, whose JSON is made before the round, and
 * checks each answer (ok, and an attach's tag a VLAN id, 1-4094), as the
 * data plane's traffic generators stand in for VMs. What the agent library
 * costs per request (its desired state, promises, validation, the bench's
 * jobs) is out of CPU 0, so the row measures what the NVE and its broker
 * sustain. An extra row: the agents' row stays the headline.
 */
function benchLoad(): "agents" | "raw" {
  const v = process.env.NVEDGE_BENCH_LOAD ?? "agents";
  if (v !== "agents" && v !== "raw") throw new Error(`NVEDGE_BENCH_LOAD=${v}: agents or raw`);
  return v;
}

/**
 * An answer's id, status and tag, read from its text without a parse of the
 * whole: the NVE writes `{"id":..,"ok":..` first (host/protocol/codec.ts
 * answerText, errorResponse). Undefined for anything else.
 */
export function rawAnswer(text: string): { id: string; ok: boolean; tag?: number } | undefined {
  const m = /^\{"id":"([^"\\]*)","ok":(true|false)[,}]/.exec(text);
  if (!m) return undefined;
  const tag = m[2] === "true" ? /"tag":(\d+)[,}]/.exec(text) : null;
  return { id: m[1], ok: m[2] === "true", ...(tag ? { tag: Number(tag[1]) } : {}) };
}

/** One hypervisor's raw connection: its requests' JSON, the next to send, when each left. */
export interface RawHv { hv: string; client: LeanMqttClient; reqTopic: string; jobs: string[]; next: number; sentAt: Float64Array; done: number; onAnswer?: (hv: RawHv, j: number, ok: boolean) => void }

export async function startRaw(url: string, creds: { username: string; password?: string }, hv: string, nve: string): Promise<RawHv> {
  const client = await connectLeanWhenReachable(url, () => {}, { ...creds, clientId: `${hv}-raw`, keepalive: 60, reconnectPeriod: 1000 });
  const r: RawHv = { hv, client, reqTopic: topics.req(nve, hv), jobs: [], next: 0, sentAt: new Float64Array(0), done: 0 };
  const helloId = `${hv}-hello`;
  let hello: ((ok: boolean) => void) | undefined;
  client.on("message", (_t, payload) => {
    const a = rawAnswer(payload.toString("latin1"));
    if (!a) { r.onAnswer?.(r, -1, false); return; }
    if (a.id === helloId) { hello?.(a.ok); return; }
    const j = Number(a.id);
    // an attach's answer names the tag the port carries (PROTOCOL.md §2 ConnectResult): a VLAN id
    r.onAnswer?.(r, j, a.ok && (!r.jobs[j]?.includes('"op":"vnic.attach"') || (a.tag !== undefined && a.tag >= 1 && a.tag <= 4094)));
  });
  await client.subscribeAsync([topics.rsp(hv)], { qos: 1 });
  const answered = new Promise<boolean>((res) => (hello = res));
  client.publish(r.reqTopic, JSON.stringify({ id: helloId, op: "hello", agent: "nvedge-bench-raw", capabilities: [] }), { qos: 1 });
  if (!await answered) throw new Error(`${hv}: the NVE refused hello`);
  return r;
}

/** `window` requests outstanding per hypervisor until each has sent its jobs; latencies in ms. */
export function runRaw(raws: RawHv[], jobs: string[][], window: number): Promise<{ lat: number[]; errors: number; secs: number }> {
  const lat: number[] = [];
  let errors = 0, left = raws.length;
  const t0 = performance.now();
  return new Promise((resolve) => {
    const send = (r: RawHv) => {
      const j = r.next++;
      r.sentAt[j] = performance.now();
      r.client.publish(r.reqTopic, r.jobs[j], { qos: 1 });
    };
    const finish = (r: RawHv) => {
      if (++r.done === r.jobs.length && --left === 0) resolve({ lat, errors, secs: (performance.now() - t0) / 1000 });
    };
    for (const [i, r] of raws.entries()) {
      r.jobs = jobs[i];
      r.next = 0;
      r.done = 0;
      r.sentAt = new Float64Array(r.jobs.length);
      r.onAnswer = (hv, j, ok) => {
        if (j < 0 || j >= hv.next || hv.sentAt[j] < 0) { errors++; return; } // not an answer to an open request of this round
        lat.push(performance.now() - hv.sentAt[j]);
        hv.sentAt[j] = -1;
        if (!ok) errors++;
        if (hv.next < hv.jobs.length) send(hv);
        finish(hv);
      };
      if (r.jobs.length === 0) { if (--left === 0) resolve({ lat, errors, secs: 0 }); continue; }
      for (let k = 0; k < Math.min(window, r.jobs.length); k++) send(r);
    }
  });
}

/** The raw load's rounds: cold attach, detach, then warm rounds (NVEDGE_BENCH_WARM_ROUNDS), each warm one a row. */
async function benchRaw(broker: Broker, url: string, nve: string, perAgent: number, nvePid: number, rows: object[], raws: RawHv[]): Promise<object[]> {
  for (let i = 0; i < AGENTS; i += 20)
    raws.push(...await Promise.all(Array.from({ length: Math.min(20, AGENTS - i) }, (_, k) => startRaw(url, broker.creds(`hv-${i + k}`), `hv-${i + k}`, nve))));
  // ids are the job's index in its round (the answer's id leads to it)
  const attach = (set: number) => raws.map((_, a) => Array.from({ length: perAgent }, (_, i) => JSON.stringify({ id: String(i), op: "vnic.attach", vnic: uuid(a, i, set),
    vn: { id: ((a * perAgent + i) % VNS) + 1 }, addrs: [{ mac: mac(a, i, set), ips: [`10.${set}.${a}.${i % 250 + 1}`] }] })));
  const detach = (set: number) => raws.map((_, a) => Array.from({ length: perAgent }, (_, i) => JSON.stringify({ id: String(i), op: "vnic.deactivate", vnic: uuid(a, i, set), reason: "shutdown" })));
  const name = `${broker.name}-raw`;
  const check = (what: string, r: { errors: number }) => { if (r.errors) throw new Error(`raw load: ${r.errors} ${what} answers not ok`); };
  check("cold attach", await measured(nvePid, () => runRaw(raws, attach(1), WINDOW), "raw.attach.cold"));
  const rounds = Math.max(1, Number(process.env.NVEDGE_BENCH_WARM_ROUNDS ?? 2) || 1);
  for (let k = 0; k < rounds; k++) {
    check("detach", await measured(nvePid, () => runRaw(raws, detach(1), WINDOW), `raw.detach.${k}`));
    const warm = await measured(nvePid, () => runRaw(raws, attach(1), WINDOW), "raw.attach.max");
    rows.push(row(name, "max", "attach", AGENTS * perAgent, warm, { load: "raw", window: WINDOW, tables: "warm", ...(rounds > 1 ? { round: k + 1 } : {}) }));
  }
  return rows;
}

/**
 * NVEDGE_BENCH_AGENT_HEAP=1: the agents' (this process's) bytes allocated
 * per paced request, by V8's sampling heap profiler with the collected
 * objects, and the sites that allocate most, on stderr: the garbage behind
 * the agents' scavenges, which hold every answer that arrives meanwhile (the
 * paced p99). The profiler slows the case: its other figures are not.
 */
async function agentHeap(): Promise<{ stop(requests: number): Promise<void> } | undefined> {
  if (!process.env.NVEDGE_BENCH_AGENT_HEAP) return undefined;
  const s = new Session();
  s.connect();
  await s.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  return { stop: async (requests: number) => {
    const { profile } = await s.post("HeapProfiler.stopSampling");
    s.disconnect();
    const { total, sites } = heapSites(profile.head);
    const n = Math.max(1, requests);
    for (const [site, b] of sites.slice(0, 30)) console.error(`control agents heap ${Math.round(b / n)} B/op ${site}`);
    console.error(`control agents heap total ${Math.round(total / n)} B/op`);
  } };
}

/**
 * NVEDGE_BENCH_PACED_PCAP=FILE: the paced case's MQTT on the loopback,
 * captured by tcpdump (root; nanosecond stamps, whole packets) for
 * bench/mqtt-hops.ts, which puts each request's time on its hops with the
 * paced trace (NVEDGE_BENCH_PACED_TRACE). tcpdump runs on the agents' CPU
 * (it inherits this process's mask); the kernel's copy of each packet is
 * charged to its sender.
 */
async function capture(url: string): Promise<{ stop(): Promise<void> } | undefined> {
  const file = process.env.NVEDGE_BENCH_PACED_PCAP;
  const port = /^mqtts?:\/\/[^/]*:(\d+)/.exec(url)?.[1];
  if (!file || !port) return undefined;
  const p = spawn("tcpdump", ["-i", "lo", "-n", "-s", "0", "-B", "65536", "--time-stamp-precision=nano", "-w", file, "tcp", "port", port], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => rej(new Error(`tcpdump did not start: ${err.trim()}`)), 5000);
    p.stderr!.on("data", (d: Buffer) => { err += d; if (/listening on/.test(err)) { clearTimeout(t); res(); } });
    p.once("exit", (c) => { clearTimeout(t); rej(new Error(`tcpdump exited (${c}): ${err.trim()}`)); });
  });
  console.error(`control pcap ${file} port ${port}`);
  return { stop: async () => {
    p.kill("SIGINT");
    await new Promise((r) => (p.exitCode !== null ? r(null) : p.once("exit", r)));
    console.error(`control pcap ${err.trim().split("\n").slice(-3).join(" | ")}`);
  } };
}

/**
 * The NVE's own histogram of vnic.attach latencies (nvedge_control_request_duration_seconds,
 * host/metrics: from the request's arrival in the NVE to its answer handed
 * to the MQTT client), cumulative counts per bucket bound in ms.
 */
async function scrape(port: number): Promise<string | undefined> {
  try {
    return await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  } catch {
    return undefined;
  }
}

function attachLatencies(text: string | undefined): Map<number, number> | undefined {
  if (text === undefined) return undefined;
  const m = new Map<number, number>();
  for (const x of text.matchAll(/^nvedge_control_request_duration_seconds_bucket\{[^}]*le="([^"]+)"[^}]*op="vnic\.attach"[^}]*\} (\d+)|^nvedge_control_request_duration_seconds_bucket\{[^}]*op="vnic\.attach"[^}]*le="([^"]+)"[^}]*\} (\d+)/gm)) {
    const le = x[1] ?? x[3], n = Number(x[2] ?? x[4]);
    m.set(le === "+Inf" ? Infinity : Number(le) * 1000, n);
  }
  return m.size ? m : undefined;
}

/**
 * What of a case's latency is the NVE's (issue 15 "paced p99"): the share of
 * its attaches the NVE answered within 5 ms of their arrival, and the bucket
 * bound its 99th percentile falls under, from the histogram's counts before
 * and after the case. The rest of the bench's p99 is the way there and back:
 * the agents' process, the broker, the sockets.
 */
function inNve(a: Map<number, number> | undefined, b: Map<number, number> | undefined): object {
  if (!a || !b) return {};
  const d = [...b].map(([le, n]) => [le, n - (a.get(le) ?? 0)] as const).sort((x, y) => x[0] - y[0]);
  const total = d.at(-1)?.[1] ?? 0;
  if (!total) return {};
  const p99 = d.find(([, n]) => n >= 0.99 * total)?.[0];
  return { nve_within_5ms_share: r2((d.find(([le]) => le === 5)?.[1] ?? NaN) / total), nve_p99_under_ms: p99 === Infinity ? "inf" : p99 };
}

/** prom-client's monitorEventLoopDelay resolution (collectDefaultMetrics' eventLoopMonitoringPrecision, 10 ms by default). */
const LOOP_TICK_MS = 10;
/** The NVE's pause counters as one scrape reads them (parsePauses). */
export interface Pauses { gc: Map<string, { n: number; sum: number; over10: number }>; lagP99?: number; lagMax?: number }
/**
 * What in the NVE itself could hold a paced request (issue 15 "paced p99"):
 * its GC pauses and its event loop's delays, from node's own monitors that
 * `--metrics` exports (prom-client's default metrics, prefix
 * nvedge_process_): the young generation's scavenges (`minor`) and the
 * old generation's pauses (`major`, `incremental`), count, sum and how many
 * reached 10 ms (the histogram's bound); the event loop's delay p99 and max
 * (monitorEventLoopDelay at 10 ms resolution, reset at every scrape, so the
 * scrape after a case covers that case alone; it records the interval
 * between its ticks, so 10 ms is taken off: 0 = no turn held it up). A pause holds every request
 * in the NVE at the time, those still in its socket too, which the request
 * histogram (from a request's read to its answer) does not see.
 */
export function parsePauses(text: string): Pauses {
  const gc = new Map<string, { n: number; sum: number; over10: number }>();
  const at = (k: string) => gc.get(k) ?? (gc.set(k, { n: 0, sum: 0, over10: 0 }), gc.get(k)!);
  const le10 = new Map<string, number>();
  let lagP99: number | undefined, lagMax: number | undefined;
  for (const line of text.split("\n")) {
    let m = /^nvedge_process_nodejs_gc_duration_seconds_(count|sum)\{[^}]*kind="(\w+)"[^}]*\} ([\d.e+-]+)/.exec(line);
    if (m) { if (m[1] === "count") at(m[2]).n = Number(m[3]); else at(m[2]).sum = Number(m[3]) * 1000; continue; }
    m = /^nvedge_process_nodejs_gc_duration_seconds_bucket\{(?=[^}]*le="0\.01")(?=[^}]*kind="(\w+)")[^}]*\} ([\d.e+-]+)/.exec(line);
    if (m) { le10.set(m[1], Number(m[2])); continue; }
    m = /^nvedge_process_nodejs_eventloop_lag_(p99|max)_seconds(?:\{[^}]*\})? ([\d.e+-]+)/.exec(line);
    if (m) { if (m[1] === "p99") lagP99 = Number(m[2]) * 1000; else lagMax = Number(m[2]) * 1000; }
  }
  for (const [k, g] of gc) g.over10 = g.n - (le10.get(k) ?? g.n);
  return { gc, lagP99, lagMax };
}
/** The NVE's pauses during a case: the GC counters' difference, the loop delay as scraped after it. */
export function pausesIn(a: Pauses | undefined, b: Pauses | undefined): object {
  if (!a || !b) return {};
  const d = (k: string) => {
    const x = b.gc.get(k), y = a.gc.get(k);
    return { n: (x?.n ?? 0) - (y?.n ?? 0), ms: r2((x?.sum ?? 0) - (y?.sum ?? 0)), over10ms: (x?.over10 ?? 0) - (y?.over10 ?? 0) };
  };
  const minor = d("minor"), major = d("major"), inc = d("incremental");
  return {
    nve_gc: { minor: { n: minor.n, ms: minor.ms, over_10ms: minor.over10ms, mean_ms: minor.n ? r2(minor.ms / minor.n) : 0 }, major: { n: major.n + inc.n, ms: r2(major.ms + inc.ms), over_10ms: major.over10ms + inc.over10ms } },
    // node's monitor records the interval between its 10 ms ticks: the delay is what exceeds 10 ms
    ...(b.lagP99 !== undefined ? { nve_loop_delay_p99_ms: r2(Math.max(0, b.lagP99 - LOOP_TICK_MS)), nve_loop_delay_max_ms: r2(Math.max(0, (b.lagMax ?? NaN) - LOOP_TICK_MS)) } : {}),
  };
}

/**
 * NVEDGE_BENCH_AGENT_CLIENT=mqttjs|lean: the agents' MQTT client. Default
 * `lean` (host/protocol/mqtt-lean.ts): the 100 agents stand for hypervisors
 * on other machines, and on this one they share a core with Mosquitto; with
 * MQTT.js they spent ~150 µs of that core per paced request and their
 * process's pauses were in the end-to-end p99 (issue 15: the bench measures
 * the NVE, not itself).
 */
function agentClient(): "mqttjs" | "lean" {
  const v = process.env.NVEDGE_BENCH_AGENT_CLIENT ?? "lean";
  if (v !== "mqttjs" && v !== "lean") throw new Error(`NVEDGE_BENCH_AGENT_CLIENT=${v}: mqttjs or lean`);
  return v;
}

/**
 * NVEDGE_BENCH_UNIX=none|nve|all (Mosquitto): who reaches the broker on its
 * Unix socket (`listener 0 PATH`, mqtt+unix:// in the clients) instead of
 * the loopback's TCP. `nve`: the NVE, as an NVE next to its broker would;
 * `all`: the agents too (they stand for hypervisors on other machines: it
 * takes the loopback's TCP cost off the core they share with the broker).
 * The capture (NVEDGE_BENCH_PACED_PCAP) sees TCP only.
 */
function benchUnix(): "none" | "nve" | "all" {
  const v = process.env.NVEDGE_BENCH_UNIX ?? "none";
  if (v !== "none" && v !== "nve" && v !== "all") throw new Error(`NVEDGE_BENCH_UNIX=${v}: none, nve or all`);
  return v;
}

/**
 * NVEDGE_BENCH_NVE_NODE: the Node binary the NVE runs under. `firmware`: the
 * one the firmware bundle ships (firmware/pins.json, Node 24: fetched from the
 * npm registry and integrity-checked by firmware/build.mjs, cached in
 * build/bench/runtime) with the V8 flags its launcher gives it, the runtime
 * whose figure counts on a DPU; a path:
 * that binary; unset: this process's Node. The agents stay on this one.
 */
let nveNodeBin: FirmwareNode | undefined;
/**
 * The Node flags a launcher script's `#!/usr/bin/env -S node FLAGS` line
 * gives Node (bin/nvedge.js: the young generation's size, issue 15 "paced
 * p99"), [] for a plain `#!/usr/bin/env node` or none. The bench starts the
 * NVE as `node bin/nvedge.js` (pinned, with flags of its own after these), so
 * it passes them itself to measure the NVE as the command runs it.
 */
export function launcherFlags(script: string): string[] {
  const first = script.slice(0, script.indexOf("\n") >>> 0).trim();
  const m = /^#!\s*\S*\benv\s+-S\s+node(?:\s+(.*))?$/.exec(first);
  return m?.[1] ? m[1].split(/\s+/).filter(Boolean) : [];
}

async function nveNode(): Promise<string> {
  const v = process.env.NVEDGE_BENCH_NVE_NODE;
  if (!v) return process.execPath;
  if (v !== "firmware") return v;
  nveNodeBin = await firmwareNode();
  return nveNodeBin.node;
}

/** The NVE's Node as a row names it: its version. */
let nveNodeVersion: string | undefined;

/**
 * NVEDGE_BENCH_NVE_CPU: the CPU the NVE gets to itself. By default the
 * machine's last CPU when it has two or more (issue 15: the figures are the
 * NVE's, not those of the agents and the broker sharing its core, as on a
 * DPU where they run elsewhere); `none` runs everything unpinned.
 */
function nveCpu(): number | undefined {
  const v = process.env.NVEDGE_BENCH_NVE_CPU;
  if (v === "none") return undefined;
  if (v === undefined || v === "") return defaultCpu();
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`NVEDGE_BENCH_NVE_CPU=${v}: a CPU number`);
  return n;
}

/**
 * With NVEDGE_BENCH_NVE_CPU, every thread of this process (and so the
 * Mosquitto it starts, which inherits the mask) onto the other CPUs.
 */
let cpus: number | undefined;
/** The machine's CPUs (nproc --all), asked once. */
function cpuCount(): number {
  return (cpus ??= (() => { try { return Number(execFileSync("nproc", ["--all"], { encoding: "utf8" }).trim()); } catch { return 0; } })());
}
let tasksetOk: boolean | undefined;
/** The last CPU of two or more, when taskset is there to pin (nveCpu's default). */
function defaultCpu(): number | undefined {
  tasksetOk ??= (() => { try { execFileSync("taskset", ["-V"], { stdio: "ignore" }); return true; } catch { return false; } })();
  return cpuCount() >= 2 && tasksetOk ? cpuCount() - 1 : undefined;
}

/**
 * NVEDGE_BENCH_AUTOGROUP_NICE=N (-20..19, root for < 0): the nice value of
 * this process's scheduler autogroup (its session: the agents, the NVE and
 * the Mosquitto it starts), so that on a machine shared with other work the
 * paced case measures the NVE and its broker and not the other work on their
 * cores (issue 15: what the paced tail waits for). With autogroups on (Linux's
 * default), CFS shares a CPU between sessions by their autogroup's weight
 * first; a process's own nice counts only inside its session. Put back after
 * the run. Not set by default: it takes CPU from whatever else runs.
 */
let autogroupNice: number | undefined;
function raiseAutogroup(): () => void {
  const v = process.env.NVEDGE_BENCH_AUTOGROUP_NICE;
  if (v === undefined || v === "") return () => {};
  const n = Number(v);
  if (!Number.isInteger(n) || n < -20 || n > 19) throw new Error(`NVEDGE_BENCH_AUTOGROUP_NICE=${v}: an integer from -20 to 19`);
  const before = /nice (-?\d+)/.exec(readFileSync("/proc/self/autogroup", "utf8"))?.[1];
  writeFileSync("/proc/self/autogroup", String(n));
  autogroupNice = n;
  return () => {
    autogroupNice = undefined;
    try { if (before !== undefined) writeFileSync("/proc/self/autogroup", before); } catch { /* as it is */ }
  };
}

/**
 * NVEDGE_BENCH_SCHED=batch: every thread of this process (the agents), and so
 * the Mosquitto and the NVE it starts, under SCHED_BATCH (sched(7): a woken
 * batch task does not preempt the running one). On CPU 0 the agents and
 * Mosquitto otherwise wake each other for a packet or two at a time (1.1
 * context switches and 2.1 epoll waits per attach in the agents' process);
 * as batch tasks each runs until it blocks (the agents' switches per attach
 * 1.1 -> 0.06-0.23), and in two of three pairs the agents' CPU per warm
 * attach fell from 50-53 to 41-44 µs (bench/README.md "rate15"). The rows
 * say `"sched":"batch"`. Not the default: the headline is measured as a
 * deployment runs, and batch tasks wait longer when woken (the paced p99).
 */
let sched: string | undefined;
function schedBatch(): () => void {
  const v = process.env.NVEDGE_BENCH_SCHED;
  if (v === undefined || v === "" || v === "other") return () => {};
  if (v !== "batch") throw new Error(`NVEDGE_BENCH_SCHED=${v}: batch or other`);
  execFileSync("chrt", ["-a", "-b", "-p", "0", String(process.pid)], { stdio: "ignore" });
  sched = "batch";
  return () => {
    sched = undefined;
    try { execFileSync("chrt", ["-a", "-o", "-p", "0", String(process.pid)], { stdio: "ignore" }); } catch { /* as it is */ }
  };
}

/** Returns a function that puts this process's CPU mask back (run.js may run other benches after this one). */
function pinBench(): () => void {
  const cpu = nveCpu();
  if (cpu === undefined) return () => {};
  const n = cpuCount();
  const others = Array.from({ length: n }, (_, i) => i).filter((i) => i !== cpu);
  if (cpu >= n || !others.length) throw new Error(`NVEDGE_BENCH_NVE_CPU=${cpu}: this machine has ${n} CPUs, and the agents need another`);
  const before = execFileSync("taskset", ["-cp", String(process.pid)], { encoding: "utf8" }).trim().split(":").pop()!.trim();
  execFileSync("taskset", ["-a", "-cp", others.join(","), String(process.pid)], { stdio: "ignore" });
  return () => { try { execFileSync("taskset", ["-a", "-cp", before, String(process.pid)], { stdio: "ignore" }); } catch { /* as it is */ } };
}

/**
 * The NVE's own work per attach without the MQTT transport (issue 15 "where
 * each microsecond goes"): in this process, on the core as nvedge run builds
 * it (memory store timed by the metrics, the data plane, the text log into a
 * file), the same 100 {hv}s and 10,000 VNICs, `window` requests outstanding
 * per {hv} as at max; each answer encoded and the request observed in the
 * metrics as NveService does. What the MQTT rows spend beyond this is the
 * transport's (MQTT.js, mqtt-packet, streams, sockets) and its GC.
 */
async function benchCore(perAgent: number): Promise<object[]> {
  const dir = mkdtempSync("/tmp/nvl-bench-control-core-");
  // the log into a file as nvedge run's reaches stderr: a turn's lines, then one asynchronous write (host/log/logger.ts)
  const logFd = openSync(`${dir}/nve.log`, "w");
  let held = "", armed = false, writing = Promise.resolve();
  const flushLog = () => {
    armed = false;
    const s = held;
    held = "";
    if (s) writing = writing.then(() => new Promise<void>((r) => write(logFd, s, () => r())));
  };
  const logger = new Logger({ service: "nve", id: "nve-bench", format: "text", dest: { write: (l: string) => {
    held += l;
    if (!armed) { armed = true; setImmediate(flushLog); }
  } } });
  try {
    const cfg = parseConfig(JSON.stringify(config("nve-bench")), "bench");
    const metrics = new NveMetrics({ counters: () => undefined, control: () => ({}) as never, mqttConnected: () => true }, { nve: cfg.nve });
    const store = metrics.instrumentStore(await MemoryStore.open());
    const dp = await DataPlane.create({});
    const core = await NveCore.open({ config: cfg, store, programmer: { apply: async (ops) => dp.apply(ops) }, log: logger.lines() });
    const enc = (o: object) => Buffer.from(JSON.stringify(o));
    for (let a = 0; a < AGENTS; a++) await core.request(`hv-${a}`, enc({ id: "h", op: "hello", agent: "bench", capabilities: [] }));
    let seq = 0;
    const run = async (op: "attach" | "detach", set: number, started?: () => Promise<void>) => {
      const reqs: [string, Buffer][] = [];
      for (let i = 0; i < perAgent; i++) for (let a = 0; a < AGENTS; a++) {
        const id = `r${seq++}`;
        reqs.push([`hv-${a}`, enc(op === "attach"
          ? { id, op: "vnic.attach", vnic: uuid(a, i, set), vn: { id: ((a * perAgent + i) % VNS) + 1 }, addrs: [{ mac: mac(a, i, set), ips: [`10.${set}.${a}.${i % 250 + 1}`] }] }
          : { id, op: "vnic.deactivate", vnic: uuid(a, i, set), reason: "shutdown" })]);
      }
      const lat: number[] = new Array(reqs.length);
      lat.length = 0;
      let errors = 0, next = 0;
      await started?.(); // the requests are built: the heap profile counts the NVE's allocations, not the bench's
      const c0 = process.cpuUsage(), t0 = performance.now();
      const lane = async () => {
        while (next < reqs.length) {
          const [hv, p] = reqs[next++];
          const t = performance.now(), seen = { op: "" };
          const r = await core.request(hv, p, seen);
          Buffer.from(answerText(r)); // as NveService sends it (its text when it has one)
          metrics.observeRequest(seen.op, r.ok ? "ok" : "other", (performance.now() - t) / 1000);
          if (r.ok) lat.push(performance.now() - t);
          else errors++;
        }
      };
      await Promise.all(Array.from({ length: AGENTS * WINDOW }, lane));
      const c = process.cpuUsage(c0);
      return { lat, errors, secs: (performance.now() - t0) / 1000, nveCpu: (c.user + c.system) / 1e6, nveSys: c.system / 1e6 };
    };
    const rows: object[] = [];
    const out = (op: string, r: Awaited<ReturnType<typeof run>>, extra: object) => {
      const s = [...r.lat].sort((a, b) => a - b);
      const o = { case: `control.${op}`, broker: "none (the core in-process)", mode: "max", agents: AGENTS, vnics: AGENTS * perAgent, window: WINDOW, ...extra,
        ops_per_s: Math.round(r.lat.length / r.secs), p50_ms: r2(pct(s, 50)), p99_ms: r2(pct(s, 99)), errors: r.errors, secs: r2(r.secs),
        nve_cpu_us_per_op: Math.round((r.nveCpu * 1e6) / Math.max(1, r.lat.length)), nve_sys_share: r2(r.nveSys / r.nveCpu), load1: r2(loadavg()[0]) };
      console.log(JSON.stringify(o));
      rows.push(o);
    };
    out("attach", await run("attach", 1), { tables: "cold" });
    await run("detach", 1);
    out("attach", await run("attach", 1), { tables: "warm" });
    out("detach", await run("detach", 1), {});
    // The garbage per request (issue 15: GC was a fifth of the NVE's CPU per
    // attach): one more warm round under V8's sampling heap profiler, every
    // allocation counted whether it survives or not (the collected objects
    // included), with the sites that allocate most on stderr. Its own rows:
    // the profiler slows the round, so its rate and CPU are not the figures.
    if (process.env.NVEDGE_BENCH_HEAP) {
      const sampled = async (op: "attach" | "detach") => {
        const s = new Session();
        s.connect();
        // NVEDGE_BENCH_HEAP=live: only what is still alive after the round
        // and a full GC (what each request leaves in the heap: what the
        // scavenges copy and promote)
        const live = process.env.NVEDGE_BENCH_HEAP === "live";
        const r = await run(op, 1, () => s.post("HeapProfiler.startSampling", { samplingInterval: 256, includeObjectsCollectedByMajorGC: !live, includeObjectsCollectedByMinorGC: !live }));
        if (live) await s.post("HeapProfiler.collectGarbage");
        const { profile } = await s.post("HeapProfiler.stopSampling");
        s.disconnect();
        const n = Math.max(1, r.lat.length + r.errors);
        const { total, sites } = heapSites(profile.head);
        for (const [site, b] of sites.slice(0, 25)) console.error(`control heap${live ? " live" : ""} ${op} ${Math.round(b / n)} B/op ${site}`);
        const o = { case: `control.${op}.heap${live ? ".live" : ""}`, broker: "none (the core in-process)", mode: "max", tables: op === "attach" ? "warm" : undefined, heap_bytes_per_op: Math.round(total / n), load1: r2(loadavg()[0]) };
        console.log(JSON.stringify(o));
        rows.push(o);
      };
      await sampled("attach");
      await sampled("detach");
    }
    await core.close();
    return rows;
  } finally {
    logger.close();
    flushLog();
    await writing;
    closeSync(logFd);
    rmSync(dir, { recursive: true, force: true });
  }
}

function mosquittoInstalled(): boolean {
  try {
    execFileSync("mosquitto", ["-h"], { stdio: "ignore", timeout: 5000 });
    return true;
  } catch (e) {
    return (e as { status?: number }).status !== undefined;
  }
}

export async function runControlBench(o: { quick?: boolean } = {}): Promise<object[]> {
  const quick = o.quick || process.env.NVEDGE_BENCH_QUICK === "1";
  const perAgent = quick ? 10 : 100;
  const only = process.env.NVEDGE_BENCH_BROKER;
  const want = (k: string) => !only || only === k;
  const rows: object[] = [];
  const unpin = pinBench();
  const unnice = raiseAutogroup();
  const unsched = schedBatch();
  try {
    await runBrokers(perAgent, want, rows);
  } finally {
    unsched();
    unnice();
    unpin();
  }
  return rows;
}

async function runBrokers(perAgent: number, want: (k: string) => boolean, rows: object[]): Promise<object[]> {
  if (want("core")) rows.push(...await benchCore(perAgent));
  if (want("embedded")) rows.push(...await benchOne("embedded", perAgent));
  if (want("embedded-thread")) rows.push(...await benchOne("embedded", perAgent, true));
  if (!want("mosquitto")) return rows;
  if (mosquittoInstalled()) rows.push(...await benchOne("mosquitto", perAgent));
  else {
    const r = { case: "control.attach", broker: "mosquitto", skipped: "mosquitto is not installed" };
    console.log(JSON.stringify(r));
    rows.push(r);
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runControlBench().then(() => process.exit(0), (e) => {
    console.error(`bench/control: ${(e as Error).message}`);
    process.exit(1);
  });
}
