// The tunnel super-frame TX path (issue 11, TCP VM -> remote;
// host/io/tuntx.ts) against the Linux kernel's own VXLAN encap, in the
// tunnel-TX lab (host/lab/tunnel-tx.ts): how much a userspace NVE can send to
// a kernel VXLAN VTEP when each TSO super-frame leaves as ONE VXLAN frame with
// UDP-tunnel GSO instead of ~45 segments.
//
//   node dist/bench/tunnel-tx.js [--quick]
//
// Rows:
//   {"case":"tuntx-push-ipv4","gbps":…,"sentGbps":…,"framesPerSec":…,"segmentsPerSec":…,"wireFramesPerSent":…}
//     a loop (this thread) sends the same 64 KiB VXLAN super-frame (inner UDP,
//     45 datagrams) again and again for TUNTX_SECONDS: gbps is what the remote
//     VTEP decapsulated (its VXLAN device's received bytes), the path's ceiling.
//   {"case":"tuntx-kernel-ipv4-tcp","mbps":…,"rounds":[…]}
//     iperf3 from the lab's sender through the kernel's VXLAN device (the
//     kernel encapsulates; the reference on the same links).
//   {"case":"tuntx-relay-ipv4-tcp","mbps":…,"ratio":relay/kernel,"rounds":[…],"relay":{…}}
//     iperf3 from the same sender behind a TSO tap ("the VM"), each super-frame
//     relayed through tuntx (tunnel-tx-relay.ts, a worker thread: read, prepend
//     the outer header in place, send), as nvedge's encap output would.
// Rounds alternate kernel and relay; each row is the median of its rounds.
// Knobs: TUNTX_SECONDS (default 5; --quick 2), TUNTX_ROUNDS (3; --quick 1),
// TUNTX_FAMILIES (default "4"; "4,6" adds the IPv6 underlay). Needs root,
// iperf3, Linux 6.17+ (tun's UDP tunnel GSO) and the addon (scripts/build.mjs --addon).
import { spawn } from "node:child_process";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { TunTx, putTxDesc, TX_DESC, TX_INNER_UDP, TX_OUTER6 } from "../host/io/tuntx.js";
import { txLabUp, txLabDown, txLabVmUp, txLabKernelSender, outerHeader, innerUdpHeader, type TxLab } from "../host/lab/tunnel-tx.js";
import { startRelay, type RelayResult } from "../host/lab/tunnel-tx-relay.js";
import { sh, shAsync, have, sleep } from "../host/sys/sh.js";
import { median } from "./stats.js";

export interface TunTxRow { case: string; gbps?: number; mbps?: number; ratio?: number; rounds?: number[]; loadavg?: number[]; skipped?: string; error?: string; [k: string]: unknown }

const r1 = (x: number) => Math.round(x * 10) / 10;
const r2 = (x: number) => Math.round(x * 100) / 100;
const load = () => loadavg().map(r2);

function rxBytes(ns: string, dev: string): { bytes: number; packets: number } {
  const s = JSON.parse(sh(["ip", "-j", "-s", "-n", ns, "link", "show", "dev", dev]).stdout)[0].stats64.rx;
  return { bytes: s.bytes, packets: s.packets };
}

/** The push loop: one 64 KiB UDP super-frame sent again and again, 16 per send() call, for `seconds`. */
async function push(l: TxLab, seconds: number): Promise<TunTxRow> {
  const v6 = l.family === 6;
  const tx = TunTx.open(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath, udpCsum: v6 });
  try {
    const outer = outerHeader(l, "vxlan");
    const inner = innerUdpHeader(l.dut.rxMac, l.rem.hostMac, l.dut.vmIp, l.rem.hostIp, 5555, 9 /* discard: nobody listens; the VTEP's count is the measure */);
    const gso = l.mtu - 28, segs = 45, hl = outer.bytes.length + inner.length, dl = gso * segs;
    const BATCH = 16, HDR = BATCH * TX_DESC, DATA = HDR + 256;
    const mem = new ArrayBuffer(DATA + dl), u = new Uint8Array(mem), dv = new DataView(mem);
    u.set(outer.bytes, HDR);
    u.set(inner, HDR + outer.bytes.length);
    const innerNh = outer.bytes.length + 14;
    for (let i = 0; i < BATCH; i++) putTxDesc(dv, i * TX_DESC, { hdr: HDR, hdrLen: hl, data: DATA, dataLen: dl, gsoSize: gso, outerTh: outer.outerTh, innerNh, innerTh: innerNh + 20, flags: TX_INNER_UDP | (v6 ? TX_OUTER6 : 0) });
    // ICMP port unreachable from the remote for each datagram would load the return path: rate-limit it away
    sh(["sysctl", "-qw", "net.ipv4.icmp_ratelimit=100000", "net.ipv4.icmp_msgs_per_sec=10"], { ns: l.rem.ns });
    const before = rxBytes(l.rem.ns, l.rem.vx), wire0 = rxBytes(l.rem.ns, l.rem.uplink), s0 = tx.stats();
    const t0 = process.hrtime.bigint(), end = t0 + BigInt(seconds * 1e9);
    let k = 0;
    while (process.hrtime.bigint() < end) {
      tx.send(mem, 0, BATCH);
      if (++k % 64 === 0) await new Promise((r) => setImmediate(r));
    }
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    await sleep(200); // what is in flight lands
    const after = rxBytes(l.rem.ns, l.rem.vx), wire1 = rxBytes(l.rem.ns, l.rem.uplink), s1 = tx.stats();
    const frames = s1.frames - s0.frames;
    return {
      case: `tuntx-push-ipv${l.family}`, gbps: r2(((after.bytes - before.bytes) * 8) / secs / 1e9), sentGbps: r2(((s1.bytes - s0.bytes) * 8) / secs / 1e9),
      framesPerSec: Math.round(frames / secs), segmentsPerSec: Math.round((s1.segments - s0.segments) / secs),
      wireFramesPerSent: frames ? r2((wire1.packets - wire0.packets) / frames) : 0, errors: Object.fromEntries(Object.entries(s1.errors).filter(([, v]) => v > 0)),
      loadavg: load(),
    };
  } finally {
    tx.close();
  }
}

/** One iperf3 test from the lab's sender to the remote host (bounded); Mbit/s received. */
async function iperf(l: TxLab, seconds: number): Promise<number> {
  const srv = spawn("ip", ["netns", "exec", l.rem.ns, "iperf3", "-s", "-1", "-B", l.rem.hostIp], { stdio: ["ignore", "pipe", "ignore"] });
  let out = "";
  srv.stdout!.setEncoding("utf8").on("data", (d) => { out += d; });
  try {
    const end = Date.now() + 5000;
    while (!out.includes("Server listening") && Date.now() < end) await sleep(50);
    const r = await shAsync(["iperf3", "-c", l.rem.hostIp, "-t", String(seconds), "-J"], { ns: l.dut.ns, allowFail: true, timeoutMs: (seconds + 20) * 1000 });
    const j = JSON.parse(r.stdout || "{}") as { error?: string; end?: { sum_received?: { bits_per_second: number } } };
    if (j.error || !j.end?.sum_received) throw new Error(`iperf3: ${j.error ?? r.stderr.slice(0, 300)}`);
    return r1(j.end.sum_received.bits_per_second / 1e6);
  } finally {
    srv.kill("SIGKILL");
  }
}

export async function runTunTx(o: { seconds?: number; rounds?: number; families?: (4 | 6)[]; print?: (r: TunTxRow) => void } = {}): Promise<TunTxRow[]> {
  const seconds = o.seconds ?? Number(process.env.TUNTX_SECONDS ?? 5);
  const rounds = o.rounds ?? Number(process.env.TUNTX_ROUNDS ?? 3);
  const families = o.families ?? ((process.env.TUNTX_FAMILIES ?? "4").split(",").map(Number) as (4 | 6)[]);
  const rows: TunTxRow[] = [];
  const emit = (r: TunTxRow) => { rows.push(r); o.print?.(r); };
  const why = process.getuid?.() !== 0 ? "needs root (network namespaces)" : !have("iperf3") ? "iperf3 not found (Debian package iperf3)" : undefined;
  if (why) { emit({ case: "tuntx", skipped: why }); return rows; }
  for (const family of families) {
    const l = txLabUp({ family });
    const fam = `ipv${family}`;
    try {
      emit(await push(l, seconds));
      const kernel: number[] = [], relay: number[] = [];
      let last: RelayResult | undefined;
      for (let k = 0; k < rounds; k++) {
        txLabKernelSender(l, true);
        try { kernel.push(await iperf(l, seconds)); } finally { txLabKernelSender(l, false); }
        const rl = await startRelay(l, { maxSeconds: seconds + 60 });
        try {
          txLabVmUp(l);
          relay.push(await iperf(l, seconds));
        } finally {
          last = await rl.stop(); // the VM tap goes with the relay, and its address with it
        }
      }
      const km = median(kernel), rm = median(relay);
      emit({ case: `tuntx-kernel-${fam}-tcp`, mbps: km, rounds: kernel, loadavg: load() });
      emit({ case: `tuntx-relay-${fam}-tcp`, mbps: rm, ratio: km > 0 ? r2(rm / km) : undefined, rounds: relay, loadavg: load(),
             relay: last && { superFrames: last.superFrames, plainFrames: last.plainFrames, segmentsPerFrame: last.tx.frames ? r1(last.tx.segments / last.tx.frames) : 0, refused: last.refused } });
    } catch (e) {
      emit({ case: `tuntx-${fam}`, error: (e as Error).message.split("\n").slice(0, 3).join(" / ") });
    } finally {
      await txLabDown(l);
    }
  }
  return rows;
}

export async function runTunTxBench(o: { quick?: boolean } = {}): Promise<object[]> {
  const quick = o.quick || process.env.NVEDGE_BENCH_QUICK === "1";
  return runTunTx({ ...(quick ? { seconds: 2, rounds: 1 } : {}), print: (r) => console.log(JSON.stringify(r)) });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runTunTxBench({ quick: process.argv.includes("--quick") }).then(() => process.exit(0), (e) => { console.error(`bench tunnel-tx: ${(e as Error).message}`); process.exit(1); });
}
