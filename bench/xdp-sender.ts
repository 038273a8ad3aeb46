// The traffic generator's own ceiling (issue 11: "a traffic generator that is
// not the bottleneck, with its ceiling reported in the same run"): 60-byte
// frames out of one veth end, counted arriving at the other end, from
//   - trafgen (netsniff-ng, AF_PACKET TX ring, one CPU), what bench/io.ts and
//     bench/race.ts use, and
//   - an AF_XDP sender: this project's AF_XDP addon (host/io/native/afxdp)
//     sending a batch of 256 prebuilt frames per call from the main thread;
//   - the XDP generator (bench/native/xdp-gen.c: BPF_PROG_RUN in live-frames
//     mode, frames recycled in the kernel, no socket and no skb on the send
//     side), what feeds the race where the kernel allows it;
//   - the loop generator (bench/native/xdp-loop.c: frames circulating on a
//     veth pair, a copy to the sender's veth per lap), the race's generator
//     where the kernel refuses xdp-gen's live frames.
// All in one run, one after the other, on the same pair. Prints one JSON line
// per sender; `node dist/bench/xdp-sender.js` runs it alone. Needs root, and
// the AF_XDP addon for the second figure. Bounded: DURATION_MS per sender.
import { spawn } from "node:child_process";
import { writeFileSync, rmSync, mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isRoot, tmpNetns, type Netns } from "../test/support/io-net.js";
import { buildXdpGen, buildXdpLoop, xdpGenRefused } from "./race.js";

let DURATION_MS = 3000;
const FRAME = 60;

function rxPackets(ns: Netns, dev: string): number {
  return JSON.parse(ns.run("ip", ["-s", "-j", "link", "show", dev]))[0].stats64.rx.packets;
}

/** The same frame trafgen sends (bench/io.ts trafgenConf): 802.1Q VID 10, IPv4/UDP, source port counting through 256 values. */
function frame(k: number): Uint8Array {
  const f = new Uint8Array(FRAME);
  f.set([2, 0, 0x5e, 0, 0, 2, 2, 0, 0x5e, 0, 0, 1, 0x81, 0, 0, 10, 0x08, 0], 0);
  f.set([0x45, 0, 0, 42, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x04, k & 0xff, 0, 9, 0, 22, 0, 0], 18);
  return f;
}

async function measure(ns: Netns, sink: string, run: (until: number) => Promise<void>): Promise<{ fps: number; seconds: number }> {
  const a = rxPackets(ns, sink), t0 = Date.now();
  await run(t0 + DURATION_MS);
  const secs = (Date.now() - t0) / 1000;
  return { fps: Math.round((rxPackets(ns, sink) - a) / secs), seconds: +secs.toFixed(2) };
}

export async function runXdpSenderBench(o: { quick?: boolean } = {}): Promise<object[]> {
  DURATION_MS = Number(process.env.NVEDGE_BENCH_MS ?? (o.quick || process.env.NVEDGE_BENCH_QUICK === "1" ? 1000 : 3000));
  const out: object[] = [];
  const emit = (r: object) => { out.push(r); console.log(JSON.stringify(r)); };
  if (!isRoot()) { emit({ case: "xdp-sender", skipped: "needs root (network namespaces)" }); return out; }
  const ns = tmpNetns("bxs");
  const dir = mkdtempSync(join(tmpdir(), "nvl-bench-xs-"));
  try {
    const [gen, sink] = ns.veth("g");
    const conf = join(dir, "frame.cfg");
    writeFileSync(conf, `{ ${[...frame(0).subarray(0, 39)].map((b) => `0x${b.toString(16)}`).join(", ")}, dinc(0, 255, 1), ${[...frame(0).subarray(40)].map((b) => `0x${b.toString(16)}`).join(", ")} }\n`);
    const tg = await measure(ns, sink, async (until) => {
      const c = spawn("ip", ["netns", "exec", ns.name, "timeout", "-s", "INT", String(Math.ceil((until - Date.now()) / 1000)),
        "trafgen", "--dev", gen, "--conf", conf, "-P", "1", "--no-sock-mem", "--notouch-irq", "-C"], { stdio: "ignore" });
      await new Promise<void>((r) => c.once("exit", () => r()));
    });
    emit({ case: "xdp-sender", sender: "trafgen", frameBytes: FRAME, ...tg });
    const { loadXdpIo, xdpAddonPath } = await import("../host/io/xdp-addon.js");
    if (!existsSync(xdpAddonPath)) {
      emit({ case: "xdp-sender", sender: "afxdp", skipped: "the AF_XDP addon is not built (libbpf-dev, clang)" });
      return out;
    }
    const x = loadXdpIo(0);
    const h = x.open(gen, { netns: ns.path });
    try {
      // 256 out-descs (abi.ts layout: port, header length, data pointer, data length), each a whole frame in its header slot
      const N = 256, hdrSlot = 128, outDesc = 0, hdrBase = 0x1000;
      const mem = new ArrayBuffer(hdrBase + N * hdrSlot);
      const dv = new DataView(mem), u8 = new Uint8Array(mem);
      for (let j = 0; j < N; j++) {
        dv.setUint16(outDesc + j * 16, 0, true);
        dv.setUint16(outDesc + j * 16 + 2, FRAME, true);
        dv.setUint32(outDesc + j * 16 + 4, hdrBase + j * hdrSlot, true);
        dv.setUint16(outDesc + j * 16 + 8, 0, true);
        u8.set(frame(j), hdrBase + j * hdrSlot);
      }
      const r = await measure(ns, sink, async (until) => {
        while (Date.now() < until) {
          for (let k = 0; k < 64; k++) x.send([h], mem, outDesc, hdrBase, hdrSlot, N);
          await new Promise((res) => setImmediate(res));
        }
      });
      emit({ case: "xdp-sender", sender: "afxdp", mode: x.mode(h), frameBytes: FRAME, ...r, vsTrafgen: +(r.fps / Math.max(1, tg.fps)).toFixed(2) });
    } finally {
      x.close(h);
    }
    // The XDP generator (bench/native/xdp-gen.c, BPF_PROG_RUN live frames): the
    // receiving end needs NAPI (GRO on) to take XDP-sent frames.
    const xg = buildXdpGen(dir);
    const refused = typeof xg === "string" ? undefined : xdpGenRefused(dir);
    if (typeof xg === "string" || refused) {
      emit({ case: "xdp-sender", sender: "xdp-gen", skipped: typeof xg === "string" ? xg : `refused by this kernel: ${refused}` });
    } else {
      ns.run("ethtool", ["-K", sink, "gro", "on"]);
      const f = [...frame(0)];
      const r = await measure(ns, sink, async (until) => { await xg.run(ns.name, gen, { conf: "", bytes: f, flowOff: 39 }, dir, Math.max(100, until - Date.now())); });
      emit({ case: "xdp-sender", sender: "xdp-gen", frameBytes: FRAME, ...r, vsTrafgen: +(r.fps / Math.max(1, tg.fps)).toFixed(2) });
    }
    // The loop generator (bench/native/xdp-loop.c): frames circulating on a
    // veth pair of its own, a copy to `gen` per lap; the race's choice where
    // the kernel refuses xdp-gen's live frames.
    const xl = buildXdpLoop(dir);
    if (typeof xl === "string") {
      emit({ case: "xdp-sender", sender: "xdp-loop", skipped: xl });
    } else {
      ns.run("ethtool", ["-K", sink, "gro", "on"]);
      const f = [...frame(0)];
      const r = await measure(ns, sink, async (until) => { await xl.run(ns.name, gen, { conf: "", bytes: f, flowOff: 39 }, dir, Math.max(100, until - Date.now())); });
      emit({ case: "xdp-sender", sender: "xdp-loop", frameBytes: FRAME, ...r, vsTrafgen: +(r.fps / Math.max(1, tg.fps)).toFixed(2) });
    }
  } finally {
    ns.remove();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runXdpSenderBench().catch((e) => { console.error(`bench/xdp-sender: ${(e as Error).message}`); process.exit(1); });
}
