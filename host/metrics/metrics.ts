// Prometheus metrics of an NVE (issue 13), with prom-client, served with
// /healthz and /readyz on `metrics.listen` or `--metrics HOST:PORT`.
//
// Names follow the Prometheus conventions (nvedge_..._total for counters,
// base units: bytes, seconds). Labels stay low-cardinality: port, VN id,
// drop reason, op, error code, worker index, interface; never a MAC or a VNIC.
//
// The data plane's own counters (per port, per VN, per drop reason, the
// sockets' ring drops and each worker's figures) are read at scrape time, once
// per scrape, from whatever `counters()` the NVE runs with (the in-process
// DataPlane or the AF_PACKET worker pool); they are the data plane's
// monotonic counters, untouched by `nvedge counters clear` (which only moves
// the CLI's baseline).
import { createServer, type Server } from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { watchWrites, type Store } from "../store/store.js";
import { VERSION } from "../version.js";
import { parseListen } from "./listen.js";
export { parseListen };
import { ERROR_CODES } from "../protocol/errors.js";
import { OPS as PROTOCOL_OPS } from "../protocol/schemas.js";

type Labels = Record<string, string | number>;

/** The data plane counters, as DataPlane.counters() or WorkerPool.counters() give them. */
export interface DpCounters {
  frames: { rx: number; forwarded: number; outputs?: number; dropped: number };
  drops: Record<string, number>;
  ports: Record<string, { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; drops: number }>;
  vns: Record<string, { rxFrames: number; txFrames: number; encap: number; decap: number; flood: number; drops: number }>;
}
export interface AllCounters {
  counters: DpCounters;
  io?: Record<string, { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; txErrors: number; oversize: number; csumNotReady: number; kernelDrops: number; kernelFreezes: number; gsoTunnelSent?: number; gsoTunnelErrors?: number }>;
  perWorker?: { rx: number; forwarded: number; dropped: number; batches: number }[];
}

/** Either shape of counters → one. */
export function normCounters(x: unknown): AllCounters {
  const o = x as { counters?: DpCounters; io?: AllCounters["io"]; perWorker?: AllCounters["perWorker"] } & DpCounters;
  return o.counters ? { counters: o.counters, io: o.io, perWorker: o.perWorker } : { counters: o };
}

/** What the control plane shows (NveCore's model and views), read at scrape time. */
export interface ControlView {
  vnics: number;
  bindings: number;
  tagsInUse: number;
  tagsQuarantined: number;
  agentsOnline: number;
  agentsKnown: number;
}

export interface NveMetricsSources {
  counters?: () => Promise<unknown> | unknown;
  control?: () => ControlView;
  mqttConnected?: () => boolean;
}

// The ops of PROTOCOL.md §2: the `op` label takes only these (anything else is
// "other"), so a client cannot grow the label set.
const OPS = new Set<string>(PROTOCOL_OPS);
const CODES = new Set<string>(ERROR_CODES as readonly string[]);

export class NveMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter;
  private readonly requestSeconds: Histogram;
  private readonly commitSeconds: Histogram;
  private readonly reloads: Counter;
  private snapshot: Promise<AllCounters | undefined> | undefined;
  private snapshotAt = 0;

  constructor(private readonly src: NveMetricsSources, labels: Labels = {}) {
    const r = this.registry;
    r.setDefaultLabels(labels);
    collectDefaultMetrics({ register: r, prefix: "nvedge_process_" });
    // prom-client names these gauges "..._total", which promtool (rightly) refuses for a non-counter.
    for (const n of ["active_handles_total", "active_requests_total", "active_resources_total"]) r.removeSingleMetric(`nvedge_process_nodejs_${n}`);
    new Gauge({ name: "nvedge_build_info", help: "The running nvedge's version (always 1)", labelNames: ["version"], registers: [r],
      collect() { this.set({ version: VERSION }, 1); } });
    this.requests = new Counter({ name: "nvedge_control_requests_total", help: "Control requests answered, by op and result (ok or the PROTOCOL.md error code)",
      labelNames: ["op", "code"], registers: [r] });
    this.requestSeconds = new Histogram({ name: "nvedge_control_request_duration_seconds", help: "Time from a request's arrival to its answer, by op",
      labelNames: ["op"], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [r] });
    this.commitSeconds = new Histogram({ name: "nvedge_store_commit_duration_seconds", help: "Time for a store transaction to be durable",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1], registers: [r] });
    this.reloads = new Counter({ name: "nvedge_reloads_total", help: "Configuration reloads (SIGHUP or nvedge reload), by result", labelNames: ["result"], registers: [r] });
    this.dataPlane();
    this.controlPlane();
  }

  /**
   * The series of one (op, code), looked up once: prom-client hashes a label
   * object on every inc/observe, ~1.5 µs a request at 10,000/s (issue 15).
   * Bounded: op and code take only the values of OPS and CODES.
   */
  private readonly series = new Map<string, { n: { inc(): void }; s: { observe(v: number): void } }>();

  /** One answered request (service.ts): `code` is "ok" or the error code. */
  observeRequest(op: string, code: string, seconds: number): void {
    const o = OPS.has(op) ? op : "other";
    const c = code === "ok" || CODES.has(code) ? code : "other";
    const k = `${o} ${c}`;
    let x = this.series.get(k);
    if (!x) this.series.set(k, (x = { n: this.requests.labels({ op: o, code: c }), s: this.requestSeconds.labels({ op: o }) }));
    x.n.inc();
    x.s.observe(seconds);
  }

  observeReload(ok: boolean): void {
    this.reloads.inc({ result: ok ? "ok" : "refused" });
  }

  /** The same store, its transactions and pipelined commits timed until durable. */
  instrumentStore(store: Store): Store {
    // one closure over a start time per write, not prom-client's startTimer
    // (an hrtime array, a labels object and its closure per write: a store
    // write per request when they come one at a time, issue 15)
    const h = this.commitSeconds;
    return watchWrites(store, () => {
      const t0 = performance.now();
      return () => h.observe((performance.now() - t0) / 1000);
    });
  }

  /** The data plane's counters, read once per scrape (every collect() of one scrape shares the read). */
  private read(): Promise<AllCounters | undefined> {
    const now = performance.now();
    if (!this.snapshot || now - this.snapshotAt > 250) {
      this.snapshotAt = now;
      const c = this.src.counters;
      this.snapshot = c ? Promise.resolve(c()).then((x) => normCounters(x), () => undefined) : Promise.resolve(undefined);
    }
    return this.snapshot;
  }

  private dataPlane(): void {
    const r = this.registry;
    const read = () => this.read();
    // A counter whose values come from the data plane at scrape time.
    const dp = (name: string, help: string, labelNames: string[], fill: (c: AllCounters, set: (l: Labels, v: number) => void) => void) =>
      new Counter({ name, help, labelNames, registers: [r], async collect() {
        const c = await read();
        this.reset();
        if (c) fill(c, (l, v) => this.inc(l, v));
      } });
    dp("nvedge_frames_received_total", "Frames the data plane received", [], (c, s) => s({}, c.counters.frames.rx));
    dp("nvedge_frames_forwarded_total", "Frames the data plane forwarded (one or more outputs)", [], (c, s) => s({}, c.counters.frames.forwarded));
    dp("nvedge_frames_sent_total", "Frames the data plane sent out (every output, flood copies included)", [], (c, s) => s({}, c.counters.frames.outputs ?? 0));
    dp("nvedge_frames_dropped_total", "Frames the data plane dropped", [], (c, s) => s({}, c.counters.frames.dropped));
    dp("nvedge_drops_total", "Dropped frames by reason (assembly/drops.ts)", ["reason"], (c, s) => {
      for (const [k, v] of Object.entries(c.counters.drops)) s({ reason: k }, v);
    });
    const perPort = (field: "rxFrames" | "rxBytes" | "txFrames" | "txBytes" | "drops") => (c: AllCounters, s: (l: Labels, v: number) => void) => {
      for (const [k, p] of Object.entries(c.counters.ports)) s({ port: k }, p[field]);
    };
    dp("nvedge_port_received_frames_total", "Frames received per port", ["port"], perPort("rxFrames"));
    dp("nvedge_port_received_bytes_total", "Bytes received per port", ["port"], perPort("rxBytes"));
    dp("nvedge_port_sent_frames_total", "Frames sent per port", ["port"], perPort("txFrames"));
    dp("nvedge_port_sent_bytes_total", "Bytes sent per port", ["port"], perPort("txBytes"));
    dp("nvedge_port_dropped_frames_total", "Frames dropped per input port", ["port"], perPort("drops"));
    const perVn = (field: "rxFrames" | "txFrames" | "encap" | "decap" | "flood" | "drops") => (c: AllCounters, s: (l: Labels, v: number) => void) => {
      for (const [k, v] of Object.entries(c.counters.vns)) s({ vn: k }, v[field]);
    };
    dp("nvedge_vn_received_frames_total", "Frames received per VN", ["vn"], perVn("rxFrames"));
    dp("nvedge_vn_sent_frames_total", "Frames sent per VN", ["vn"], perVn("txFrames"));
    dp("nvedge_vn_encapsulated_frames_total", "Frames encapsulated toward the underlay per VN", ["vn"], perVn("encap"));
    dp("nvedge_vn_decapsulated_frames_total", "Frames decapsulated from the underlay per VN", ["vn"], perVn("decap"));
    dp("nvedge_vn_flooded_frames_total", "Frames flooded per VN", ["vn"], perVn("flood"));
    dp("nvedge_vn_dropped_frames_total", "Frames dropped per VN", ["vn"], perVn("drops"));
    const perIf = (field: "kernelDrops" | "kernelFreezes" | "oversize" | "txErrors" | "csumNotReady" | "gsoTunnelSent" | "gsoTunnelErrors") => (c: AllCounters, s: (l: Labels, v: number) => void) => {
      for (const [k, v] of Object.entries(c.io ?? {})) s({ interface: k }, v[field] ?? 0);
    };
    dp("nvedge_ring_dropped_frames_total", "Frames the kernel dropped because the AF_PACKET ring was full (PACKET_STATISTICS)", ["interface"], perIf("kernelDrops"));
    dp("nvedge_ring_freezes_total", "Times the AF_PACKET ring froze (PACKET_STATISTICS)", ["interface"], perIf("kernelFreezes"));
    dp("nvedge_oversize_frames_total", "Frames longer than a ring slot, dropped before the data plane", ["interface"], perIf("oversize"));
    dp("nvedge_send_errors_total", "Frames the kernel refused to send", ["interface"], perIf("txErrors"));
    dp("nvedge_checksum_offload_frames_total", "Frames received with the L4 checksum left to offload", ["interface"], perIf("csumNotReady"));
    dp("nvedge_tunnel_gso_sent_frames_total", "Encapsulated TCP super-frames sent whole as one tunnel frame (UDP-tunnel GSO through the tunnel TX tap)", ["interface"], perIf("gsoTunnelSent"));
    dp("nvedge_tunnel_gso_errors_total", "Encapsulated TCP super-frames the tunnel TX tap refused (lost; TCP resends them)", ["interface"], perIf("gsoTunnelErrors"));
    const perWorker = (field: "rx" | "forwarded" | "dropped" | "batches") => (c: AllCounters, s: (l: Labels, v: number) => void) => {
      (c.perWorker ?? []).forEach((w, i) => s({ worker: String(i) }, w[field]));
    };
    dp("nvedge_worker_received_frames_total", "Frames received per packet I/O worker", ["worker"], perWorker("rx"));
    dp("nvedge_worker_forwarded_frames_total", "Frames forwarded per packet I/O worker", ["worker"], perWorker("forwarded"));
    dp("nvedge_worker_dropped_frames_total", "Frames dropped per packet I/O worker", ["worker"], perWorker("dropped"));
    dp("nvedge_worker_batches_total", "Batches processed per packet I/O worker", ["worker"], perWorker("batches"));
  }

  private controlPlane(): void {
    const r = this.registry;
    const src = this.src;
    const g = (name: string, help: string, get: (v: ControlView) => number) => new Gauge({ name, help, registers: [r], collect() {
      const v = src.control?.();
      if (v) this.set(get(v));
    } });
    g("nvedge_vnics", "VNICs known to this NVE", (v) => v.vnics);
    g("nvedge_bindings", "Local MAC bindings", (v) => v.bindings);
    g("nvedge_tags_in_use", "Locally significant tags mapped to a VN, over all ports", (v) => v.tagsInUse);
    g("nvedge_tags_quarantined", "Tags in their quarantine after release", (v) => v.tagsQuarantined);
    g("nvedge_agents_online", "Hypervisor agents whose retained status is online", (v) => v.agentsOnline);
    g("nvedge_agents_configured", "Hypervisors listed on this NVE's ports", (v) => v.agentsKnown);
    new Gauge({ name: "nvedge_mqtt_connected", help: "1 while the MQTT session to the broker is up", registers: [r], collect() {
      if (src.mqttConnected) this.set(src.mqttConnected() ? 1 : 0);
    } });
  }
}

export interface HttpOptions {
  listen: string;
  registry: Registry;
  /** The process and its store are fine (/healthz). */
  healthy(): Promise<string | undefined> | string | undefined;
  /** The data plane is programmed and MQTT is up (/readyz): undefined = ready, else why not. */
  ready(): Promise<string | undefined> | string | undefined;
}

/** Serves /metrics, /healthz and /readyz. */
export async function serveMetrics(o: HttpOptions): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const l = parseListen(o.listen);
  if (!l) throw new Error(`metrics listen ${JSON.stringify(o.listen)}: expected HOST:PORT`);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const reply = (code: number, body: string, type = "text/plain; charset=utf-8") => {
      res.writeHead(code, { "content-type": type });
      res.end(body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") return reply(405, "GET only\n");
    const check = (f: () => Promise<string | undefined> | string | undefined) =>
      Promise.resolve().then(f).then((why) => why === undefined ? reply(200, "ok\n") : reply(503, `${why}\n`), (e) => reply(503, `${(e as Error).message}\n`));
    if (path === "/metrics") {
      o.registry.metrics().then((m) => reply(200, m, o.registry.contentType), (e) => reply(500, `${(e as Error).message}\n`));
    } else if (path === "/healthz") void check(o.healthy);
    else if (path === "/readyz") void check(o.ready);
    else reply(404, "not found: /metrics, /healthz, /readyz\n");
  });
  await new Promise<void>((res, rej) => {
    server.once("error", rej);
    server.listen(l.port, l.host, () => res());
  });
  const port = (server.address() as { port: number }).port;
  const host = l.host.includes(":") ? `[${l.host}]` : l.host;
  return {
    url: `http://${host}:${port}`, port,
    close: () => new Promise<void>((res) => { server.closeAllConnections(); server.close(() => res()); }),
  };
}

/** What the IMA holds (host/ima/core.ts ImaCore), read at scrape time. */
export interface ImaView {
  vns: number;
  floodListEntries: number;
  bindings: number;
  frozen: number;
  /** MAC moves (RFC 7432 §15) since the IMA started: monotonic (ImaService.stats.moves). */
  moves: number;
}

/** The IMA's metrics (`nvedge ima run --metrics HOST:PORT`): catalog, flood lists, bindings, frozen MACs, moves, MQTT. */
export function imaMetrics(view: () => ImaView, mqttConnected: () => boolean, labels: Labels = {}): Registry {
  const r = new Registry();
  r.setDefaultLabels(labels);
  collectDefaultMetrics({ register: r, prefix: "nvedge_process_" });
  for (const n of ["active_handles_total", "active_requests_total", "active_resources_total"]) r.removeSingleMetric(`nvedge_process_nodejs_${n}`);
  new Gauge({ name: "nvedge_build_info", help: "The running nvedge's version (always 1)", labelNames: ["version"], registers: [r],
    collect() { this.set({ version: VERSION }, 1); } });
  const g = (name: string, help: string, get: (v: ImaView) => number) => new Gauge({ name, help, registers: [r], collect() { this.set(get(view())); } });
  g("nvedge_ima_vns", "VNs in the IMA's catalog", (v) => v.vns);
  g("nvedge_ima_flood_list_entries", "NVEs on VN flood lists, over all VNs", (v) => v.floodListEntries);
  g("nvedge_ima_bindings", "MAC bindings published (withdrawn ones excluded)", (v) => v.bindings);
  g("nvedge_ima_frozen_macs", "MACs frozen as duplicates (RFC 7432 §15)", (v) => v.frozen);
  // A counter, not a gauge of the moves in the duplicate window: rate() over
  // it is the move rate, whatever the window (Prometheus counter semantics).
  let moves = 0;
  new Counter({ name: "nvedge_ima_moves_total", help: "MAC moves (RFC 7432 §15: another NVE took a MAC, seq + 1) since the IMA started", registers: [r],
    collect() { const n = view().moves; if (n > moves) { this.inc(n - moves); moves = n; } } });
  new Gauge({ name: "nvedge_mqtt_connected", help: "1 while the MQTT session to the broker is up", registers: [r], collect() { this.set(mqttConnected() ? 1 : 0); } });
  return r;
}
