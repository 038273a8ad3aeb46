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
// Rows: {"case":"tcp-kernel-ipv4-encap","mbps":…,"rounds":[…],"retransmits":…,"loadavg":[1,5,15 min]},
//       {"case":"tcp-nvedge-w1-ipv4-encap","mbps":…,"ratio":nvedge/kernel,"gso":{…},"drops":{…},…}, same for decap.
// Knobs: TCP_SECONDS (per iperf3 test, default 5; --quick 2), TCP_ROUNDS
// (default 3; --quick 1), TCP_WORKERS (nvedge workers, default "1"),
// TCP_FAMILIES (default "4"; "4,6" adds the IPv6 underlay). Needs root,
// iperf3, clang, libbpf-dev (the tag's tc-BPF on the trunk).
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { pairUp, pairDown, pairUnavailable, startNvedge, startKernelNve, iperf, pairStore, type PairTopo, type Dut } from "../host/lab/pair.js";
import { shAsync } from "../host/sys/sh.js";

const root = fileURLToPath(new URL("../../", import.meta.url));

export interface TcpRow {
  case: string; mbps?: number; ratio?: number; rounds?: number[]; retransmits?: number; loadavg?: number[];
  gso?: { frames: number; segments: number; bad: number; whole: number; tunnel?: number }; oversize?: number; csumNotReady?: number; kernelDrops?: number; drops?: Record<string, number>;
  skipped?: string; error?: string;
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const round1 = (x: number) => Math.round(x * 10) / 10;

interface IoCounters { gsoFrames: number; gsoSegments: number; gsoBad: number; gsoWholeSent: number; gsoTunnelSent?: number; csumNotReady: number; kernelDrops: number; oversize: number }

/** nvedge's own view after a test: GSO super-frames cut (gso.frames, .segments) or sent whole (gso.whole, assembly/pipeline/gso.ts; gso.tunnel: encap ones sent as one VXLAN frame through the tunnel TX tap, host/io/tunnel-output.ts), partial checksums met, kernel ring drops, data-plane drops by reason. */
async function nvedgeCounters(t: PairTopo): Promise<{ io: Record<string, IoCounters>; drops: Record<string, number> }> {
  const r = await shAsync([process.execPath, `${root}bin/nvedge.js`, "show", "counters", "--json", "--store", pairStore(t)], { timeoutMs: 15_000 });
  const j = JSON.parse(r.stdout) as { io: Record<string, IoCounters>; counters: { drops: Record<string, number> } };
  return { io: j.io, drops: Object.fromEntries(Object.entries(j.counters.drops).filter(([, v]) => v > 0)) };
}

export async function runTcp(o: { seconds?: number; rounds?: number; workers?: number[]; families?: (4 | 6)[]; print?: (r: TcpRow) => void } = {}): Promise<TcpRow[]> {
  const seconds = o.seconds ?? Number(process.env.TCP_SECONDS ?? 5);
  const rounds = o.rounds ?? Number(process.env.TCP_ROUNDS ?? 3);
  const workers = o.workers ?? (process.env.TCP_WORKERS ?? "1").split(",").map(Number);
  const families = o.families ?? ((process.env.TCP_FAMILIES ?? "4").split(",").map(Number) as (4 | 6)[]);
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
        ...workers.map((w) => ({ name: `nvedge-w${w}`, start: () => startNvedge(t, { workers: w }), nvedge: true })),
      ];
      const got = new Map<string, { mbps: number[]; retr: number[]; load: number[][]; gso?: TcpRow["gso"]; oversize?: number; csum?: number; kdrops?: number; drops?: Record<string, number> }>();
      for (let k = 0; k < rounds; k++) {
        for (const d of duts) {
          const dut = await d.start();
          try {
            for (const dir of ["encap", "decap"] as const) {
              const r = await iperf(t, dir, seconds);
              const key = `${d.name} ${dir}`;
              const g = got.get(key) ?? { mbps: [], retr: [], load: [] };
              g.mbps.push(round1(r.bitsPerSecond / 1e6));
              g.retr.push(r.retransmits);
              g.load.push(loadavg().map((x) => Math.round(x * 100) / 100));
              got.set(key, g);
            }
            if (d.nvedge) {
              // One nvedge process per round (fresh counters): summed over rounds, per direction's interface.
              const c = await nvedgeCounters(t);
              const trunk = c.io[t.dut.trunk], ul = c.io[t.dut.underlay];
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
          } finally {
            await dut.stop();
          }
        }
      }
      for (const dir of ["encap", "decap"] as const) {
        const kernel = got.get(`kernel ${dir}`)!;
        const kmbps = round1(median(kernel.mbps));
        emit({ case: `tcp-kernel-${fam}-${dir}`, mbps: kmbps, rounds: kernel.mbps, retransmits: median(kernel.retr), loadavg: kernel.load.at(-1) });
        for (const w of workers) {
          const g = got.get(`nvedge-w${w} ${dir}`)!;
          const mbps = round1(median(g.mbps));
          emit({ case: `tcp-nvedge-w${w}-${fam}-${dir}`, mbps, ratio: kmbps > 0 ? Math.round((mbps / kmbps) * 100) / 100 : undefined, rounds: g.mbps,
                 retransmits: median(g.retr), loadavg: g.load.at(-1), gso: g.gso, oversize: g.oversize, csumNotReady: g.csum, kernelDrops: g.kdrops, drops: g.drops });
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
