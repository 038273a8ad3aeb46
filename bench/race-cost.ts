// What a frame costs the DUT's busiest thread in the race's topology (issue
// 11, session 11): the race's figure is frames per second at < 1 % loss,
// which on a 2-core machine shared with other work says as much about the
// machine's load as about the DUT. This one offers the race's frames (the
// loop generator, bench/race.ts) for a few seconds per setting, in turn, to
// ONE DUT kept up throughout, and reads per setting:
// - `mpps`: frames counted at the sink;
// - the DUT's threads' CPU (/proc/<pid>/task/<tid>/schedstat: run and wait
//   time) in the window, the busiest first, with `usPerFrame` = its run time
//   over the frames counted: for nvedge the worker's cost per frame, which
//   under load stays what it is while its share of the core shrinks (`waitMs`:
//   time it was runnable but not run);
// - nvedge's loop counters in the window (batches, outputs: `batch` is the
//   mean batch, 256 when saturated);
// - per CPU, the softirq time in the window (/proc/stat, 10 ms ticks) and
//   its µs per frame: the kernel DUT's work is softirq on the CPU RPS
//   steers it to (CPU 1; CPU 0 is the generator's), wherever it runs
//   (ksoftirqd or inline), so that is the kernel's cost per frame, on a
//   machine with no other network traffic (any other softirq counts too:
//   on the shared machine of session 11 it was not usable).
// Settings: RACE_COST_DIRS (default "encap,decap") x RACE_COST_SINKS
// (default "stack,xdp,stack,xdp": the race's sinks, bench/race.ts Sink,
// interleaved so load falls on both alike), at RACE_COST_RATE frames/s
// (default 0: flat out, the DUT saturated) for RACE_COST_SECONDS (default 3).
// RACE_COST_DUT: afxdp (default), afpacket (nvedge, 1 worker), kernel or
// kernel-norps (then only the kernel threads in the DUT's namespace are
// nvedge's none: `top` lists ksoftirqd too, for the kernel's softirq).
// Prints one JSON line per setting. Needs what the race needs.
//   node dist/bench/race-cost.js
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildTopo, removeTopo, napiOn, nvedgeDut, kernelDutWith, buildXdpLoop, attachXdpSink, sinksFrom, rxPackets, encapFrame, decapFrame, type Dut, type RaceTopo } from "./race.js";
import { adminRequest } from "../host/control/admin.js";
import { sleep, netnsPids } from "../host/sys/sh.js";

interface ThreadCost { thread: string; comm: string; runMs: number; waitMs: number; usPerFrame: number }
export interface CostRow { case: string; dir: string; sink: string; rate: number; mpps: number; top: ThreadCost[]; loop?: Record<string, number>; batch?: number;
  /** Per CPU, the window's softirq time (ms, /proc/stat) and its µs per frame counted: the kernel DUT's cost is its RPS CPU's softirq. */
  softirq: { cpu: number; ms: number; usPerFrame: number }[]; error?: string }

/** schedstat (run ns, wait ns) of every thread of the DUT's namespace and of the kernel's softirq threads. */
function threads(t: RaceTopo): Map<string, { run: number; wait: number; comm: string }> {
  const pids = new Set(netnsPids(t.dut));
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try { if (/^ksoftirqd\//.test(readFileSync(`/proc/${p}/comm`, "utf8"))) pids.add(Number(p)); } catch { /* gone */ }
  }
  const out = new Map<string, { run: number; wait: number; comm: string }>();
  for (const pid of pids) {
    let tids: string[] = [];
    try { tids = readdirSync(`/proc/${pid}/task`); } catch { continue; }
    for (const tid of tids) {
      try {
        const [run, wait] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ").map(Number);
        out.set(`${pid}/${tid}`, { run, wait, comm: readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim() });
      } catch { /* gone */ }
    }
  }
  return out;
}

/** Per CPU, the softirq time so far (ms; /proc/stat's 7th field, in USER_HZ ticks of 10 ms). */
function softirqMs(): number[] {
  return readFileSync("/proc/stat", "utf8").split("\n").filter((l) => /^cpu\d/.test(l)).map((l) => Number(l.split(/\s+/)[7]) * 10);
}

export async function runRaceCost(print: (r: CostRow) => void = (r) => console.log(JSON.stringify(r))): Promise<CostRow[]> {
  const which = process.env.RACE_COST_DUT ?? "afxdp";
  const rate = Number(process.env.RACE_COST_RATE ?? 0), seconds = Number(process.env.RACE_COST_SECONDS ?? 3);
  const dirs = (process.env.RACE_COST_DIRS ?? "encap,decap").split(",").filter((d): d is "encap" | "decap" => d === "encap" || d === "decap");
  const sinks = (process.env.RACE_COST_SINKS ?? "stack,xdp,stack,xdp").split(",").map((s) => sinksFrom(s)[0]);
  const dut: Dut = which === "kernel" ? kernelDutWith({ rps: true }) : which === "kernel-norps" ? kernelDutWith({ rps: false })
    : which === "afpacket" || which === "afxdp" ? nvedgeDut(1, which) : (() => { throw new Error(`RACE_COST_DUT: "${which}" is not afxdp, afpacket, kernel or kernel-norps`); })();
  const why = dut.unavailable?.();
  if (why) { const r = { case: `race-cost-${which}`, dir: "", sink: "", rate, mpps: 0, top: [], softirq: [], error: why }; print(r); return [r]; }
  const t = buildTopo();
  const rows: CostRow[] = [];
  let stop: (() => Promise<void>) | undefined;
  try {
    const gen = buildXdpLoop(t.workDir);
    if (typeof gen === "string") throw new Error(`the loop generator: ${gen}`);
    napiOn(t);
    stop = await dut.start(t);
    const nvedge = which === "afxdp" || which === "afpacket";
    const loop = async (): Promise<Record<string, number>> => {
      if (!nvedge) return {};
      const c = await adminRequest(`${t.workDir}/store-${which}-1/nvedge.sock`, { cmd: "show", what: "counters" }, 2000).catch(() => ({})) as { loop?: Record<string, number> };
      return c.loop ?? {};
    };
    for (const dir of dirs) for (const sink of sinks) {
      const p = dir === "encap" ? { gns: t.gen, gdev: t.trunk, f: encapFrame(t), cns: t.sink, cdev: t.underlay }
        : { gns: t.sink, gdev: t.underlay, f: decapFrame(t), cns: t.gen, cdev: t.trunk };
      const detach = sink === "xdp" ? attachXdpSink(t.workDir, p.cns, p.cdev) : undefined;
      try {
        const run = gen.run(p.gns, p.gdev, p.f, t.workDir, 500 + seconds * 1000 + 300, rate || undefined);
        await sleep(500);
        const l0 = await loop(), a = threads(t), r0 = rxPackets(p.cns, p.cdev), s0 = softirqMs(), t0 = Date.now();
        await sleep(seconds * 1000);
        const l1 = await loop(), b = threads(t), r1 = rxPackets(p.cns, p.cdev), s1 = softirqMs(), t1 = Date.now();
        await run;
        const frames = Math.max(r1 - r0, 1);
        const top = [...b.entries()].flatMap(([k, v]) => {
          const u = a.get(k);
          return u ? [{ thread: k, comm: v.comm, runMs: Math.round((v.run - u.run) / 1e6), waitMs: Math.round((v.wait - u.wait) / 1e6),
            usPerFrame: Math.round(((v.run - u.run) / 1e3 / frames) * 1000) / 1000 }] : [];
        }).sort((x, y) => y.runMs - x.runMs).slice(0, 3);
        const ld = Object.fromEntries(Object.keys(l1).map((k) => [k, l1[k] - (l0[k] ?? 0)]));
        const row: CostRow = { case: `race-cost-${which}-${dir}-${sink}`, dir, sink, rate, mpps: Math.round((frames / ((t1 - t0) / 1e3) / 1e6) * 1000) / 1000, top,
          softirq: s1.map((x, cpu) => ({ cpu, ms: x - s0[cpu], usPerFrame: Math.round(((x - s0[cpu]) * 1e3 / frames) * 1000) / 1000 })),
          ...(nvedge ? { loop: ld, batch: Math.round((ld.outputs / Math.max(ld.batches, 1)) * 10) / 10 } : {}) };
        rows.push(row);
        print(row);
      } finally {
        detach?.();
      }
    }
  } finally {
    await stop?.().catch(() => undefined);
    await removeTopo(t);
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.getuid?.() !== 0) console.log(JSON.stringify({ case: "race-cost", skipped: "needs root" }));
  else await runRaceCost();
}
