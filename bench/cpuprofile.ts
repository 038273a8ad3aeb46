// Where each microsecond of a control-plane request goes (issue 15, bench/README.md
// "Where each microsecond of an attach goes"): reads a V8 .cpuprofile of the
// NVE process (the control bench with NVEDGE_BENCH_NVE_NODE_ARGS="--cpu-prof
// --cpu-prof-dir=DIR"), keeps the samples of one case (the bench prints each
// case's span on stderr: "control phase NAME FROM TO", µs of the monotonic
// clock, the profile's own), and puts every sample in the first category
// found from the leaf up. Prints one JSON line per category, µs per request,
// and, with --top N, the N functions with the most self time.
//   node dist/bench/cpuprofile.js FILE.cpuprofile --requests 10000 [--from US --to US] [--top 40] [--scale US]
// --scale: the case's measured NVE CPU µs per request (the row's
// nve_cpu_us_per_op); the profile's sample times are wall time, which on a
// loaded machine include time the thread waited for a core, so each share
// is also given as that share of the measured CPU time.
import { existsSync, readFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { fileURLToPath } from "node:url";

interface Frame { functionName: string; url: string; lineNumber: number; columnNumber?: number }
interface Node { id: number; callFrame: Frame; children?: number[] }
interface Profile { nodes: Node[]; startTime: number; samples: number[]; timeDeltas: number[] }

/** Categories, tried in order on each frame from the leaf up; the first that matches a frame takes the sample. */
const CATEGORIES: [string, (f: Frame) => boolean][] = [
  ["garbage collection", (f) => f.functionName === "(garbage collector)"],
  ["log lines", (f) => /host\/log\/|node_modules\/(pino|sonic-boom)\//.test(f.url)],
  ["socket writes (writev)", (f) => f.functionName === "writev" || f.functionName === "writevGeneric" || f.functionName === "writeGeneric"],
  ["MQTT parse (mqtt-packet, bl)", (f) => /node_modules\/(mqtt-packet\/parser|bl)\b/.test(f.url)],
  ["MQTT write (writeToStream)", (f) => /node_modules\/mqtt-packet\/(writeToStream|generate)/.test(f.url)],
  ["broker (aedes)", (f) => /node_modules\/(aedes[^/]*|qlobber[^/]*|mqemitter[^/]*|fastparallel|fastfall|fastseries|reusify|hyperid)\/|host\/broker\//.test(f.url)],
  ["NVE MQTT client (mqtt-lean)", (f) => /host\/protocol\/(mqtt-lean|coalesce)\./.test(f.url)],
  ["NVE MQTT client (mqtt.js)", (f) => /node_modules\/(mqtt|debug|ms|number-allocator|rfdc|worker-timers|help-me)\//.test(f.url)],
  ["streams", (f) => /node:internal\/streams|node_modules\/readable-stream\/|node:net|node:internal\/stream_base_commons/.test(f.url)],
  ["metrics (prom-client)", (f) => /node_modules\/prom-client\//.test(f.url) || (/host\/metrics\//.test(f.url) && f.functionName !== "transaction")],
  ["decode (JSON.parse, envelope)", (f) => /host\/protocol\/codec/.test(f.url) && /decode|sniff/.test(f.functionName)],
  ["validate (ajv)", (f) => /^validate\d+$/.test(f.functionName) || /node_modules\/ajv/.test(f.url)],
  ["answer (encode)", (f) => /host\/protocol\/codec/.test(f.url)],
  ["program (data-plane ops)", (f) => /host\/dataplane\/|^wasm/.test(f.url) || /^(js-to-wasm|wasm-)/.test(f.functionName)],
  ["store", (f) => /host\/store\//.test(f.url)],
  ["commit (txn, model)", (f) => /host\/control\/(txn|model|tags|ranges)\./.test(f.url)],
  ["handlers", (f) => /host\/control\/(handlers\/|vnic\.|context\.)|host\/domain\//.test(f.url)],
  ["core (batching, dispatch, answer)", (f) => /host\/control\/|host\/protocol\//.test(f.url)],
  ["timers, promises, event loop", (f) => /node:internal\/(timers|process\/task_queues)|^(runMicrotasks|processTicksAndRejections)$/.test(f.url + f.functionName) || f.functionName === "runMicrotasks"],
];

export interface Breakdown { busyUs: number; perRequestUs: number; rows: { category: string; usPerRequest: number; share: number }[]; top: { fn: string; usPerRequest: number; share: number }[] }

/**
 * The source file and line of a frame in a bundled chunk (dist/bundle/*.mjs,
 * scripts/build.mjs): `nvedge run` is one esbuild bundle, so every frame's
 * url is a chunk and the categories (by source path) would match nothing;
 * the chunk's linked source map gives the original host/… path back.
 */
function unbundler(): (f: Frame) => Frame {
  const maps = new Map<string, SourceMap | null>();
  const memo = new Map<Frame, Frame>();
  return (f) => {
    if (!/\/dist\/bundle\/.*\.mjs$/.test(f.url)) return f;
    let out = memo.get(f);
    if (out) return out;
    let map = maps.get(f.url);
    if (map === undefined) {
      const file = `${fileURLToPath(f.url)}.map`;
      map = existsSync(file) ? new SourceMap(JSON.parse(readFileSync(file, "utf8"))) : null;
      maps.set(f.url, map);
    }
    const e = map?.findEntry(f.lineNumber, f.columnNumber ?? 0) as { originalSource?: string; originalLine?: number } | undefined;
    out = e?.originalSource ? { ...f, url: e.originalSource.replace(/^.*?\/(host|bench|node_modules)\//, "/$1/"), lineNumber: e.originalLine ?? f.lineNumber } : f;
    memo.set(f, out);
    return out;
  };
}

export function breakdown(p: Profile, requests: number, from = -Infinity, to = Infinity, topN = 0): Breakdown {
  const source = unbundler();
  for (const n of p.nodes) n.callFrame = source(n.callFrame);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const time = new Map<number, number>();
  let ts = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    const d = p.timeDeltas[i] ?? 0;
    ts += d;
    if (ts < from || ts > to) continue;
    time.set(p.samples[i], (time.get(p.samples[i]) ?? 0) + d);
  }
  const cat = new Map<string, number>();
  const self = new Map<string, number>();
  let busy = 0;
  for (const [id, t] of time) {
    const leaf = byId.get(id)!.callFrame;
    if (leaf.functionName === "(idle)") continue;
    busy += t;
    const name = `${leaf.functionName || "(anonymous)"} ${leaf.url.replace(/^.*node_modules\//, "").replace(/^.*\/dist\//, "")}:${leaf.lineNumber + 1}`;
    self.set(name, (self.get(name) ?? 0) + t);
    let found = "other";
    search: for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
      const f = byId.get(x)!.callFrame;
      for (const [c, m] of CATEGORIES) if (m(f)) { found = c; break search; }
    }
    cat.set(found, (cat.get(found) ?? 0) + t);
  }
  const per = (t: number) => Math.round((t / requests) * 10) / 10;
  const share = (t: number) => Math.round((t / busy) * 1000) / 10;
  return {
    busyUs: busy, perRequestUs: per(busy),
    rows: [...cat].sort((a, b) => b[1] - a[1]).map(([category, t]) => ({ category, usPerRequest: per(t), share: share(t) })),
    top: [...self].sort((a, b) => b[1] - a[1]).slice(0, topN).map(([fn, t]) => ({ fn, usPerRequest: per(t), share: share(t) })),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const a = process.argv.slice(2);
  const opt = (k: string) => { const i = a.indexOf(k); return i >= 0 ? Number(a[i + 1]) : undefined; };
  const file = a.find((x, i) => !x.startsWith("--") && (i === 0 || !a[i - 1].startsWith("--")));
  if (!file) {
    console.error("usage: cpuprofile FILE.cpuprofile --requests N [--from US --to US] [--top N] [--scale US]");
    process.exit(2);
  }
  const b = breakdown(JSON.parse(readFileSync(file, "utf8")) as Profile, opt("--requests") ?? 1, opt("--from"), opt("--to"), opt("--top") ?? 0);
  const scale = opt("--scale");
  const cpu = (s: number) => (scale ? { cpuUsPerRequest: Math.round(s * scale) / 100 } : {});
  console.log(JSON.stringify({ profiledUsPerRequest: b.perRequestUs }));
  for (const r of b.rows) console.log(JSON.stringify({ ...r, ...cpu(r.share) }));
  for (const t of b.top) console.log(JSON.stringify({ ...t, ...cpu(t.share) }));
}
