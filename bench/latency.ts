// Latency through the NVE at low rates (issue 11, session 8): ping round
// trips from a VM through the device under test into a VXLAN tunnel to a
// remote host and back, in the pair lab (host/lab/pair.ts, every offload at
// its default), with the Linux kernel as the NVE (bridge + VXLAN device),
// nvedge `--io afpacket` and nvedge `--io afxdp`, interleaved in one run
// (kernel, afpacket, afxdp, kernel, ...), so load from elsewhere on the
// machine falls on all three. Each DUT is pinged every 20 ms and every
// 200 ms; a frame at such rates is alone in its batch, so what shows is the
// wait for a receive ring's block, a worker's wake-up, a deferred transmit:
// every delay a busy NVE hides.
//
//   node dist/bench/latency.js [--quick]      (or: node dist/bench/run.js --only latency)
//
// Rows: {"case":"latency-<dut>-<interval>ms","sent":…,"received":…,"avgMs":…,"p50Ms":…,"p99Ms":…,"maxMs":…,
//        "minMs":…,"rounds":[each round's average],"loadavg":[1,5,15 min]}
// Knobs: LAT_COUNT (pings per interval and round, default 100 at 20 ms and
// 25 at 200 ms; --quick 30 and 8), LAT_ROUNDS (default 2; --quick 1),
// LAT_DUTS (default "kernel,afpacket,afpacket-fifo,afxdp,afxdp-fifo"; afpacket and afxdp take the
// workers' scheduling after a dash: afpacket-fifo, afxdp-off, ...: see
// host/io/worker.ts `sched`), LAT_FAMILY (default 4).
// Needs root, iperf3 (the pair lab's check), clang, libbpf-dev.
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { pairUp, pairDown, pairUnavailable, startNvedge, startKernelNve, type PairTopo, type Dut } from "../host/lab/pair.js";
import { shAsync } from "../host/sys/sh.js";
import { quantile } from "./stats.js";

export interface LatencyRow {
  case: string; sent?: number; received?: number; avgMs?: number; p50Ms?: number; p99Ms?: number; maxMs?: number; minMs?: number;
  rounds?: number[]; loadavg?: number[]; skipped?: string; error?: string;
}

/** kernel, or nvedge's I/O with its workers' scheduling after a dash (host/io/worker.ts `sched`; none: the default, off). */
type DutName = string;
const DUT_RE = /^(kernel|(afpacket|afxdp)(?:-(fair|fifo|off))?)$/;

/** The round trips `ping` printed, in ms, in order (one per reply; lost ones are missing). */
export function parsePing(out: string): { sent: number; rtts: number[] } {
  const rtts = [...out.matchAll(/ time=([0-9.]+) ms/g)].map((m) => Number(m[1]));
  const tx = /(\d+) packets transmitted/.exec(out);
  return { sent: tx ? Number(tx[1]) : 0, rtts };
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

async function pingRun(t: PairTopo, intervalMs: number, count: number): Promise<{ sent: number; rtts: number[] }> {
  // -W: a lost reply is not waited for long; the whole run is bounded by timeoutMs
  const r = await shAsync(["ping", "-n", "-c", String(count), "-i", String(intervalMs / 1000), "-W", "1", t.remote.hostIp],
    { ns: t.vm.ns, allowFail: true, timeoutMs: count * intervalMs + 10_000 });
  return parsePing(r.stdout);
}

export async function runLatency(o: { counts?: Record<number, number>; rounds?: number; duts?: DutName[]; family?: 4 | 6; print?: (r: LatencyRow) => void } = {}): Promise<LatencyRow[]> {
  const rounds = o.rounds ?? Number(process.env.LAT_ROUNDS ?? 2);
  const duts = o.duts ?? ((process.env.LAT_DUTS ?? "kernel,afpacket,afpacket-fifo,afxdp,afxdp-fifo").split(",") as DutName[]);
  const family = o.family ?? (Number(process.env.LAT_FAMILY ?? 4) as 4 | 6);
  const env = process.env.LAT_COUNT ? Number(process.env.LAT_COUNT) : undefined;
  const counts: Record<number, number> = o.counts ?? { 20: env ?? 100, 200: env ?? 25 };
  const rows: LatencyRow[] = [];
  const emit = (r: LatencyRow) => { rows.push(r); o.print?.(r); };
  const why = pairUnavailable();
  if (why) { emit({ case: "latency", skipped: why }); return rows; }
  for (const d of duts) if (!DUT_RE.test(d)) throw new Error(`LAT_DUTS: ${d}: expected kernel, afpacket or afxdp, the last two optionally with -fair, -fifo or -off`);

  const t = await pairUp({ family });
  const got = new Map<string, { sent: number; rtts: number[]; avgs: number[]; load: number[] }>();
  try {
    for (let k = 0; k < rounds; k++) {
      for (const d of duts) {
        const m = DUT_RE.exec(d)!;
        const dut: Dut = d === "kernel" ? await startKernelNve(t)
          : await startNvedge(t, { io: m[2] as "afpacket" | "afxdp", ...(m[3] ? { sched: m[3] as "fair" | "fifo" | "off" } : {}) });
        try {
          // a few pings first: ARP/ND on both sides and the first frames' paths are not what is measured
          await pingRun(t, 20, 5);
          for (const iv of Object.keys(counts).map(Number)) {
            const p = await pingRun(t, iv, counts[iv]);
            const key = `${d} ${iv}`;
            const g = got.get(key) ?? { sent: 0, rtts: [], avgs: [], load: [] };
            g.sent += p.sent;
            g.rtts.push(...p.rtts);
            if (p.rtts.length) g.avgs.push(r3(p.rtts.reduce((a, b) => a + b, 0) / p.rtts.length));
            g.load = loadavg().map((x) => Math.round(x * 100) / 100);
            got.set(key, g);
          }
        } finally {
          await dut.stop();
        }
      }
    }
    for (const d of duts) {
      for (const iv of Object.keys(counts).map(Number)) {
        const g = got.get(`${d} ${iv}`)!;
        const x = g.rtts;
        emit({ case: `latency-${d}-${iv}ms`, sent: g.sent, received: x.length,
               avgMs: r3(x.reduce((a, b) => a + b, 0) / Math.max(1, x.length)), p50Ms: quantile(x, 0.5), p99Ms: quantile(x, 0.99),
               maxMs: Math.max(...x), minMs: Math.min(...x), rounds: g.avgs, loadavg: g.load });
      }
    }
  } catch (e) {
    emit({ case: "latency", error: (e as Error).message.split("\n").slice(0, 3).join(" / ") });
  } finally {
    await pairDown(t);
  }
  return rows;
}

export async function runLatencyBench(o: { quick?: boolean } = {}): Promise<object[]> {
  const quick = o.quick || process.env.NVEDGE_BENCH_QUICK === "1";
  return runLatency({ ...(quick ? { counts: { 20: 30, 200: 8 }, rounds: 1 } : {}), print: (r) => console.log(JSON.stringify(r)) });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runLatencyBench({ quick: process.argv.includes("--quick") }).then(() => process.exit(0), (e) => { console.error(`bench latency: ${(e as Error).message}`); process.exit(1); });
}
