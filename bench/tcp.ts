// The TCP case of issue 11: iperf3 from a VM through the NVE into a VXLAN
// tunnel to a remote host (encap) and back (decap, iperf3 -R), every offload
// at its default (the VM's TCP leaves as partial checksums and TSO
// super-frames, the remote kernel VTEP's as UDP-tunnel GSO), with nvedge
// (`nvedge run --io afpacket`) and with the Linux kernel as the NVE (bridge +
// VXLAN device) on the same links in the same run: the pair lab,
// host/lab/pair.ts. Rounds alternate the two DUTs (kernel, nvedge, kernel,
// ...), so load from elsewhere on the machine falls on both; each row is the
// median of its rounds.
//
//   node dist/bench/tcp.js [--quick]        (or: node dist/bench/run.js --only tcp)
//
// Rows: {"case":"tcp-kernel-ipv4-encap","mbps":…,"rounds":[…],"retransmits":…,"loadavg":[1,5,15 min],
//        "cpu":{"machineBusy": share of all cores busy during the test}},
//       {"case":"tcp-nvedge-w1-ipv4-encap","mbps":…,"ratio":nvedge/kernel,"gso":{…},"drops":{…},
//        "cpu":{…, "nvedgeCores", "busiestThreadCores": cores used by nvedge and its busiest thread},…}, same for decap.
// Knobs: TCP_SECONDS (per iperf3 test, default 5; --quick 2), TCP_ROUNDS
// (default 3; --quick 1), TCP_WORKERS (nvedge workers, default "1"),
// TCP_FAMILIES (default "4"; "4,6" adds the IPv6 underlay), TCP_IO (nvedge's
// packet I/O, default "afpacket"; "afpacket,afxdp" adds `--io afxdp`, rows
// tcp-nvedge-afxdp-wN-…, its ratio against the same kernel rounds), TCP_ALT (a
// path to another built checkout, e.g. a worktree of main: its nvedge runs as
// one more DUT in every round, right after this one's, rows
// tcp-nvedge-alt-wN-…, so an A/B meets the same load; issue 11, session 9).
// Needs root, iperf3, clang, libbpf-dev (the tag's tc-BPF on the trunk).
import { loadavg } from "node:os";
import { readFileSync, readdirSync } from "node:fs";
import { cpuSecondsOf } from "./proc-cpu.js";
import { median } from "./stats.js";
import { fileURLToPath } from "node:url";
import { pairUp, pairDown, pairUnavailable, startNvedge, startKernelNve, iperf, pairStore, type PairTopo, type Dut } from "../host/lab/pair.js";
import { shAsync } from "../host/sys/sh.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

export interface TcpRow {
  case: string; mbps?: number; ratio?: number; rounds?: number[]; retransmits?: number; loadavg?: number[]; cpu?: CpuShare;
  gso?: { frames: number; segments: number; bad: number; whole: number; tunnel?: number }; oversize?: number; csumNotReady?: number; kernelDrops?: number; drops?: Record<string, number>;
  skipped?: string; error?: string;
}

/** The machine's busy and total CPU time so far, in clock ticks summed over cores (/proc/stat's first line; idle and iowait are not busy). */
function machineCpu(): { busy: number; total: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };
}

/** Each thread's CPU seconds so far (user + system) in process pid, by thread id; empty once it is gone. */
function threadCpu(pid: number | undefined): Map<string, number> {
  const m = new Map<string, number>();
  if (!pid) return m;
  let tids: string[];
  try { tids = readdirSync(`/proc/${pid}/task`); } catch { return m; } // the process ended
  for (const tid of tids) {
    const c = cpuSecondsOf(pid, Number(tid));
    if (!Number.isNaN(c.user)) m.set(tid, c.user + c.sys);
  }
  return m;
}

/**
 * Where the CPU went during one iperf3 test: the machine's busy share of
 * all its cores (1 = every core busy), and for nvedge its process and its
 * busiest thread (a packet I/O worker) in cores. A DUT whose busiest thread
 * is near 1 core is bound by its own per-byte work; one well under, with the
 * machine not saturated, by latency (batching, wake-ups).
 */
interface CpuShare { machineBusy: number; nvedgeCores?: number; busiestThreadCores?: number }
async function withCpu<T>(pid: number | undefined, run: () => Promise<T>): Promise<[T, CpuShare]> {
  const m0 = machineCpu(), t0 = threadCpu(pid), w0 = Date.now();
  const r = await run();
  const m1 = machineCpu(), t1 = threadCpu(pid), secs = (Date.now() - w0) / 1000;
  const cpu: CpuShare = { machineBusy: Math.round(((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * 100) / 100 };
  if (pid) {
    const d = [...t1].map(([tid, v]) => v - (t0.get(tid) ?? 0));
    cpu.nvedgeCores = Math.round((d.reduce((a, b) => a + b, 0) / secs) * 100) / 100;
    cpu.busiestThreadCores = Math.round((Math.max(0, ...d) / secs) * 100) / 100;
  }
  return [r, cpu];
}

const round1 = (x: number) => Math.round(x * 10) / 10;
/** Each CPU figure's median over the rounds. */
const medianCpu = (xs: CpuShare[]): CpuShare => {
  const pick = (k: keyof CpuShare) => { const v = xs.map((x) => x[k]).filter((x): x is number => x !== undefined); return v.length ? median(v) : undefined; };
  return { machineBusy: pick("machineBusy")!, ...(pick("nvedgeCores") !== undefined ? { nvedgeCores: pick("nvedgeCores"), busiestThreadCores: pick("busiestThreadCores") } : {}) };
};

interface IoCounters { gsoFrames: number; gsoSegments: number; gsoBad: number; gsoWholeSent: number; gsoTunnelSent?: number; csumNotReady: number; kernelDrops: number; oversize: number }

/** nvedge's own view after a test: GSO super-frames cut (gso.frames, .segments) or sent whole (gso.whole, assembly/pipeline/gso.ts; gso.tunnel: encap ones sent as one VXLAN frame through the tunnel TX tap, host/io/tunnel-output.ts), partial checksums met, kernel ring drops, data-plane drops by reason. */
async function nvedgeCounters(t: PairTopo): Promise<{ io: Record<string, IoCounters>; drops: Record<string, number> }> {
  const r = await shAsync([process.execPath, `${root}bin/nvedge.js`, "show", "counters", "--json", "--store", pairStore(t)], { timeoutMs: 15_000 });
  const j = JSON.parse(r.stdout) as { io: Record<string, IoCounters>; counters: { drops: Record<string, number> } };
  return { io: j.io, drops: Object.fromEntries(Object.entries(j.counters.drops).filter(([, v]) => v > 0)) };
}

export async function runTcp(o: { seconds?: number; rounds?: number; workers?: number[]; families?: (4 | 6)[]; io?: ("afpacket" | "afxdp")[]; alt?: string; print?: (r: TcpRow) => void } = {}): Promise<TcpRow[]> {
  const seconds = o.seconds ?? Number(process.env.TCP_SECONDS ?? 5);
  const rounds = o.rounds ?? Number(process.env.TCP_ROUNDS ?? 3);
  const workers = o.workers ?? (process.env.TCP_WORKERS ?? "1").split(",").map(Number);
  const families = o.families ?? ((process.env.TCP_FAMILIES ?? "4").split(",").map(Number) as (4 | 6)[]);
  const ios = o.io ?? ((process.env.TCP_IO ?? "afpacket").split(",") as ("afpacket" | "afxdp")[]);
  for (const x of ios) if (x !== "afpacket" && x !== "afxdp") throw new Error(`TCP_IO: ${x}: expected afpacket or afxdp`);
  // afpacket keeps its old row names (nvedge-wN); afxdp's say so
  const nvName = (io: string, w: number) => (io === "afxdp" ? `nvedge-afxdp-w${w}` : `nvedge-w${w}`);
  const alt = o.alt ?? process.env.TCP_ALT;
  const altName = (io: string, w: number) => nvName(io, w).replace(/^nvedge-/, "nvedge-alt-");
  const rows: TcpRow[] = [];
  const emit = (r: TcpRow) => { rows.push(r); o.print?.(r); };
  const why = pairUnavailable();
  if (why) { emit({ case: "tcp", skipped: why }); return rows; }

  for (const family of families) {
    const t = await pairUp({ family });
    const fam = `ipv${family}`;
    try {
      const duts: { name: string; start: () => Promise<Dut>; nvedge: boolean }[] = [
        { name: "kernel", start: () => startKernelNve(t), nvedge: false },
        ...ios.flatMap((io) => workers.flatMap((w) => [
          { name: nvName(io, w), start: () => startNvedge(t, { workers: w, io }), nvedge: true },
          ...(alt ? [{ name: altName(io, w), start: () => startNvedge(t, { workers: w, io, checkout: alt }), nvedge: true }] : []),
        ])),
      ];
      const got = new Map<string, { mbps: number[]; retr: number[]; load: number[][]; cpu: CpuShare[]; gso?: TcpRow["gso"]; oversize?: number; csum?: number; kdrops?: number; drops?: Record<string, number> }>();
      const failed = new Map<string, string>(); // a DUT that failed a test is left out of the rounds after (its row says why)
      for (let k = 0; k < rounds; k++) {
        for (const d of duts) {
          if (failed.has(d.name)) continue;
          let dut: Dut;
          try { dut = await d.start(); } catch (e) { if (!d.nvedge) throw e; failed.set(d.name, (e as Error).message.split("\n")[0]); continue; }
          try {
            for (const dir of ["encap", "decap"] as const) {
              const [r, cpu] = await withCpu(dut.pid, () => iperf(t, dir, seconds));
              const key = `${d.name} ${dir}`;
              const g = got.get(key) ?? { mbps: [], retr: [], load: [], cpu: [] };
              g.cpu.push(cpu);
              g.mbps.push(round1(r.bitsPerSecond / 1e6));
              g.retr.push(r.retransmits);
              g.load.push(loadavg().map((x) => Math.round(x * 100) / 100));
              got.set(key, g);
            }
            if (d.nvedge) {
              // One nvedge process per round (fresh counters): summed over rounds, per direction's interface.
              const c = await nvedgeCounters(t);
              // AF_XDP sockets have no GSO or ring-drop figures of AF_PACKET's kind: 0
              const z = (x: IoCounters | undefined): IoCounters => ({ gsoFrames: 0, gsoSegments: 0, gsoBad: 0, gsoWholeSent: 0, csumNotReady: 0, kernelDrops: 0, oversize: 0, ...x });
              const trunk = z(c.io[t.dut.trunk]), ul = z(c.io[t.dut.underlay]);
              for (const [dir, io] of [["encap", trunk], ["decap", ul]] as const) {
                const g = got.get(`${d.name} ${dir}`)!;
                g.gso = { frames: (g.gso?.frames ?? 0) + io.gsoFrames, segments: (g.gso?.segments ?? 0) + io.gsoSegments, bad: (g.gso?.bad ?? 0) + io.gsoBad,
                          whole: (g.gso?.whole ?? 0) + io.gsoWholeSent,
                          ...(dir === "encap" ? { tunnel: (g.gso?.tunnel ?? 0) + (ul.gsoTunnelSent ?? 0) } : {}) };
                g.csum = (g.csum ?? 0) + io.csumNotReady;
                g.oversize = (g.oversize ?? 0) + io.oversize;
                g.kdrops = (g.kdrops ?? 0) + trunk.kernelDrops + ul.kernelDrops;
                g.drops = { ...c.drops };
              }
            }
          } catch (e) {
            if (!d.nvedge) throw e; // without the kernel's rows there is nothing to compare with
            failed.set(d.name, (e as Error).message.split("\n")[0]);
          } finally {
            await dut.stop();
          }
        }
      }
      for (const dir of ["encap", "decap"] as const) {
        const kernel = got.get(`kernel ${dir}`)!;
        const kmbps = round1(median(kernel.mbps));
        emit({ case: `tcp-kernel-${fam}-${dir}`, mbps: kmbps, rounds: kernel.mbps, retransmits: median(kernel.retr), loadavg: kernel.load.at(-1), cpu: medianCpu(kernel.cpu) });
        for (const name of ios.flatMap((io) => workers.flatMap((w) => [nvName(io, w), ...(alt ? [altName(io, w)] : [])]))) {
          const why = failed.get(name);
          if (why) { emit({ case: `tcp-${name}-${fam}-${dir}`, error: why }); continue; }
          const g = got.get(`${name} ${dir}`)!;
          const mbps = round1(median(g.mbps));
          emit({ case: `tcp-${name}-${fam}-${dir}`, mbps, ratio: kmbps > 0 ? Math.round((mbps / kmbps) * 100) / 100 : undefined, rounds: g.mbps,
                 retransmits: median(g.retr), loadavg: g.load.at(-1), cpu: medianCpu(g.cpu), gso: g.gso, oversize: g.oversize, csumNotReady: g.csum, kernelDrops: g.kdrops, drops: g.drops });
        }
      }
    } catch (e) {
      emit({ case: `tcp-${fam}`, error: (e as Error).message.split("\n").slice(0, 3).join(" / ") });
    } finally {
      await pairDown(t);
    }
  }
  return rows;
}

export async function runTcpBench(o: { quick?: boolean } = {}): Promise<object[]> {
  const quick = o.quick || process.env.NVEDGE_BENCH_QUICK === "1";
  return runTcp({ ...(quick ? { seconds: 2, rounds: 1 } : {}), print: (r) => console.log(JSON.stringify(r)) });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runTcpBench({ quick: process.argv.includes("--quick") }).then(() => process.exit(0), (e) => { console.error(`bench tcp: ${(e as Error).message}`); process.exit(1); });
}
