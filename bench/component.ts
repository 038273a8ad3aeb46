// The data plane as a WebAssembly component against the core module (issue
// 12: "the component's per-batch cost against the core module, aim within 5 %
// at 256 frames per batch").
//
// Two DataPlanes with the same tables (the test fixture, test/support/frames.ts:
// four VNs over VXLAN, Geneve, NVGRE, two remote NVEs) and the same 256
// frames in their slots (encapsulations, hairpins and floods from acc1,
// decapsulations from the uplink, in turn); the frames are written once, as a
// NIC ring would leave them, and not modified by a batch (outputs are gather
// lists), so only DataPlane.process(256) is timed, batch by batch, with
// process.hrtime.bigint(). Rounds alternate core and component after a
// warm-up; each side's figure is the fastest decile of its batch times over
// all rounds (the least disturbed by the other processes on the machine).
// Also: the cost of one call alone (process(0)). Each twice: the batch call
// entering the core function that frames.process-batch lifts (what
// --dataplane component does, host/dataplane/component.ts says why) and
// through jco's lifted export.
//
// One JSON line per case; `node dist/bench/component.js [--quick]` runs it alone
// (also under qemu with an arm64 Node, for the firmware's sanity figure).
import { fileURLToPath } from "node:url";
import { DataPlane } from "../host/dataplane/dataplane.js";
import * as F from "../test/support/frames.js";

export interface BenchOptions { quick?: boolean }

const BATCH = 256;

function batchFrames(): { port: string; frame: Uint8Array }[] {
  const out: { port: string; frame: Uint8Array }[] = [];
  for (let i = 0; out.length < BATCH; i++) {
    const v = F.VNS[i % F.VNS.length];
    const l = F.locals(v.id), r = F.remotes(v.id);
    const kind = i % 4;
    if (kind === 0) out.push({ port: F.ACC1, frame: F.accessFrame(l.L1, i & 1 ? r.R1 : r.R2, { pcp: i & 7 }) });
    else if (kind === 1) out.push({ port: F.ACC1, frame: F.accessFrame(l.L4, r.R1) });
    else if (kind === 2) out.push({ port: F.ACC1, frame: F.accessFrame(l.L1, l.L2) });
    else out.push({ port: F.UPLINK, frame: F.fromRemote(F.REMOTES[0], 4, v.id, F.innerFrame(r.R1, l.L2)) });
  }
  return out;
}

async function world(loader: "core" | "component", liftedBatch = false) {
  const dp = await DataPlane.create({ macLog2: 16, ipLog2: 16, loader, liftedBatch });
  dp.apply(F.fixtureOps(4));
  batchFrames().forEach((f, i) => dp.load(i, dp.portIndex(f.port), f.frame));
  return dp;
}

function timeBatches(dp: DataPlane, n: number, ms: number, into: number[]): number {
  let outputs = 0;
  const end = process.hrtime.bigint() + BigInt(ms) * 1_000_000n;
  for (;;) {
    const t0 = process.hrtime.bigint();
    outputs = dp.process(n);
    const t1 = process.hrtime.bigint();
    into.push(Number(t1 - t0));
    if (t1 > end) break;
  }
  return outputs;
}

/** The mean of the fastest tenth. */
function fastDecile(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = Math.max(1, Math.floor(s.length / 10));
  return s.slice(0, k).reduce((a, b) => a + b, 0) / k;
}

const round = (x: number, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

export async function runComponentBench(opts: BenchOptions = {}): Promise<object[]> {
  const quick = opts.quick || process.env.NVEDGE_BENCH_QUICK === "1";
  const rounds = quick ? 2 : 8, roundMs = quick ? 150 : 400;
  const core = await world("core");
  const rows: object[] = [];
  for (const [n, lifted] of [[BATCH, false], [BATCH, true], [0, false], [0, true]] as const) {
    const comp = await world("component", lifted);
    const t = { core: [] as number[], component: [] as number[] };
    let outCore = 0, outComp = 0;
    timeBatches(core, n, roundMs, []); // warm-up: V8 tiers wasm and JS up
    timeBatches(comp, n, roundMs, []);
    for (let r = 0; r < rounds; r++) {
      outCore = timeBatches(core, n, roundMs, t.core);
      outComp = timeBatches(comp, n, roundMs, t.component);
    }
    if (outCore !== outComp || core.consumed !== comp.consumed) throw new Error(`core and component disagree: ${outCore}/${core.consumed} outputs/consumed against ${outComp}/${comp.consumed}`);
    const c = fastDecile(t.core), k = fastDecile(t.component);
    const via = lifted ? "jco-lifted-export" : "core-function";
    const row = n === BATCH
      ? { case: "component-batch", via, frames: n, outputs: outCore, coreNsPerBatch: round(c, 0), componentNsPerBatch: round(k, 0),
          ratio: round(k / c), overheadPct: round((k / c - 1) * 100, 2), coreMpps: round(n / c * 1000), componentMpps: round(n / k * 1000),
          batches: t.core.length + t.component.length }
      : { case: "component-call", via, coreNsPerCall: round(c, 0), componentNsPerCall: round(k, 0), extraNs: round(k - c, 0) };
    console.log(JSON.stringify(row));
    rows.push(row);
  }
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const quick = process.argv.includes("--quick");
  runComponentBench({ quick }).then(() => process.exit(0), (e) => { console.error(`bench component: ${(e as Error).message}`); process.exit(1); });
}
