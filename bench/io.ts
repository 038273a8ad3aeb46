// Packet I/O throughput on a veth pair inside an `nvl-` namespace: 64-byte
// frames (60 bytes + FCS on the wire) from trafgen into the addon.
//   recv-only:         the addon copies frames from the ring into wasm slots (main thread).
//   encap, N workers:  startAfPacket with N workers: tagged frames in on the
//                      trunk veth, VXLAN out on the underlay veth, counted at its peer.
//   decap, N workers:  VXLAN in on the underlay veth, tagged frames out of the trunk.
//   io: "afxdp":       the same two with AF_XDP sockets (--io afxdp; one worker, a
//                      veth has one queue), next to AF_PACKET's 1-worker figures.
// cpuUsPerFrame is this process's CPU time (all threads, including the kernel
// work done on them: our sends run the veth peer's receive path) per frame out.
// Prints one JSON line per figure; `node dist/bench/io.js` runs it alone.
// Needs root; every run is bounded (DURATION_MS per case) and removes its namespace.
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync, rmSync, mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadAddon } from "../host/io/addon.js";
import { startAfPacket } from "../host/io/afpacket.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { isRoot, tmpNetns, type Netns } from "../test/support/io-net.js";
import { SLOT_SIZE, HEADROOM, MAX_BATCH } from "../host/dataplane/abi.js";

// NVEDGE_BENCH_QUICK=1 (npm run bench -- --quick) shortens every case.
let DURATION_MS = 3000;
const WARMUP_MS = 500;

const VM_MAC = "02:00:5e:00:00:01", REMOTE_MAC = "02:00:5e:00:00:02";
const macBytes = (m: string) => m.split(":").map((x) => "0x" + x).join(", ");

/** A trafgen packet: 802.1Q VID 10, IPv4/UDP 10.0.0.1 -> 10.0.0.2, source port counting through 256 values so fanout hashing spreads the flows. 60 bytes. */
function trafgenConf(): string {
  return `{
  ${macBytes(REMOTE_MAC)}, ${macBytes(VM_MAC)},
  c16(0x8100), c16(10), c16(0x0800),
  0x45, 0x00, c16(42), c16(0), c16(0x4000), 64, 17, csumip(18, 37),
  10, 0, 0, 1, 10, 0, 0, 2,
  0x04, dinc(0, 255, 1), c16(9), c16(22), c16(0),
  fill(0x00, 14)
}
`;
}

/** VXLAN from the remote VTEP 192.0.2.2 to us: outer 110 bytes around a 60-byte inner frame to the VM (64 bytes once re-tagged). */
function trafgenDecapConf(): string {
  return `{
  0x02, 0x00, 0x00, 0x00, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0xfe, c16(0x0800),
  0x45, 0x00, c16(96), c16(0), c16(0x4000), 64, 17, csumip(14, 33),
  192, 0, 2, 2, 192, 0, 2, 1,
  0xc0, dinc(0, 255, 1), c16(4789), c16(76), c16(0),
  0x08, 0, 0, 0, 0x00, 0x13, 0x88, 0,
  ${macBytes(VM_MAC)}, ${macBytes(REMOTE_MAC)}, c16(0x0800),
  0x45, 0x00, c16(46), c16(0), c16(0x4000), 64, 17, csumip(64, 83),
  10, 0, 0, 2, 10, 0, 0, 1,
  c16(9), c16(1024), c16(26), c16(0),
  fill(0x00, 18)
}
`;
}

// One VNIC on the trunk (tag 10, VN 100) talking to a MAC behind a remote
// VTEP: every frame is tag-stripped and VXLAN-encapsulated (ISSUE 2).
function encapOps(trunk: string, underlay: string): DpOp[] {
  return [
    { op: "underlay", port: underlay, ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" },
    { op: "port", port: trunk },
    { op: "vn", vn: 100, vni: 5000, profile: { encap: "vxlan", mtu: 1500, portSecurity: true, arpSuppress: true } },
    { op: "tag", port: trunk, tag: 10, vn: 100 },
    { op: "mac.local", vn: 100, mac: VM_MAC, port: trunk, active: true },
    { op: "ip", vn: 100, ip: "10.0.0.1", mac: VM_MAC },
    { op: "mac.remote", vn: 100, mac: REMOTE_MAC, nve: "192.0.2.2" },
    { op: "flood.join", vn: 100, nve: "192.0.2.2" },
  ];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function linkStats(ns: Netns, dev: string): { rx: number; tx: number; rxDrop: number } {
  const j = JSON.parse(ns.run("ip", ["-s", "-j", "link", "show", dev]))[0].stats64;
  return { rx: j.rx.packets, tx: j.tx.packets, rxDrop: j.rx.dropped };
}

/** trafgen on `dev`, one process pinned to one CPU, bounded by `timeout`. */
function trafgen(ns: Netns, dev: string, conf: string, ms: number): ChildProcess {
  return spawn("ip", ["netns", "exec", ns.name, "timeout", "-s", "INT", String(Math.ceil(ms / 1000)),
    "trafgen", "--dev", dev, "--conf", conf, "-P", "1", "--no-sock-mem", "--notouch-irq", "-C"],
  { stdio: ["ignore", "ignore", "ignore"] });
}

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null ? r() : c.once("exit", () => r())));

async function recvOnly(ns: Netns, gen: string, dev: string, conf: string): Promise<object> {
  const addon = loadAddon();
  const h = addon.open(dev, { netns: ns.path, blockSize: 1 << 20, blockCount: 16 });
  const mem = new WebAssembly.Memory({ initial: 128 });
  const slotBase = 0x10000, inDescBase = slotBase + MAX_BATCH * SLOT_SIZE;
  const tg = trafgen(ns, gen, conf, DURATION_MS + WARMUP_MS + 1000);
  try {
    const t0 = Date.now();
    let got = 0, t1 = 0, mark = 0, sent0 = 0;
    // Receive on this thread in a tight loop, yielding to the event loop only
    // between 5 ms slices so the timers below still fire.
    while (Date.now() - t0 < WARMUP_MS + DURATION_MS) {
      const sliceEnd = Date.now() + 5;
      while (Date.now() < sliceEnd) {
        const n = addon.recv(h, mem.buffer, slotBase, SLOT_SIZE, HEADROOM, inDescBase, 0, MAX_BATCH, 0, 1);
        got += n;
      }
      if (!t1 && Date.now() - t0 >= WARMUP_MS) {
        t1 = Date.now(); mark = got; sent0 = linkStats(ns, gen).tx;
      }
      await new Promise((r) => setImmediate(r));
    }
    const secs = (Date.now() - t1) / 1000;
    const offered = (linkStats(ns, gen).tx - sent0) / secs;
    const st = addon.stats(h);
    return { case: "io.recv-only", frameBytes: 64, workers: 1, seconds: +secs.toFixed(2),
      offeredFps: Math.round(offered), fps: Math.round((got - mark) / secs), kernelDrops: st.kernelDrops };
  } finally {
    tg.kill("SIGINT");
    await exited(tg);
    addon.close(h);
  }
}

/** Frames from `gen` (peer of `inPort`) through N workers, counted arriving at `sink`. */
async function forward(name: string, ns: Netns, gen: string, inPort: string, sink: string, ports: { trunk: string; underlay: string },
  conf: string, workers: number, outFrameBytes: number, kind: "afpacket" | "afxdp" = "afpacket"): Promise<object> {
  const { trunk, underlay } = ports;
  const pool = await startAfPacket({
    interfaces: [trunk, underlay], workers, io: kind, ring: { netns: ns.path, blockSize: 1 << 20, blockCount: 16 },
    dataplane: { macLog2: 12, ipLog2: 12 }, ops: encapOps(trunk, underlay),
  });
  const tg = trafgen(ns, gen, conf, DURATION_MS + WARMUP_MS + 1000);
  try {
    await sleep(WARMUP_MS);
    const a = linkStats(ns, sink), g = linkStats(ns, gen), t1 = Date.now(), cpu0 = process.cpuUsage();
    await sleep(DURATION_MS);
    const cpu = process.cpuUsage(cpu0), cpuUs = cpu.user + cpu.system;
    const b = linkStats(ns, sink), g2 = linkStats(ns, gen), secs = (Date.now() - t1) / 1000;
    const c = await pool.counters();
    const frames = c.counters.frames as Record<string, number>;
    const io = c.io[inPort];
    return { case: name, io: kind, frameBytes: name === "io.encap" ? 64 : 110, outFrameBytes, workers, seconds: +secs.toFixed(2),
      offeredFps: Math.round((g2.tx - g.tx) / secs), fps: Math.round((b.rx - a.rx) / secs),
      kernelDrops: io.kernelDrops, dpRx: frames.rx, dpDropped: frames.dropped, batches: c.loop.batches,
      framesPerBatch: +(frames.rx / Math.max(1, c.loop.batches)).toFixed(1), perWorkerRx: c.perWorker.map((w) => w.rx),
      cpuUsPerFrame: +(cpuUs / Math.max(1, b.rx - a.rx)).toFixed(2) };
  } finally {
    tg.kill("SIGINT");
    await exited(tg);
    await pool.stop();
  }
}

export async function runIoBench(o: { quick?: boolean } = {}): Promise<object[]> {
  DURATION_MS = Number(process.env.NVEDGE_BENCH_MS ?? (o.quick || process.env.NVEDGE_BENCH_QUICK === "1" ? 1000 : 3000));
  if (!isRoot()) {
    const r = { case: "io", skipped: "needs root (network namespaces, CAP_NET_RAW)" };
    console.log(JSON.stringify(r));
    return [r];
  }
  const results: object[] = [];
  const emit = (r: object) => { results.push(r); console.log(JSON.stringify(r)); };
  const ns = tmpNetns("bio");
  const dir = mkdtempSync(join(tmpdir(), "nvl-bench-io-"));
  try {
    const conf = join(dir, "frame.cfg"), decapConf = join(dir, "vxlan.cfg");
    writeFileSync(conf, trafgenConf());
    writeFileSync(decapConf, trafgenDecapConf());
    const [hv, trunk] = ns.veth("t");
    const [underlay, remote] = ns.veth("u");
    emit(await recvOnly(ns, hv, trunk, conf));
    const ports = { trunk, underlay };
    for (const w of [1, 2]) emit(await forward("io.encap", ns, hv, trunk, remote, ports, conf, w, 64 + 50));
    for (const w of [1, 2]) emit(await forward("io.decap", ns, remote, underlay, hv, ports, decapConf, w, 64));
    // AF_XDP (--io afxdp) on the same pairs, when its addon is built
    const { xdpAddonPath } = await import("../host/io/xdp-addon.js");
    if (existsSync(xdpAddonPath)) {
      emit(await forward("io.encap", ns, hv, trunk, remote, ports, conf, 1, 64 + 50, "afxdp"));
      emit(await forward("io.decap", ns, remote, underlay, hv, ports, decapConf, 1, 64, "afxdp"));
    } else {
      emit({ case: "io.afxdp", skipped: "the AF_XDP addon is not built (libbpf-dev, clang)" });
    }
  } finally {
    ns.remove();
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runIoBench().catch((e) => { console.error(`bench/io: ${(e as Error).message}`); process.exit(1); });
}
