// One packet I/O worker thread (started by afpacket.ts): its own DataPlane
// (its own WebAssembly instance), its own AF_PACKET socket per interface in
// that interface's PACKET_FANOUT group, and a synchronous loop:
//   recv from every socket into the batch -> dp.process(n) once -> send -> repeat.
// Nothing is allocated per frame and JS crosses into wasm once per batch.
//
// Control messages (table ops, counter reads, stop) arrive on a MessagePort
// that the loop drains synchronously (receiveMessageOnPort) whenever the main
// thread has raised this worker's flag in the shared control array; the main
// thread also writes this worker's eventfd so an idle poll() returns at once.
import { workerData, parentPort, receiveMessageOnPort, type MessagePort } from "node:worker_threads";
import { loadAddon, type OpenOptions, type SocketStats } from "./addon.js";
import { adviseHugePages, prefaultPages } from "./hugepages.js";
import type { DpOp } from "../dataplane/ops.js";
import { DataPlane, DataPlaneError, type LearnRecord } from "../dataplane/dataplane.js";
import { checkImage, ImageRefused, type Image, type ImageEncoder, type ImageKey } from "../dataplane/image.js";
import { IF_VNET, IF_GSO_SEG, IF_GSO_LAST, IF_SEG_SHIFT, IN_DESC, I_OFF, I_LEN, I_PORT, OUT_DESC, O_PORT, O_HDRLEN, O_DATA, O_DATALEN, GSO_CAP_TSO, GSO_CAP_TUNNEL } from "../dataplane/abi.js";
import { startTunnelOutput, type TunnelOutput } from "./tunnel-output.js";
import type { TunTx } from "./tuntx.js";
import { phase } from "../sys/phase.js";


export interface WorkerInit {
  id: number;
  interfaces: string[];
  /** Fanout group per interface (same order), shared by all workers. */
  fanout: number[];
  /** Which packet I/O: AF_PACKET (default) or AF_XDP (queue = the worker's id). */
  io?: "afpacket" | "afxdp";
  /** 802.1Q VLAN id per interface (same order) on a tagged uplink (underlay.vlan), 0 for none. */
  vlans?: number[];
  /** The encap super-frame output (tunnel-output.ts): the uplink and underlay.tunnelGso; absent: cut in software. */
  tunnelTx?: { uplink: string; mode: "auto" | "off" };
  ring: OpenOptions;
  dataplane: {
    macLog2?: number; ipLog2?: number; hugePages?: boolean; loader?: "core" | "component"; image?: Image;
    /**
     * A table image to restore before its key is known (issue 15: the
     * workers start while the main thread still loads the configuration and
     * opens the store): format and CRC are checked here, the key by the main
     * thread, from what `ready` reports; with `hold`, the worker forwards
     * nothing until `go` says whether to keep it.
     */
    imagePath?: string;
    /** The same image file open (afpacket.ts stagger): read through this descriptor, which the main thread closes. */
    imageFd?: number;
  };
  /**
   * Spawned once worker 0 forwards (afpacket.ts stagger): its sockets are
   * opened only once its tables are restored, as the fanout group hands them
   * frames from the moment they join it.
   */
  late?: boolean;
  /** Wait for a `go` message after `ready` before taking any frame (with dataplane.imagePath). */
  hold?: boolean;
  /**
   * An image is taken between batches, at most this long at a time (default
   * 1 ms; issue 15: a running NVE takes images without stopping forwarding).
   */
  imageSliceMs?: number;
  /** Int32 per worker: non-zero when messages wait on `port`. */
  ctl: SharedArrayBuffer;
  port: MessagePort;
  wakeFd: number;
  idlePollMs: number;
  /**
   * After a batch of 2+ frames, keep looking at the rings this long before
   * sleeping in poll() (default 0: sleep at once). See the loop.
   */
  idleSpinUs?: number;
  /**
   * The worker thread's scheduling (afpacket.c schedSelf): "off" (default)
   * as inherited, "fifo" SCHED_FIFO priority 10, "fair" nice -10 with a
   * 100 µs EEVDF slice. Why, and why fifo is not the default: see the loop.
   */
  sched?: "fair" | "fifo" | "off";
  /**
   * AF_XDP: keep the worker thread off the CPUs its sockets' frames arrive on
   * (afxdp.c AvoidRxCpus; default true). See the loop.
   */
  avoidRxCpu?: boolean;
}

/**
 * A live tap (`nvedge trace --live`, `nvedge capture --drops`, issue 13): while
 * one is set, the worker takes its batches one frame at a time with the data
 * plane's trace on, so each frame's decisions and drop reason are known; the
 * frames are still forwarded as usual. Only for diagnosis: slower, bounded by
 * `count` and by the main thread's timeout, and off again at once after.
 */
export interface TapSpec {
  id: number;
  kind: "trace" | "drops";
  count: number;
  match: { port?: string; mac?: string; vn?: number; ethertype?: number };
  reason?: string;
}
export interface TappedFrame { port: string; frame: Uint8Array; ts: number; drop?: string; vn?: number; steps?: string[]; outputs?: { port: string; frame: Uint8Array }[] }

export type ToWorker =
  | { type: "tap"; seq: number; tap: TapSpec | null }
  | { type: "trace"; seq: number; port: string; frame: Uint8Array }
  | { type: "apply"; seq: number; ops: DpOp[] }
  | { type: "counters"; seq: number }
  /** This worker's tables as an image (issue 15; host/dataplane/image.ts): worker 0 only, all hold the same tables. */
  | { type: "image"; seq: number; key: ImageKey }
  | { type: "stop"; seq: number }
  /** After `ready` with `hold`: forward, from the restored image (keep) or from empty tables. */
  | { type: "go"; keep: boolean }
  /** A frame the NVE itself sends (an ARP request or NS of the underlay neighbour cache): worker 0 sends it. */
  | { type: "send"; port: string; frame: Uint8Array };

export type FromWorker =
  /** image: what dataplane.imagePath gave, its key and info, or why it was refused (the worker then has empty tables). */
  | { type: "ready"; id: number; modes?: string[]; image?: { key: ImageKey; info: Record<string, unknown> } | { refused: string } }
  | { type: "error"; id: number; message: string }
  | { type: "applied"; id: number; seq: number; error?: { name: string; message: string; index?: number; field?: string } }
  | { type: "counters"; id: number; seq: number; counters: unknown; io: Record<string, SocketStats>; loop: LoopStats }
  | { type: "stopped"; id: number }
  /** steps: the slices it was taken in. */
  | { type: "imaged"; id: number; seq: number; bytes?: Uint8Array; error?: string; steps?: number }
  | { type: "tapped"; id: number; tap: number; frames: TappedFrame[] }
  | { type: "traced"; id: number; seq: number; steps: string[]; drop?: string; outputs: { port: string; frame: Uint8Array }[] }
  /** Frames the data plane handed to the host (assembly/pipeline/punt.ts: ARP/ND for underlay.ip). */
  | { type: "punt"; id: number; frames: { port: string; frame: Uint8Array }[] }
  /** Sources the data plane gleaned in a batch (assembly/pipeline/glean.ts), for the host's gleaner. */
  | { type: "learn"; id: number; recs: LearnRecord[] };

export interface LoopStats {
  /** Batches processed (one dp.process call each, more only when the output area filled). */
  batches: number;
  /** Outputs the data plane produced. */
  outputs: number;
  /** Outputs for a port with no socket in this worker, or refused by the kernel (link down, too big). */
  unsent: number;
  /** Times the output area filled before a batch was done (the rest went in a further process call). */
  partial: number;
  /** Inputs the data plane would not take even with an empty output area (never expected). */
  unprocessed: number;
  /** Frames the NVE itself sent (ARP requests / NS of the neighbour cache). */
  hostSent: number;
  /** Times the worker slept in poll() (each a wake-up to pay when the next frame comes). */
  sleeps: number;
  /** Times the spin after a batch (idleSpinUs) found a frame (or a control message): each a wake-up saved. */
  spinHits: number;
  /** AF_XDP: times the worker moved its CPU set off the CPUs its frames arrive on (avoidRxCpu). */
  repins: number;
}

const UNKNOWN_PORT = 0xffff; // no such port index: the data plane counts the frame as `unknown-port`

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  phase("worker: thread up");
  const post = (m: FromWorker) => parentPort!.postMessage(m);
  const addon = loadAddon();
  const { hugePages, imagePath, imageFd, ...dpOptions } = init.dataplane;
  const handles: number[] = [];
  let pio: Pick<typeof addon, "open" | "close" | "recv" | "send" | "poll" | "stats"> = addon;
  let xio: import("./xdp-addon.js").PacketIo | undefined;
  const modes: string[] = [];
  let tunTx: TunTx | undefined; // the uplink's tunnel TX tap (tunnel-output.ts), when open
  const tunAt = init.io !== "afxdp" && init.tunnelTx ? init.interfaces.indexOf(init.tunnelTx.uplink) : -1;
  // The AF_PACKET sockets and the tunnel TX tap; undefined: not tried yet, else null or why not. With an image to
  // restore they are opened while the prefault thread faults its pages in (issue 15: their rings' allocation and
  // the tap's tc attach take 40-130 ms, mostly inside the kernel, which then overlaps the faults), else after.
  let opened: Error | null | undefined;
  const openPacket = () => {
    if (opened !== undefined || init.io === "afxdp") return;
    try {
      // the in-desc flag bits (a vnetHdr socket needs them first): the host's ABI constants, which layoutOf reports too
      addon.descFlags(IF_VNET, IF_GSO_SEG, IF_GSO_LAST, IF_SEG_SHIFT);
      init.interfaces.forEach((name, i) => handles.push(addon.open(name, { vnetHdr: 1, ...init.ring, fanout: init.fanout[i], vlan: init.vlans?.[i] ?? 0 })));
      // the tap is made on a thread of the addon's meanwhile (startTunnelOutput), attached by finishTap
      if (tunAt >= 0) tapFinish = startTunnelOutput(addon, { uplink: init.interfaces[tunAt], handle: handles[tunAt], worker: init.id, mode: init.tunnelTx!.mode,
                                                             vlan: init.vlans?.[tunAt] ?? 0, netns: init.ring.netns });
      opened = null;
      phase("worker: packet sockets open");
    } catch (e) {
      finishTap();
      for (const h of handles) addon.close(h);
      handles.length = 0;
      tunTx?.close();
      tunTx = undefined;
      opened = e as Error;
    }
  };
  let tapFinish: (() => TunnelOutput) | undefined;
  /** Waits for the tunnel TX tap being made, if one is, and attaches it (or notes why not). */
  const finishTap = () => {
    if (!tapFinish) return;
    const t = tapFinish();
    tapFinish = undefined;
    tunTx = t.tx;
    modes.push(t.mode);
  };
  // an image's pages faulted in by a second thread meanwhile (hugepages.ts prefaultPages; issue 15)
  const prefault = (m: ArrayBuffer, r: [number, number][]) => { const join = prefaultPages(m, r); if (!init.late) openPacket(); return join; };
  const create = (image?: Image) => DataPlane.create({ ...dpOptions, ...(image ? { image, prefault } : {}), ...(hugePages ? { adviseHuge: adviseHugePages } : {}) });
  let dp: DataPlane;
  let restored: NonNullable<Extract<FromWorker, { type: "ready" }>["image"]> | undefined;
  if (imagePath) {
    try {
      const img = checkImage(imageFd !== undefined ? { fd: imageFd } : { path: imagePath });
      dp = await create(img);
      restored = { key: img.meta.key, info: img.meta.info };
    } catch (e) {
      restored = { refused: e instanceof ImageRefused ? e.message : `cannot be used: ${(e as Error).message.split("\n")[0]}` };
      dp = await create();
    }
  } else dp = await create();
  phase("worker: data plane ready");
  try {
    // Offloads (issue 11): each frame's virtio-net header goes to the data
    // plane, which completes partial checksums and the GSO segments the
    // addon cuts (assembly/pipeline/offload.ts); the flag bits are its own
    // (read by recv only: the sockets may be open before).
    const f = dp.layout.descFlags;
    addon.descFlags(f.vnet, f.gsoSeg, f.gsoLast, f.segShift);
    if (init.io === "afxdp") {
      const x = (await import("./xdp-addon.js")).loadXdpIo(init.id);
      // partial checksums recognised by the addon reach the data plane as AF_PACKET's do (afxdp.c partialL4)
      x.descFlags(f.vnet, f.gsoSeg, f.gsoLast, f.segShift);
      pio = xio = x;
      init.interfaces.forEach((name, i) => { handles.push(x.open(name, { ...init.ring, vlan: init.vlans?.[i] ?? 0 })); modes.push(`${name}: ${x.mode(handles[handles.length - 1])}`); });
    } else {
      openPacket();
      if (opened) throw opened;
      finishTap();
    }
  } catch (e) {
    finishTap();
    for (const h of handles) pio.close(h);
    tunTx?.close();
    post({ type: "error", id: init.id, message: (e as Error).message });
    return;
  }
  phase("worker: sockets open");
  // Latency at low rates (issue 11, session 8): a worker woken for a lone
  // frame waits behind the machine's other runnable tasks (afpacket.c
  // SchedSelf); the kernel's own datapath runs in softirq and never does.
  // bench/latency at load 5-6 on 2 cores, ping p99 at 20 ms / 200 ms:
  // afpacket 4.0 / 1.5 ms as inherited, 0.49 / 0.29 with fifo (kernel NVE
  // 0.12); "fair" (nice -10, 100 µs slice) did not help (4.7 / 0.48). fifo
  // is opt-in (NVEDGE_IO_SCHED=fifo): a flood then holds the worker's core
  // as the kernel's softirq would, others keep the 5 % RT throttling leaves.
  const sched = init.sched ?? "off";
  if (sched !== "off") {
    const why = sched === "fifo" ? addon.schedSelf(1, 0, 0, 10) : addon.schedSelf(0, -10, 100, 0);
    modes.push(why ? `sched ${sched}: not applied (${why})` : `sched ${sched === "fifo" ? "SCHED_FIFO 10" : "nice -10, slice 100 µs"}`);
  }
  post({ type: "ready", id: init.id, modes, ...(restored ? { image: restored } : {}) });
  const ctl = new Int32Array(init.ctl);
  // held until the main thread has checked the image's key (WorkerPool.go)
  for (let held = !!init.hold; held;) {
    Atomics.wait(ctl, init.id, 0, 1000);
    Atomics.store(ctl, init.id, 0);
    for (let m = receiveMessageOnPort(init.port); m && held; m = held ? receiveMessageOnPort(init.port) : undefined) {
      const msg = m.message as ToWorker;
      if (msg.type === "go") {
        held = false;
        if (!msg.keep && restored && "key" in restored) dp = await create();
      } else if (msg.type === "stop") {
        for (const h of handles) pio.close(h);
        tunTx?.close(); // after the socket that wrote to it, as at the end of the loop
        post({ type: "stopped", id: init.id });
        return;
      }
    }
    // what came after `go` is drained by the loop
    if (!held) Atomics.store(ctl, init.id, 1);
  }
  phase("worker: sockets open, forwarding");

  const mem = dp.memory.buffer; // never grows after create()
  const u8 = new Uint8Array(mem);
  const L = dp.layout;
  const S = handles.length;
  const portOf = new Array<number>(S).fill(UNKNOWN_PORT);
  let byPort: number[] = [];
  const loop: LoopStats = { batches: 0, outputs: 0, unsent: 0, partial: 0, unprocessed: 0, hostSent: 0, sleeps: 0, spinHits: 0, repins: 0 };
  let running = true;
  let tap: (TapSpec & { sent: number; mac?: Uint8Array; portIdx?: number }) | null = null;
  const dv = new DataView(mem);

  // Port indices come from the data plane once a {op:"port"}/{op:"underlay"}
  // names the interface; every worker applies the same ops in the same order,
  // so all of them agree.
  const remap = () => {
    byPort = [];
    init.interfaces.forEach((name, s) => {
      const idx = dp.portIndex(name);
      portOf[s] = idx >= 0 ? idx : UNKNOWN_PORT;
      if (idx >= 0) {
        while (byPort.length <= idx) byPort.push(-1);
        byPort[idx] = handles[s];
        // an AF_PACKET socket (vnetHdr) sends a TCP super-frame whole with a
        // TSO request (assembly/pipeline/gso.ts); AF_XDP has no GSO; the
        // uplink takes an encap super-frame whole once its tunnel TX tap is open
        dp.portGso(idx, init.io === "afxdp" ? 0 : GSO_CAP_TSO | (tunTx && s === tunAt ? GSO_CAP_TUNNEL : 0));
      }
    });
  };
  remap(); // a data plane started from an image already has its ports

  const drain = () => {
    for (;;) {
      const m = receiveMessageOnPort(init.port);
      if (!m) return;
      const msg = m.message as ToWorker;
      if (msg.type === "apply") {
        // the tables change: an image being taken would hold some pages from before and some from after
        dropImage("the tables changed while it was taken");
        try {
          dp.apply(msg.ops);
          remap();
          post({ type: "applied", id: init.id, seq: msg.seq });
        } catch (e) {
          const err = e as Error & { index?: number; field?: string };
          post({ type: "applied", id: init.id, seq: msg.seq, error: { name: err.name, message: err.message,
            ...(e instanceof DataPlaneError ? { index: err.index, field: err.field } : {}) } });
        }
      } else if (msg.type === "counters") {
        const io: Record<string, SocketStats> = {};
        init.interfaces.forEach((name, s) => { io[name] = pio.stats(handles[s]); });
        post({ type: "counters", id: init.id, seq: msg.seq, counters: dp.counters(), io, loop: { ...loop } });
      } else if (msg.type === "image") {
        // taken a slice at a time between batches (imageStep); one at a time
        dropImage("another image was asked for");
        try {
          imaging = { seq: msg.seq, enc: dp.imageEncoder(msg.key) };
        } catch (e) {
          post({ type: "imaged", id: init.id, seq: msg.seq, error: (e as Error).message });
        }
      } else if (msg.type === "stop") {
        dropImage("the packet I/O workers are stopping");
        running = false;
      } else if (msg.type === "trace") {
        // One frame through this worker's tables (`nvedge trace --port --frame` on a running NVE):
        // between batches, so the slots are free; its outputs are shown, not sent.
        const r = dp.trace(msg.port, msg.frame);
        post({ type: "traced", id: init.id, seq: msg.seq, steps: r.steps, ...(r.drop ? { drop: r.drop } : {}), outputs: r.outputs });
      } else if (msg.type === "tap") {
        const t = msg.tap;
        tap = t ? { ...t, sent: 0,
          ...(t.match.mac ? { mac: Uint8Array.from(t.match.mac.split(":").map((x) => parseInt(x, 16))) } : {}),
          ...(t.match.port !== undefined ? { portIdx: dp.portIndex(t.match.port) } : {}) } : null;
        post({ type: "applied", id: init.id, seq: msg.seq });
      } else if (msg.type === "send") {
        // Between batches the output area is free: the frame goes out as
        // output 0, a header piece alone (at most one header slot).
        const idx = dp.portIndex(msg.port);
        if (init.id !== 0 || idx < 0 || msg.frame.length > L.hdrSlot) continue;
        u8.set(msg.frame, L.hdrBase);
        const d = new DataView(mem, L.outDescBase, OUT_DESC);
        d.setUint16(O_PORT, idx, true);
        d.setUint16(O_HDRLEN, msg.frame.length, true);
        d.setUint32(O_DATA, L.hdrBase, true);
        d.setUint16(O_DATALEN, 0, true);
        loop.hostSent += pio.send(byPort, mem, L.outDescBase, L.hdrBase, L.hdrSlot, 1);
      }
    }
  };

  // An image being taken (issue 15): a slice of it after each batch, so
  // forwarding never stops for more than imageSliceMs.
  let imaging: { seq: number; enc: ImageEncoder } | null = null;
  const sliceMs = init.imageSliceMs ?? 1;
  const dropImage = (why: string) => {
    if (!imaging) return;
    post({ type: "imaged", id: init.id, seq: imaging.seq, error: why });
    imaging = null;
  };
  const imageStep = () => {
    const m = imaging!;
    let done: boolean;
    try {
      done = m.enc.step(sliceMs);
    } catch (e) {
      dropImage((e as Error).message);
      return;
    }
    if (!done) return;
    imaging = null;
    const bytes = m.enc.bytes();
    parentPort!.postMessage({ type: "imaged", id: init.id, seq: m.seq, bytes, steps: m.enc.steps } satisfies FromWorker, [bytes.buffer as ArrayBuffer]);
  };

  const sendOut = (outs: number) => {
    // ARP/ND for underlay.ip the data plane handed over (rare: read only when there are some)
    if (dp.puntCount() !== 0) {
      post({ type: "punt", id: init.id, frames: dp.punts().map((x) => ({ port: dp.portName(x.port), frame: x.frame })) });
    }
    // sources gleaned in the batch (learn: glean VNs only; read only when there are some)
    if (dp.learnCount() !== 0) post({ type: "learn", id: init.id, recs: dp.learned() });
    if (outs === 0) return;
    loop.outputs += outs;
    loop.unsent += outs - pio.send(byPort, mem, L.outDescBase, L.hdrBase, L.hdrSlot, outs);
  };

  // The tap's filter on the frame as received: port, MAC (source or
  // destination), EtherType (after an 802.1Q tag when there is one).
  const wanted = (t: NonNullable<typeof tap>, port: number, at: number, len: number): boolean => {
    if (t.portIdx !== undefined && port !== t.portIdx) return false;
    if (len < 14) return t.mac === undefined && t.match.ethertype === undefined;
    if (t.mac) {
      let dst = true, src = true;
      for (let k = 0; k < 6; k++) {
        if (u8[at + k] !== t.mac[k]) dst = false;
        if (u8[at + 6 + k] !== t.mac[k]) src = false;
      }
      if (!dst && !src) return false;
    }
    if (t.match.ethertype !== undefined) {
      let et = (u8[at + 12] << 8) | u8[at + 13];
      if (et === 0x8100 && len >= 18) et = (u8[at + 16] << 8) | u8[at + 17];
      if (et !== t.match.ethertype) return false;
    }
    return true;
  };

  /** A batch with a tap set: one frame at a time through process(1), each traced (see TapSpec). */
  const processTapped = (n: number, t: NonNullable<typeof tap>) => {
    const got: TappedFrame[] = [];
    for (let i = 0; i < n; i++) {
      if (i > 0) {
        u8.copyWithin(L.slotBase, L.slotBase + i * L.slotSize, L.slotBase + (i + 1) * L.slotSize);
        u8.copyWithin(L.inDescBase, L.inDescBase + i * IN_DESC, L.inDescBase + (i + 1) * IN_DESC);
      }
      const off = dv.getUint16(L.inDescBase + I_OFF, true), len = dv.getUint16(L.inDescBase + I_LEN, true), port = dv.getUint16(L.inDescBase + I_PORT, true);
      const at = L.slotBase + off;
      const want = t.sent < t.count && wanted(t, port, at, len);
      const copy = want ? u8.slice(at, at + len) : undefined;
      const before = want ? dp.traceBegin() : undefined;
      loop.batches++;
      const outs = dp.process(1);
      const outputs = want && t.kind === "trace" ? Array.from({ length: outs }, (_, j) => { const o = dp.output(j); return { port: dp.portName(o.port), frame: o.frame }; }) : [];
      sendOut(outs);
      if (!want) continue;
      const r = dp.traceEnd(dp.portName(port), len, outputs, before!);
      if (t.match.vn !== undefined && r.vn !== t.match.vn) continue;
      if (t.kind === "drops" && (!r.drop || (t.reason !== undefined && r.drop !== t.reason))) continue;
      t.sent++;
      got.push({ port: dp.portName(port), frame: copy!, ts: Date.now(), ...(r.drop ? { drop: r.drop } : {}), ...(r.vn !== undefined ? { vn: r.vn } : {}),
        ...(t.kind === "trace" ? { steps: r.steps, outputs: r.outputs } : {}) });
    }
    if (got.length) post({ type: "tapped", id: init.id, tap: t.id, frames: got });
  };

  // Off the receive softirq's core (AF_XDP; issue 11, session 10). In copy
  // mode each frame costs the kernel a softirq on the core that receives it
  // (XDP program, copy into the UMEM; a NIC queue's interrupt core, a veth's
  // sender's core) and the worker, on its own core, the rest. The scheduler
  // does not know that: on a busy machine it moved the worker onto the
  // receiving core (60 % of its samples in the veth race at load 4-7), where
  // that core's softirq preempts it and, at every local_bh_enable of its
  // sendto, runs inline in its time: the generator's loop there. So the
  // worker looks where its frames arrive (the XDP program notes the CPU per
  // queue) after its first batches and then every few thousand turns, and
  // takes that CPU out of its set, unless no other is allowed (every 64
  // turns until it has moved once, then every 4,096: a look is a map read
  // per socket, a syscall each).
  const avoid = xio && init.avoidRxCpu !== false ? xio : undefined;
  let turns = 0, nextLook = 64;
  const look = () => {
    const r = avoid!.avoidRxCpus(handles);
    if (r > 0) loop.repins++;
    // refused (-errno: EPERM in a locked cpuset, say): not asked again
    nextLook = r < 0 ? Infinity : turns + (loop.repins === 0 ? 64 : 4096);
  };

  let rot = 0;
  // Spin, then sleep (issue 11, session 8): the rings hand over each frame
  // at once (TPACKET_V2; AF_XDP), and the kernel wakes a sleeping reader per
  // frame. A worker that sleeps as soon as its rings are empty pays a wake-up
  // (a cross-CPU IPI: 80-100 µs in this guest, measured as encap vs decap
  // crossing time in bench/latency) for nearly every frame of a flow at a
  // moderate rate, and the kernel's receive path pays the wake-up call. So
  // after a batch the worker can keep reading the rings for idleSpinUs (NAPI's
  // busy-poll idea) and sleep in poll() only when nothing came for that long:
  // an idle NVE still sleeps, a flow's next frame mostly finds it awake.
  // Only after a batch of 2 or more frames (frames that come together come
  // fast; one alone, a ping or a TCP super-frame every ~50 µs, would only
  // find the spin empty). Off by default: a spin after every batch took CPU
  // from the TCP endpoints nvedge forwards for on this 2-core machine
  // (iperf3 through the pair lab, load 3.5, 50 µs: 5.3 / 5.2 Gbit/s encap /
  // decap with it, 8.5 / 7.5 and 6.2 / 6.7 without), as it would from a
  // hypervisor's VMs; and 20 µs after batches of 2+ left bench/io's batches
  // as small as without (2.5-3.4 frames at 450k frames/s: the worker keeps
  // up, it is not woken per frame) at the same CPU per frame.
  const spinUs = init.idleSpinUs ?? 0;
  let justBatched = false;
  // The sockets and the tunnel tap are the process's file descriptors, not
  // the thread's: a loop that throws must still close them, or the uplink
  // keeps a fanout member nobody reads and a restarted worker finds its tap's
  // tcx link taken (it would then cut every super-frame in software).
  try {
  while (running) {
    if (Atomics.load(ctl, init.id) !== 0) {
      Atomics.store(ctl, init.id, 0);
      drain();
      if (!running) break;
    }
    // Fill one batch from all sockets, starting at a different one each time
    // so a busy interface cannot starve the others.
    let n = 0;
    for (let k = 0; k < S && n < L.maxBatch; k++) {
      const s = (rot + k) % S;
      n += pio.recv(handles[s], mem, L.slotBase, L.slotSize, L.headroom, L.inDescBase, n, L.maxBatch - n, portOf[s], 0);
    }
    rot = rot + 1 === S ? 0 : rot + 1;
    if (avoid && ++turns >= nextLook) look();
    if (imaging) imageStep();
    if (n === 0) {
      if (imaging) continue;
      // the spin, in the addon's poll (io_common.h): found something, or sleep
      if (justBatched && spinUs > 0) {
        justBatched = false;
        if (pio.poll(handles, 0, init.wakeFd, spinUs) > 0) { loop.spinHits++; continue; }
      }
      loop.sleeps++;
      pio.poll(handles, init.idlePollMs, init.wakeFd);
      continue;
    }
    justBatched = n >= 2;
    if (tap) {
      processTapped(n, tap);
      continue;
    }
    loop.batches++;
    sendOut(dp.process(n));
    // The output area filled before every input was taken (a long flood
    // list): send what is there, move the rest to the front of the batch and
    // go on (assembly/abi.ts: process() always starts at in-desc 0). Rare, so
    // the copy does not matter.
    let done = dp.consumed;
    while (done < n && done > 0) {
      loop.partial++;
      n -= done;
      u8.copyWithin(L.slotBase, L.slotBase + done * L.slotSize, L.slotBase + (done + n) * L.slotSize);
      u8.copyWithin(L.inDescBase, L.inDescBase + done * IN_DESC, L.inDescBase + (done + n) * IN_DESC);
      sendOut(dp.process(n));
      done = dp.consumed;
    }
    if (done === 0) loop.unprocessed += n;
  }
  } finally {
    for (const h of handles) pio.close(h);
    tunTx?.close(); // after the socket that wrote to it
  }
  post({ type: "stopped", id: init.id });
}

main().catch((e) => {
  parentPort!.postMessage({ type: "error", id: (workerData as WorkerInit).id, message: (e as Error).stack ?? String(e) } satisfies FromWorker);
});
