// Next-hop resolution after start and after a neighbour change (issue 11 aim:
// "first tunnel frame leaves within 100 ms; no frame sent to broadcast").
// The race topology (bench/race.ts) with no gatewayMac and no static
// neighbour: the remote VTEP (192.0.2.2) is the sink's own address, on the
// uplink's subnet, found through the kernel's route in the DUT's namespace
// (`ip route add 192.0.2.0/24 dev nvl-ul`) and resolved by the NVE's own ARP.
// trafgen offers encap frames from the trunk at a steady 20,000 frames/s from
// before the NVE starts; tcpdump on the sink timestamps every tunnel frame.
//
// Rows (one per I/O mode; ms, kernel capture timestamps against the NVE's
// own log timestamps, both CLOCK_REALTIME on this machine):
//   - firstFrameAfterProgrammedMs: from the data plane being programmed (the
//     NVE's "underlay: resolving next hops" line, logged when the resolver
//     starts) to the first tunnel frame on the wire: the aim's figure;
//   - firstFrameAfterSpawnMs: from `nvedge run` being spawned (node start,
//     wasm compile, workers: for the record);
//   - resolvedAfterProgrammedMs: what the NVE logs itself;
//   - broadcastFrames: tunnel frames to ff:ff:ff:ff:ff:ff (must be 0);
//   - changeMs: once the NVE runs (its "running:" line), the sink's MAC
//     changes and the sink announces it (gratuitous ARP, arp_notify=1): from
//     that announcement on the wire to the first tunnel frame to the new MAC;
//     framesToOldMacAfterChange for the record.
// Run alone: `node dist/bench/nexthop.js` (root, trafgen, tcpdump).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildTopo, removeTopo, nvedgeConfig, encapFrameConf, type RaceTopo } from "./race.js";
import { sh, have, sleep } from "../host/sys/sh.js";
import { parsePcap } from "../host/pcap/pcap.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
const BCAST = "ffffffffffff";

interface Row { case: string; io?: string; [k: string]: unknown }

/** tcpdump of tunnel frames arriving at the sink, all of them with kernel timestamps, until stopped. */
function tunnelCapture(t: RaceTopo): { ready: Promise<void>; stop: () => Promise<{ ms: number; dst: string; src: string; arp: boolean }[]> } {
  const child = spawn("ip", ["netns", "exec", t.sink, "timeout", "60", "tcpdump", "-i", t.underlay, "-U", "-n", "-s", "64",
    "--time-stamp-precision=micro", "-w", "-", "udp port 4789 or arp"], { stdio: ["ignore", "pipe", "pipe"] });
  const chunks: Buffer[] = [];
  child.stdout!.on("data", (c: Buffer) => chunks.push(c));
  let err = "";
  const closed = new Promise<void>((r) => child.on("close", () => r()));
  const ready = new Promise<void>((resolve) => {
    const to = setTimeout(resolve, 5000);
    child.stderr!.on("data", (c: Buffer) => { err += c; if (err.includes("listening on")) { clearTimeout(to); resolve(); } });
  });
  return {
    ready,
    stop: async () => {
      await sleep(200); // frames still in flight reach the capture
      child.kill("SIGINT");
      await Promise.race([closed, sleep(3000)]);
      const buf = Buffer.concat(chunks);
      if (buf.length < 24) return [];
      return parsePcap(buf, "tcpdump").packets.map((p) => ({ ms: p.tsSec * 1000 + p.tsUsec / 1000,
        dst: Buffer.from(p.frame.subarray(0, 6)).toString("hex"), src: Buffer.from(p.frame.subarray(6, 12)).toString("hex"), arp: p.frame[12] === 0x08 && p.frame[13] === 0x06 }));
    },
  };
}

/** trafgen at a fixed gap (20,000 frames/s), bounded by `ms`. */
function pacedTrafgen(t: RaceTopo, ms: number): ChildProcess {
  const file = `${t.workDir}/paced.cfg`;
  writeFileSync(file, encapFrameConf(t) + "\n");
  return spawn("ip", ["netns", "exec", t.gen, "timeout", "-s", "INT", String(Math.ceil(ms / 1000)), "trafgen", "--dev", t.trunk, "--conf", file,
    "-t", "50us", "-P", "1", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats"], { stdio: "ignore", detached: true });
}

const logTime = (line: string): number | undefined => {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z)/.exec(line);
  return m ? Date.parse(m[1]) : undefined;
};

async function once(io: "afpacket" | "afxdp"): Promise<Row> {
  const t = buildTopo();
  let nve: ChildProcess | undefined, gen: ChildProcess | undefined;
  try {
    // the remote VTEP is the sink itself, on the uplink's subnet: resolved directly (issue 11 "same subnet")
    sh(["ip", "-n", t.sink, "addr", "add", `${t.remoteIp}/24`, "dev", t.underlay]);
    sh(["sysctl", "-qw", `net.ipv4.conf.${t.underlay}.arp_notify=1`], { ns: t.sink });
    sh(["ip", "-n", t.dut, "route", "add", "192.0.2.0/24", "dev", t.underlay]);
    const cfg = nvedgeConfig(t) as { underlay: Record<string, unknown> };
    delete cfg.underlay.gatewayMac;
    const file = `${t.workDir}/nve.json`;
    writeFileSync(file, JSON.stringify(cfg, null, 2));
    const cap = tunnelCapture(t);
    await cap.ready;
    gen = pacedTrafgen(t, 30_000);
    await sleep(300);
    const spawned = Date.now();
    nve = spawn("ip", ["netns", "exec", t.dut, process.execPath, `${root}bin/nvedge.js`, "run", "--config", file, "--io", io, "--workers", "1",
      "--store", `${t.workDir}/store`], { stdio: ["ignore", "ignore", "pipe"] });
    const lines: string[] = [];
    let buf = "";
    nve.stderr!.setEncoding("utf8").on("data", (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); }
    });
    const seen = (re: RegExp) => lines.find((l) => re.test(l));
    const deadline = Date.now() + 20_000;
    while (!seen(/next hop 192\.0\.2\.2 is at/) && Date.now() < deadline && nve.exitCode === null) await sleep(20);
    // the change is measured on a running NVE: its control plane's start-up (broker, MQTT) holds the main thread, where ARP is handled
    while (!seen(/ running: --io/) && Date.now() < deadline && nve.exitCode === null) await sleep(20);
    await sleep(300);
    // the neighbour changes its MAC and announces it (gratuitous ARP, arp_notify)
    const newMac = "02:00:00:00:01:99";
    sh(["ip", "-n", t.sink, "link", "set", t.underlay, "address", newMac]);
    await sleep(1000);
    const frames = await cap.stop();
    if (process.env.NEXTHOP_VERBOSE === "1") console.error(lines.filter((l) => /underlay|NHDBG|running|io:/.test(l)).join("\n"));
    const programmed = logTime(seen(/underlay: resolving next hops/) ?? "");
    const resolvedLine = seen(/next hop 192\.0\.2\.2 is at/);
    if (!resolvedLine || programmed === undefined) {
      return { case: "nexthop", io, error: `not resolved within 20 s: ${lines.slice(-4).join(" / ")}` };
    }
    const newHex = newMac.replace(/:/g, "");
    const announced = frames.find((f) => f.arp && f.src === newHex);
    const tunnel = frames.filter((f) => !f.arp);
    const first = tunnel[0];
    const firstNew = tunnel.find((f) => f.dst === newHex);
    const r2 = (x: number) => Math.round(x * 10) / 10;
    return {
      case: "nexthop", io,
      firstFrameAfterProgrammedMs: first ? r2(first.ms - programmed) : null,
      firstFrameAfterSpawnMs: first ? r2(first.ms - spawned) : null,
      resolvedAfterProgrammedMs: Number(/resolved (\d+) ms after start/.exec(resolvedLine)?.[1] ?? NaN),
      broadcastFrames: tunnel.filter((f) => f.dst === BCAST).length,
      tunnelFrames: tunnel.length,
      // from the neighbour's announcement on the wire (gratuitous ARP) to the first tunnel frame to its new MAC
      changeMs: firstNew && announced ? r2(firstNew.ms - announced.ms) : null,
      ...(announced ? {} : { changeNote: "the neighbour's announcement was not seen" }),
      framesToOldMacAfterChange: announced ? tunnel.filter((f) => f.ms > announced.ms && f.dst === t.sinkMac.replace(/:/g, "")).length : null,
      offeredFps: 20_000,
    };
  } finally {
    if (gen?.pid) { try { process.kill(-gen.pid, "SIGKILL"); } catch { /* gone */ } }
    if (nve && nve.exitCode === null) { nve.kill("SIGTERM"); await Promise.race([new Promise((r) => nve!.once("exit", r)), sleep(5000)]); }
    await removeTopo(t);
  }
}

export async function runNexthopBench(o: { quick?: boolean } = {}): Promise<object[]> {
  const out: object[] = [];
  const emit = (r: object) => { out.push(r); console.log(JSON.stringify(r)); };
  const missing = process.getuid?.() !== 0 ? "root" : ["trafgen", "tcpdump", "ip"].find((c) => !have(c));
  if (missing) { emit({ case: "nexthop", skipped: `needs ${missing}` }); return out; }
  const ios: ("afpacket" | "afxdp")[] = ["afpacket"];
  if (existsSync(`${root}host/io/native/afxdp/build/Release/nvedge_afxdp.node`)) ios.push("afxdp");
  const rounds = o.quick || process.env.NVEDGE_BENCH_QUICK === "1" ? 1 : Number(process.env.NEXTHOP_ROUNDS ?? 3);
  for (let r = 0; r < rounds; r++) {
    for (const io of ios) {
      try { emit({ ...(await once(io)), round: r + 1 }); } catch (e) { emit({ case: "nexthop", io, error: (e as Error).message }); }
    }
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await runNexthopBench();
}
