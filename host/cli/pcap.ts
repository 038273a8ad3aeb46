// nvedge pcap --config FILE --in PORT=FILE ... --out-dir DIR
// Offline: the captures go through a data plane built from the file's static
// state; what leaves each port is written to DIR/PORT.pcap (classic pcap,
// link type Ethernet) and every counter by name to DIR/counters.json.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseOpts, required, UsageError } from "./args.js";
import { loadConfig, ConfigError } from "../config/load.js";
import { DataPlane, DataPlaneError } from "../dataplane/dataplane.js";
import { dottedKey, opProblem } from "../config/check.js";
import { offlineOps } from "../control/static.js";
import { readPcap, writePcap, LINKTYPE_ETHERNET, type PcapPacket } from "../pcap/pcap.js";
import { Gleaner } from "../control/glean.js";
import type { NveConfig } from "../config/types.js";
import { resolveVn } from "../config/load.js";
import { normIp, normMac } from "../domain/addr-text.js";

/**
 * Offline, the file's static state is all there is: a VN with learn: glean
 * learns from the captures (host/control/glean.ts) against the static VNICs'
 * tags and addresses, applied straight to the one data plane between batches.
 */
function offlineGleaner(cfg: NveConfig, dp: DataPlane, now: () => number): Gleaner | undefined {
  if (!cfg.vns.some((v) => v.profile.learn === "glean")) return undefined;
  const tags = new Map<string, number>(), macs = new Set<string>(), ips = new Set<string>();
  for (const n of cfg.vnics)
    for (const b of n.vns) {
      const vn = resolveVn(cfg, b.vn)!.id;
      tags.set(`${n.port}|${vn}`, b.tag);
      for (const a of b.addrs) {
        macs.add(`${vn}|${normMac(a.mac)}`);
        for (const ip of a.ips ?? []) ips.add(`${vn}|${normIp(ip)}`);
      }
    }
  const g = new Gleaner({
    profile: (vn) => cfg.vns.find((v) => v.id === vn)?.profile,
    tag: (port, vn) => tags.get(`${port}|${vn}`),
    signalledMac: (vn, mac) => macs.has(`${vn}|${mac}`),
    signalledIp: (vn, ip) => ips.has(`${vn}|${ip}`),
    apply: (ops) => dp.apply(ops),
    now,
    log: (line) => console.error(line),
  });
  dp.learnSink = (recs) => void g.learn(recs);
  return g;
}

const HELP = `usage: nvedge pcap --config FILE --in PORT=FILE [--in PORT=FILE ...] --out-dir DIR [--dataplane core|component]

Feeds each capture into the named port (an access port or the underlay port
of FILE) of a data plane built from FILE's static state, in timestamp order,
and writes what leaves each port to DIR/PORT.pcap and the counters to
DIR/counters.json. --dataplane: as for nvedge run (the core module, default, or
the same core as a WebAssembly component).`;

export async function buildOfflineDataPlane(configFile: string, loader: "core" | "component" = "core", clock?: () => number): Promise<DataPlane> {
  const cfg = loadConfig(configFile);
  const dp = await DataPlane.create({ macLog2: 18, ipLog2: 18, tunLog2: 14, floodCap: 1 << 16, loader, clock });
  // The same ops as `nvedge run` programs (control/static.ts). Without
  // underlay.gatewayMac the next hop stays unresolved here (no ARP offline).
  const ops = offlineOps(cfg);
  if (!cfg.underlay.gatewayMac)
    console.error(`${configFile}: no underlay.gatewayMac: offline nothing resolves the next hop, so frames into a tunnel are dropped (no-next-hop)`);
  try { dp.apply(ops); } catch (e) {
    // The key at fault, not the op number (issue 13).
    if (!(e instanceof DataPlaneError)) throw new ConfigError(configFile, "", (e as Error).message);
    const p = opProblem(cfg, ops, e);
    throw new ConfigError(configFile, dottedKey(p.path), p.message);
  }
  return dp;
}

export async function pcapCommand(argv: string[]): Promise<number> {
  const a = parseOpts(argv, { config: { type: "string" }, in: { type: "string", multiple: true }, "out-dir": { type: "string" }, dataplane: { type: "string" } }, HELP);
  if (!a) return 0;
  const loader = a.values.dataplane ?? "core";
  if (loader !== "core" && loader !== "component") throw new UsageError(`--dataplane ${loader}: expected core or component`);
  const configFile = required(a.values.config, "--config", HELP);
  const outDir = required(a.values["out-dir"], "--out-dir", HELP);
  const inputs = required(a.values.in, "--in PORT=FILE", HELP).map((s) => {
    const eq = s.indexOf("=");
    if (eq <= 0 || eq === s.length - 1) throw new UsageError(`--in ${s}: expected PORT=FILE\n${HELP}`);
    return { port: s.slice(0, eq), file: s.slice(eq + 1) };
  });
  // The data plane's clock (policer, gleaning) is the captures' time (ms).
  let nowMs = 0;
  const dp = await buildOfflineDataPlane(configFile, loader, () => nowMs);
  const gleaner = offlineGleaner(loadConfig(configFile), dp, () => nowMs);
  for (const i of inputs) if (dp.portIndex(i.port) < 0)
    throw new UsageError(`--in ${i.port}=${i.file}: no port "${i.port}" in ${configFile} (ports: ${dp.portList.join(", ")})`);

  // Merge the captures by timestamp, as they would have arrived.
  const events: { port: string; pkt: PcapPacket }[] = [];
  for (const i of inputs) {
    const f = readPcap(i.file);
    if (f.linkType !== LINKTYPE_ETHERNET) throw new UsageError(`${i.file}: link type ${f.linkType} is not Ethernet (1)`);
    for (const pkt of f.packets) events.push({ port: i.port, pkt });
  }
  events.sort((x, y) => x.pkt.tsSec - y.pkt.tsSec || x.pkt.tsUsec - y.pkt.tsUsec);

  const out = new Map<string, PcapPacket[]>(dp.portList.map((p) => [p, []]));
  // Consecutive frames for the same port and timestamp go through in one
  // batch call, at that time (the policer's refills; gleaning's learned
  // bindings applied, and aged out, between batches).
  const tsMs = (x: PcapPacket) => x.tsSec * 1000 + x.tsUsec / 1000;
  for (let s = 0; s < events.length;) {
    let e = s;
    while (e < events.length && events[e].port === events[s].port && tsMs(events[e].pkt) === tsMs(events[s].pkt)) e++;
    const run = events.slice(s, e);
    nowMs = tsMs(run[0].pkt);
    if (gleaner) await gleaner.sweep();
    for (const o of dp.run(events[s].port, run.map((x) => x.pkt.frame))) {
      const src = run[o.in].pkt;
      out.get(o.port)!.push({ frame: o.frame, tsSec: src.tsSec, tsUsec: src.tsUsec, origLen: o.frame.length });
    }
    if (gleaner) await gleaner.idle();
    s = e;
  }
  mkdirSync(outDir, { recursive: true });
  for (const [port, pkts] of out) writePcap(join(outDir, `${port}.pcap`), pkts);
  const counters = dp.counters();
  writeFileSync(join(outDir, "counters.json"), JSON.stringify(counters, null, 2) + "\n");
  const f = counters.frames;
  console.log(`${f.rx} frames in, ${f.outputs} out (${f.forwarded} forwarded), ${f.dropped} dropped; wrote ${out.size} captures and counters.json to ${outDir}`);
  return 0;
}
