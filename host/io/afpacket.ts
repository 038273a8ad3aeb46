// `nvedge run --io afpacket --workers N`: one worker thread per core, each
// with its own DataPlane and its own AF_PACKET socket per interface, the
// sockets of one interface joined in one PACKET_FANOUT (hash) group so the
// kernel spreads flows over the workers (worker.ts runs the loop).
//
// The pool is the data plane's programmer (host/dataplane/ops.ts): apply()
// posts the ops to every worker and resolves only when every worker has
// applied them, so a change is acknowledged only once all of the data plane
// has it (PROTOCOL.md §2: answer only after the change is programmed).
//
// Use (nvedge run --io afpacket --workers N):
//   const pool = await startAfPacket({ config, workers: N });   // opens every port of the config
//   ... NveCore({ programmer: pool }) ...; counters: () => pool.counters()
//   pool.closed.catch(fatal);  on shutdown: await pool.stop()
// Operational notes (seen on veth, true of NICs too):
// - Offloads stay on at the senders: a frame whose L4 checksum a local
//   sender left partial (`csumNotReady`) is completed by the data plane, and
//   a TSO/GSO super-frame is cut into segments by the addon (`gsoFrames`,
//   `gsoSegments`) that the data plane makes real (assembly/pipeline/offload.ts).
//   Other frames above a slot (1920 bytes) are counted as `oversize`.
// - The underlay MTU must hold the inner MTU plus the encapsulation (50 bytes
//   VXLAN/IPv4, 70 IPv6); a frame the kernel refuses is counted in `txErrors`.
import { Worker, MessageChannel, type MessagePort } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { closeSync, openSync } from "node:fs";
import { loadAddon, type OpenOptions } from "./addon.js";
import { workerUrl } from "../paths.js";
import type { DataPlaneProgrammer, DpOp } from "../dataplane/ops.js";
import type { ImageKey } from "../dataplane/image.js";
import type { LearnRecord } from "../dataplane/dataplane.js";
import { DataPlaneError } from "../dataplane/error.js";
import type { NveConfig } from "../config/types.js";
import type { FromWorker, ToWorker, WorkerInit, LoopStats, TapSpec, TappedFrame } from "./worker.js";
import type { SocketStats } from "./addon.js";

export interface AfPacketOptions {
  /** The interfaces come from it: the underlay port and every access port. */
  config?: Pick<NveConfig, "underlay" | "ports">;
  /** Or name them directly (used when no config is given). */
  interfaces?: string[];
  /** Worker threads; default one per core (AF_XDP: one, as a veth has one queue). */
  workers?: number;
  /** AF_PACKET (default) or AF_XDP sockets (host/io/native/afxdp; each worker binds the queue of its index). */
  io?: "afpacket" | "afxdp";
  /** Ring and socket options for every socket (addon.ts OpenOptions). */
  ring?: Omit<OpenOptions, "fanout">;
  /** Passed to DataPlane.create in every worker. */
  dataplane?: WorkerInit["dataplane"];
  /** Applied in every worker before startAfPacket resolves. */
  ops?: DpOp[];
  /** How long an idle worker sleeps in poll() between checks (it is woken early for control messages). */
  idlePollMs?: number;
  /** How long a worker keeps reading its rings after a batch before it sleeps (after a batch of 2+ frames; default: NVEDGE_IO_SPIN_US, else 0: off; worker.ts). */
  idleSpinUs?: number;
  /** The workers' scheduling (worker.ts WorkerInit.sched); default: NVEDGE_IO_SCHED from the environment, else "off". */
  sched?: "fair" | "fifo" | "off";
  /** AF_XDP: each worker keeps off the CPUs its frames arrive on (worker.ts avoidRxCpu); default: NVEDGE_IO_AFFINITY (auto | off), else auto. */
  avoidRxCpu?: boolean;
  /**
   * The workers forward nothing until WorkerPool.go (issue 15: started with
   * dataplane.imagePath before the image's key can be computed, they restore
   * it meanwhile; `images` says what each restored).
   */
  hold?: boolean;
  /** A worker takes an image (snapshot) between batches, this long at a time (default 1 ms; worker.ts). */
  imageSliceMs?: number;
  /**
   * With hold and dataplane.imagePath: worker 0 starts alone and startAfPacket
   * resolves once it is up; the others are spawned then (WorkerPool.spawnRest,
   * `joined`). Issue 15: on this 2-core machine every worker's start (~65 ms
   * of Node's thread start, and faulting in ~150 MB of tables and rings, 30 to
   * 400 ms of CPU) competed for the same cores, so the first frame waited for
   * all of them; one worker forwards as well (the fanout group sends every
   * frame to the sockets it has) until the others join it. All read the image
   * from one descriptor opened here, so they restore the same file.
   */
  stagger?: boolean;
}

/** An error a worker's DataPlane.apply threw, as the same class (DataPlaneError: same index, field, message). */
function applyError(e: { name: string; message: string; index?: number; field?: string }): Error {
  const err = e.index !== undefined ? new DataPlaneError(e.index, e.field ?? "", "") : new Error();
  err.message = e.message;
  if (e.index === undefined) err.name = e.name;
  return err;
}

export interface PoolCounters {
  counters: Record<string, unknown>;
  io: Record<string, SocketStats>;
  loop: LoopStats;
  perWorker: { rx: number; forwarded: number; dropped: number; batches: number }[];
}

interface Pending { left: number; results: unknown[]; error?: Error; resolve(v: unknown[]): void; reject(e: Error): void }

/** A worker's image: the key and info of the image it restored, or why it refused it (it then has empty tables). */
export type WorkerImage = NonNullable<Extract<FromWorker, { type: "ready" }>["image"]>;

export class WorkerPool implements DataPlaneProgrammer {
  private seq = 0;
  /** How each worker's sockets run (AF_XDP: zero-copy or copy mode, native or generic XDP), for the log. */
  readonly modes: string[] = [];
  /** What each worker restored from dataplane.imagePath (its key and info) or why it refused it; by worker id. */
  readonly images: (WorkerImage | undefined)[] = [];
  private pending = new Map<number, Pending>();
  private exited = 0;
  private stopping = false;
  /** Workers not spawned yet (AfPacketOptions.stagger): spawned by `spawnRest`, or never once the pool stops. */
  private unspawned: number;
  /** What `go` told the workers (undefined: not yet): a worker that joins later must have restored the same image to keep it. */
  private kept: boolean | undefined;
  /** Resolves when every worker has ended; rejects if one fails while running. */
  readonly closed: Promise<void>;
  private closedResolve!: () => void;
  private closedReject!: (e: Error) => void;
  /**
   * Resolves when every worker is up (sockets open, its image restored or
   * refused: `images`); at once unless the pool was started with `stagger`,
   * where the first worker alone runs when startAfPacket resolves.
   */
  readonly joined: Promise<void>;
  private joinedResolve!: () => void;
  private joinedReject!: (e: Error) => void;
  private readonly workers: (Worker | undefined)[];

  constructor(
    workers: (Worker | undefined)[],
    private readonly ports: MessagePort[],
    private readonly ctl: Int32Array,
    private readonly wakeFds: number[],
    readonly interfaces: string[],
    /** Spawns worker `id` (one given as undefined above), for `spawnRest`. */
    private readonly spawn?: (id: number) => Worker,
    /** Called once every worker has ended or will never be spawned (an image file's descriptor closed). */
    private readonly onClosed?: () => void,
  ) {
    this.workers = [...workers];
    this.unspawned = workers.filter((w) => !w).length;
    this.closed = new Promise((res, rej) => { this.closedResolve = res; this.closedReject = rej; });
    this.closed.catch(() => { /* observed through closed by whoever cares */ });
    this.joined = new Promise((res, rej) => { this.joinedResolve = res; this.joinedReject = rej; });
    this.joined.catch(() => { /* observed through joined by whoever cares */ });
    if (this.unspawned === 0) this.joinedResolve();
    workers.forEach((w, id) => { if (w) this.wire(w, id); });
  }

  private wire(w: Worker, id: number): void {
    w.on("message", (m: FromWorker) => this.onMessage(m));
    w.on("error", (e) => this.fail(new Error(`packet I/O worker ${id}: ${e.message}`)));
    w.on("exit", (code) => {
      this.exited++;
      if (!this.stopping) this.fail(new Error(`packet I/O worker ${id} exited (code ${code})`));
      this.closeIfDone();
    });
  }

  private closeIfDone(): void {
    const spawned = this.workers.filter((w) => w).length;
    if (this.exited === spawned && (this.unspawned === 0 || this.stopping)) {
      this.unspawned = 0;
      for (const fd of this.wakeFds) loadAddon().closeFd(fd);
      this.onClosed?.();
      this.joinedReject(new Error("the packet I/O workers stopped before every one was up"));
      this.closedResolve();
    }
  }

  /**
   * Spawns the workers held back by `stagger` (issue 15: the first one forwards
   * while they start): each restores the same image file (the descriptor the
   * first one read, so an image written meanwhile is not it), is told what
   * `go` said, and must have restored the image the first one did when that
   * is kept (else the pool fails: the workers would forward from different
   * tables). `joined` resolves once every one is up.
   */
  spawnRest(): void {
    if (this.stopping || !this.spawn || this.unspawned === 0) return;
    const late: Promise<void>[] = [];
    this.workers.forEach((w, id) => {
      if (w) return;
      const nw = this.spawn!(id);
      this.workers[id] = nw;
      this.unspawned--;
      this.wire(nw, id);
      late.push(new Promise<void>((resolve, reject) => {
        const on = (m: FromWorker) => {
          if (m.type === "error") { nw.off("message", on); reject(new Error(m.message)); return; }
          if (m.type !== "ready") return;
          nw.off("message", on);
          if (m.modes?.length) this.modes.push(`worker ${m.id}: ${m.modes.join(", ")}`);
          this.images[m.id] = m.image;
          const first = this.images[0], mine = m.image;
          const same = !first || !mine ? first === mine
            : "key" in first && "key" in mine ? JSON.stringify(first.key) === JSON.stringify(mine.key) && JSON.stringify(first.info) === JSON.stringify(mine.info)
            : "refused" in first && "refused" in mine;
          if (this.kept && !same) reject(new Error(`packet I/O worker ${m.id} did not restore the table image worker 0 forwards from (${mine && "refused" in mine ? mine.refused : "another image"})`));
          else resolve();
        };
        nw.on("message", on);
        nw.once("exit", () => reject(new Error(`packet I/O worker ${id} exited during start-up`)));
      }));
    });
    Promise.all(late).then(() => this.joinedResolve(), (e: Error) => { this.joinedReject(e); this.fail(e); });
  }

  get size(): number {
    return this.workers.length;
  }

  private fail(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.closedReject(e);
    if (!this.stopping) void this.stop();
  }

  private puntHandlers: ((port: string, frame: Uint8Array) => void)[] = [];

  /** Called with every frame the data plane hands to the host (ARP/ND for underlay.ip). */
  onPunt(h: (port: string, frame: Uint8Array) => void): void { this.puntHandlers.push(h); }

  /**
   * Releases workers started with `hold`: each forwards from the image it
   * restored (keep) or from empty tables (the caller then programs them).
   * Every worker must be told the same, before any other request.
   */
  go(keep: boolean): void {
    this.kept = keep;
    this.ports.forEach((port, id) => {
      port.postMessage({ type: "go", keep } satisfies ToWorker);
      Atomics.store(this.ctl, id, 1);
      Atomics.notify(this.ctl, id);
    });
  }

  /** Sends a frame the NVE itself makes (an ARP request, an NS) out of `port`, through worker 0. */
  sendFrame(port: string, frame: Uint8Array): void {
    if (this.stopping) return;
    const addon = loadAddon();
    this.ports[0].postMessage({ type: "send", port, frame } satisfies ToWorker);
    Atomics.store(this.ctl, 0, 1);
    addon.wake(this.wakeFds[0]);
  }

  private taps = new Map<number, (frames: TappedFrame[]) => void>();
  private tapSeq = 0;

  /**
   * The next `count` frames matching `match` (kind "trace": every frame, with
   * its decisions and outputs; "drops": dropped frames only, optionally of one
   * `reason`), from every worker, or what came within `timeoutMs`. One tap at
   * a time; the workers go back to whole batches as soon as it ends.
   */
  async capture(o: { kind: "trace" | "drops"; count: number; timeoutMs: number; match?: TapSpec["match"]; reason?: string }): Promise<TappedFrame[]> {
    if (this.taps.size) throw new Error("another capture or live trace is running on this NVE; try again when it ends");
    const id = ++this.tapSeq;
    const out: TappedFrame[] = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => { done = r; });
    this.taps.set(id, (frames) => {
      for (const f of frames) if (out.length < o.count) out.push(f);
      if (out.length >= o.count) done();
    });
    const timer = setTimeout(() => done(), o.timeoutMs);
    try {
      await this.broadcast((seq) => ({ type: "tap", seq, tap: { id, kind: o.kind, count: o.count, match: o.match ?? {}, reason: o.reason } }));
      await Promise.race([finished, this.closed]);
    } finally {
      clearTimeout(timer);
      this.taps.delete(id);
      if (!this.stopping) await this.broadcast((seq) => ({ type: "tap", seq, tap: null })).catch(() => undefined);
    }
    return out.sort((a, b) => a.ts - b.ts);
  }

  /** One frame through the first worker's data plane, its decisions and outputs (not sent). */
  trace(port: string, frame: Uint8Array): Promise<{ steps: string[]; drop?: string; outputs: { port: string; frame: Uint8Array }[] }> {
    if (this.stopping) return Promise.reject(new Error("the packet I/O workers are stopped"));
    const seq = ++this.seq;
    const done = new Promise<unknown[]>((resolve, reject) => {
      this.pending.set(seq, { left: 1, results: [], resolve, reject });
    });
    const addon = loadAddon();
    this.ports[0].postMessage({ type: "trace", seq, port, frame } satisfies ToWorker);
    Atomics.store(this.ctl, 0, 1);
    addon.wake(this.wakeFds[0]);
    return done.then((r) => r[0] as { steps: string[]; drop?: string; outputs: { port: string; frame: Uint8Array }[] });
  }

  /** The slices the last image was taken in, between batches (worker.ts). */
  imageSteps = 0;

  /**
   * Worker 0's tables as an image keyed `key` (host/dataplane/image.ts; every
   * worker holds the same tables), taken a slice at a time between batches;
   * rejected when an op is applied before it is whole.
   */
  snapshot(key: ImageKey): Promise<Uint8Array> {
    if (this.stopping) return Promise.reject(new Error("the packet I/O workers are stopped"));
    const seq = ++this.seq;
    const done = new Promise<unknown[]>((resolve, reject) => {
      this.pending.set(seq, { left: 1, results: [], resolve, reject });
    });
    this.ports[0].postMessage({ type: "image", seq, key } satisfies ToWorker);
    Atomics.store(this.ctl, 0, 1);
    loadAddon().wake(this.wakeFds[0]);
    return done.then((r) => r[0] as Uint8Array);
  }

  private learnHandlers: ((recs: LearnRecord[]) => void)[] = [];

  /** Called with every batch's learn records of every worker (assembly/pipeline/glean.ts). */
  onLearn(h: (recs: LearnRecord[]) => void): void { this.learnHandlers.push(h); }

  private onMessage(m: FromWorker): void {
    if (m.type === "punt") {
      for (const f of m.frames) for (const h of this.puntHandlers) h(f.port, f.frame);
      return;
    }
    if (m.type === "learn") {
      for (const h of this.learnHandlers) h(m.recs);
      return;
    }
    if (m.type === "traced") {
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.pending.delete(m.seq);
      p.resolve([{ steps: m.steps, drop: m.drop, outputs: m.outputs }]);
      return;
    }
    if (m.type === "imaged") {
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.pending.delete(m.seq);
      if (m.bytes) { this.imageSteps = m.steps ?? 0; p.resolve([m.bytes]); }
      else p.reject(new Error(m.error ?? "no image"));
      return;
    }
    if (m.type === "tapped") {
      this.taps.get(m.tap)?.(m.frames);
      return;
    }
    if (m.type !== "applied" && m.type !== "counters") {
      if (m.type === "error") this.fail(new Error(m.message));
      return;
    }
    const p = this.pending.get(m.seq);
    if (!p) return;
    if (m.type === "applied" && m.error && !p.error) p.error = applyError(m.error);
    if (m.type === "counters") p.results.push({ counters: m.counters, io: m.io, loop: m.loop });
    if (--p.left === 0) {
      this.pending.delete(m.seq);
      if (p.error) p.reject(p.error);
      else p.resolve(p.results);
    }
  }

  private broadcast(msg: (seq: number) => ToWorker): Promise<unknown[]> {
    if (this.stopping) return Promise.reject(new Error("the packet I/O workers are stopped"));
    const seq = ++this.seq;
    const done = new Promise<unknown[]>((resolve, reject) => {
      this.pending.set(seq, { left: this.workers.length, results: [], resolve, reject });
    });
    this.post(msg(seq));
    return done;
  }

  private post(m: ToWorker): void {
    const addon = loadAddon();
    this.ports.forEach((port, id) => {
      port.postMessage(m);
      // Raise the flag after the message is queued: the worker drains its
      // port whenever it sees the flag, so nothing is missed.
      Atomics.store(this.ctl, id, 1);
      Atomics.notify(this.ctl, id); // a worker held before `go` waits on its flag, not in poll()
      addon.wake(this.wakeFds[id]);
    });
  }

  /**
   * Applies `ops` in every worker. Every worker holds the same tables and
   * applies the same ops in the same order, so a bad op is refused by all of
   * them alike (DataPlane.apply applies none of a list it refuses).
   */
  async apply(ops: DpOp[]): Promise<void> {
    await this.broadcast((seq) => ({ type: "apply", seq, ops }));
  }

  /**
   * Counters summed over the workers (`counters` has the shape of
   * DataPlane.counters()), each interface's socket figures summed over its
   * sockets (`io`), the loops' figures (`loop`) and each worker's own totals.
   */
  async counters(): Promise<PoolCounters> {
    type One = { counters: Record<string, unknown>; io: Record<string, SocketStats>; loop: LoopStats };
    const all = (await this.broadcast((seq) => ({ type: "counters", seq }))) as One[];
    const out = { counters: {}, io: {}, loop: {} } as PoolCounters;
    for (const r of all) {
      sumInto(out.counters, r.counters);
      sumInto(out.io as unknown as Record<string, unknown>, r.io);
      sumInto(out.loop as unknown as Record<string, unknown>, r.loop);
    }
    out.perWorker = all.map((r) => {
      const f = (r.counters as { frames: { rx: number; forwarded: number; dropped: number } }).frames;
      return { rx: f.rx, forwarded: f.forwarded, dropped: f.dropped, batches: r.loop.batches };
    });
    return out;
  }

  /** Stops every worker (bounded: a worker that does not stop within 5 s is terminated). */
  async stop(): Promise<void> {
    if (this.stopping) return this.closed.catch(() => undefined);
    this.stopping = true;
    this.post({ type: "stop", seq: ++this.seq });
    const timer = setTimeout(() => { for (const w of this.workers) void w?.terminate(); }, 5000);
    this.closeIfDone(); // workers never spawned (stagger) are not waited for
    await this.closed.catch(() => undefined);
    clearTimeout(timer);
  }
}

/** Adds every number of `src` into `dst`, key by key, at any depth. */
function sumInto(dst: Record<string, unknown>, src: unknown): void {
  if (!src || typeof src !== "object") return;
  for (const [k, v] of Object.entries(src as Record<string, unknown>)) {
    if (typeof v === "number") dst[k] = ((dst[k] as number | undefined) ?? 0) + v;
    else if (typeof v === "string") dst[k] = v; // a reason (gsoTunnelLastError): any worker's last one
    else if (v && typeof v === "object") {
      if (!dst[k] || typeof dst[k] !== "object") dst[k] = {};
      sumInto(dst[k] as Record<string, unknown>, v);
    }
  }
}

// A fanout group id is per network namespace and bound to one interface, so
// each pool and interface gets its own: derived from the pid (other processes)
// and a per-process pool count (several pools in one process, as in tests).
let pools = 0;
function fanoutGroup(pool: number, i: number): number {
  return (process.pid * 131 + pool * 509 + i * 7919) & 0xffff;
}

/**
 * Starts the workers, opens every interface in each, applies `ops`, and
 * resolves once all of them run. Rejects with the first worker's error (e.g.
 * "interface eth9 does not exist") after stopping the others.
 */
/** How long a worker spins after a batch of 2+ frames: the option, else NVEDGE_IO_SPIN_US, else the worker's default (µs, 0..1000; worker.ts). */
export function ioSpinUs(o?: number): number {
  const v = o ?? (process.env.NVEDGE_IO_SPIN_US !== undefined ? Number(process.env.NVEDGE_IO_SPIN_US) : 0);
  if (!Number.isInteger(v) || v < 0 || v > 1000) throw new Error(`NVEDGE_IO_SPIN_US=${v}: expected an integer 0..1000 (µs)`);
  return v;
}

/** The workers' scheduling: the option, else NVEDGE_IO_SCHED (off | fifo | fair), else off; anything else is refused. */
export function ioSched(o?: string): "fair" | "fifo" | "off" {
  const v = o ?? process.env.NVEDGE_IO_SCHED ?? "off";
  if (v !== "fair" && v !== "fifo" && v !== "off") throw new Error(`NVEDGE_IO_SCHED=${v}: expected fair, fifo or off`);
  return v;
}

/** AF_XDP workers off their frames' receive CPUs: the option, else NVEDGE_IO_AFFINITY (auto | off), else auto; anything else is refused. */
export function ioAvoidRxCpu(o?: boolean): boolean {
  if (o !== undefined) return o;
  const v = process.env.NVEDGE_IO_AFFINITY ?? "auto";
  if (v !== "auto" && v !== "off") throw new Error(`NVEDGE_IO_AFFINITY=${v}: expected auto or off`);
  return v === "auto";
}

export async function startAfPacket(opts: AfPacketOptions): Promise<WorkerPool> {
  const interfaces = opts.interfaces ?? (opts.config ? [opts.config.underlay.port, ...opts.config.ports.map((p) => p.name)] : []);
  if (interfaces.length === 0) throw new Error("--io afpacket: no interfaces to open");
  if (opts.hold && opts.ops?.length) throw new Error("startAfPacket: ops are applied after go, not with hold");
  // AF_XDP: one socket per receive queue, worker i on queue i (a veth has one unless made with numrxqueues)
  const n = opts.workers ?? (opts.io === "afxdp" ? 1 : availableParallelism());
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--workers: expected an integer 1..64, got ${opts.workers}`);
  const addon = loadAddon();
  const ctl = new Int32Array(new SharedArrayBuffer(4 * n));
  const workers: Worker[] = [];
  const ports: MessagePort[] = [];
  const wakeFds: number[] = [];
  const poolNo = pools++;
  const fanout = interfaces.map((_, i) => fanoutGroup(poolNo, i));
  // underlay.vlan (INTERFACES.md): the uplink's socket tags and untags (native/afpacket.c; native/afxdp: its XDP program takes only our VLAN)
  const vlans = interfaces.map((name) => opts.config && name === opts.config.underlay.port ? opts.config.underlay.vlan ?? 0 : 0);
  // encap TCP super-frames whole through a tunnel TX tap per worker (tunnel-output.ts; underlay.tunnelGso, default auto)
  const tunnelTx = opts.config ? { uplink: opts.config.underlay.port, mode: opts.config.underlay.tunnelGso ?? "auto" } : undefined;
  // staggered (opts.stagger): one descriptor of the image for every worker, closed once all are up or the pool ends
  const imagePath = opts.dataplane?.imagePath;
  let imageFd: number | undefined;
  if (opts.stagger && opts.hold && imagePath) {
    try { imageFd = openSync(imagePath, "r"); } catch { /* the workers report it (refused), as without stagger */ }
  }
  const dataplane = { ...opts.dataplane, ...(imageFd !== undefined ? { imageFd } : {}) };
  const inits: WorkerInit[] = [];
  const ends: MessagePort[] = [];
  for (let id = 0; id < n; id++) {
    const { port1, port2 } = new MessageChannel();
    const wakeFd = addon.eventfd();
    inits.push({
      id, io: opts.io ?? "afpacket", interfaces, fanout, vlans, ...(tunnelTx ? { tunnelTx } : {}), ring: opts.ring ?? {}, dataplane, hold: opts.hold, imageSliceMs: opts.imageSliceMs,
      ctl: ctl.buffer as SharedArrayBuffer, port: port2, wakeFd, idlePollMs: opts.idlePollMs ?? 100,
      idleSpinUs: ioSpinUs(opts.idleSpinUs),
      sched: ioSched(opts.sched),
      avoidRxCpu: ioAvoidRxCpu(opts.avoidRxCpu),
    });
    ends.push(port2);
    ports.push(port1);
    wakeFds.push(wakeFd);
  }
  const first = imageFd !== undefined ? 1 : n;
  const spawn = (id: number) => new Worker(workerUrl("io-worker"), { workerData: id >= first ? { ...inits[id], late: true } : inits[id], transferList: [ends[id]] });
  for (let id = 0; id < first; id++) workers.push(spawn(id));
  let fdOpen = imageFd !== undefined;
  const closeImageFd = () => { if (fdOpen) { fdOpen = false; closeSync(imageFd!); } };
  const pool = new WorkerPool([...workers, ...Array<undefined>(n - first).fill(undefined)], ports, ctl, wakeFds, interfaces, spawn, closeImageFd);
  pool.joined.then(closeImageFd, closeImageFd);
  // Every worker spawned now reports ready (sockets open) or an error.
  const ready = Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
    const on = (m: FromWorker) => {
      if (m.type === "ready") {
        w.off("message", on);
        if (m.modes?.length) pool.modes.push(`worker ${m.id}: ${m.modes.join(", ")}`);
        pool.images[m.id] = m.image;
        resolve();
      }
      else if (m.type === "error") { w.off("message", on); reject(new Error(m.message)); }
    };
    w.on("message", on);
    w.once("exit", () => reject(new Error("a packet I/O worker exited during start-up")));
  })));
  try {
    await Promise.race([ready, pool.closed.then(() => { throw new Error("the packet I/O workers ended during start-up"); })]);
    pool.spawnRest();
    if (opts.ops?.length) await pool.apply(opts.ops);
  } catch (e) {
    await pool.stop();
    throw e;
  }
  return pool;
}
