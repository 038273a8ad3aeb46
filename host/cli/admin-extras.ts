// The admin socket's commands beyond show/trace and the NVE-initiated actions
// (host/control/admin.ts), for the operator's CLI (issue 13):
//   {"cmd":"show","what":"summary"}       the one-screen summary of `nvedge show`
//   {"cmd":"show","what":"remotes"}       remote NVEs: static and learned from the IMA
//   {"cmd":"show","what":"hypervisors"}   every End Device: port, agent state, VNICs
//   {"cmd":"show","what":"acl"}           each VN's ACL rules and the frames each denied (issue 14)
//   {"cmd":"log-level","level"?:L}        reads or sets the log level
//   {"cmd":"reload"}                      as SIGHUP (host/cli/reload.ts)
//   {"cmd":"counters.clear"}              `show counters` counts from now on (the
//                                         data plane's and /metrics' counters stay monotonic)
//   {"cmd":"capture","kind":"trace"|"drops","count":N,"timeoutMs":T,"match"?:{...},"reason"?:R}
//                                         frames of the running data plane (host/io tap)
import { ProtocolError } from "../protocol/errors.js";
import type { NveCore } from "../control/core.js";
import { isLevel, type Logger } from "../log/logger.js";
import type { Reloader } from "./reload.js";
import { normCounters } from "../metrics/metrics.js";
import type { Msg } from "../ipc/jsonl-socket.js";

export interface TapSource {
  capture(o: CaptureRequest): Promise<{ port: string; frame: Uint8Array; ts: number; drop?: string; vn?: number; steps?: string[]; outputs?: { port: string; frame: Uint8Array }[] }[]>;
}
export interface CaptureRequest {
  kind: "trace" | "drops";
  count: number;
  timeoutMs: number;
  match?: { port?: string; mac?: string; vn?: number; ethertype?: number };
  reason?: string;
}
export interface CapturedFrame { port: string; frame: string; ts: number; drop?: string; steps?: string[]; outputs?: { port: string; frame: string }[]; vn?: number }

/** Subtracts a snapshot from every number of `x`, key by key, at any depth. */
export function minus(x: unknown, base: unknown): unknown {
  if (typeof x === "number") return typeof base === "number" ? Math.max(0, x - base) : x;
  if (Array.isArray(x)) return x.map((v, i) => minus(v, (base as unknown[] | undefined)?.[i]));
  if (x && typeof x === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(x)) out[k] = minus(v, (base as Record<string, unknown> | undefined)?.[k]);
    return out;
  }
  return x;
}

export interface ExtrasOptions {
  core: NveCore;
  logger: Logger;
  reloader: Reloader;
  /** The data plane's raw (monotonic) counters. */
  counters: () => unknown;
  tap?: TapSource;
  started: number;
  io: string;
  mqttUp: () => boolean;
  version: string;
  /** The broker the NVE uses, as said in the summary. */
  broker?: string;
}

/** Total drops, sampled every 10 s, for "drops in the last minute". */
class DropWindow {
  private samples: { at: number; dropped: number }[] = [];
  private timer: NodeJS.Timeout;
  constructor(private read: () => Promise<number | undefined>) {
    this.timer = setInterval(() => void this.sample(), 10_000);
    this.timer.unref();
    void this.sample();
  }
  private async sample(): Promise<void> {
    const d = await this.read().catch(() => undefined);
    if (d === undefined) return;
    this.samples.push({ at: performance.now(), dropped: d });
    if (this.samples.length > 8) this.samples.shift();
  }
  /** Drops since the sample closest to one minute ago (or since start). */
  async lastMinute(): Promise<{ drops: number; seconds: number } | undefined> {
    const now = await this.read().catch(() => undefined);
    if (now === undefined || this.samples.length === 0) return undefined;
    const t = performance.now();
    const old = this.samples.find((s) => t - s.at <= 61_000) ?? this.samples[0];
    return { drops: now - old.dropped, seconds: Math.round((t - old.at) / 1000) };
  }
  close(): void {
    clearInterval(this.timer);
  }
}

export function adminExtras(o: ExtrasOptions): { commands: Record<string, (m: Msg) => Promise<unknown> | unknown>; counters: () => Promise<unknown>; close(): void } {
  let base: unknown;
  const raw = async () => o.counters();
  const drops = new DropWindow(async () => {
    const c = await raw();
    return c === undefined ? undefined : normCounters(c).counters.frames.dropped;
  });
  const counters = async () => {
    const c = await raw();
    return base === undefined ? c : { ...(minus(c, base) as object), clearedAt: (base as { clearedAt?: number }).clearedAt };
  };
  const core = o.core;
  const commands: Record<string, (m: Msg) => Promise<unknown> | unknown> = {
    "log-level": (m) => {
      if (m.level !== undefined) {
        if (!isLevel(m.level)) throw new ProtocolError("bad-request", `"level" must be one of fatal, error, warn, info, debug, trace, silent`, "level");
        const from = o.logger.level;
        o.logger.setLevel(m.level);
        o.logger.line(`admin: log level ${from} -> ${m.level}`, undefined, "info");
      }
      return { level: o.logger.level };
    },
    reload: async () => {
      try {
        return await o.reloader.reload("nvedge reload");
      } catch (e) {
        throw new ProtocolError("bad-request", (e as Error).message);
      }
    },
    "counters.clear": async () => {
      const c = await raw();
      if (c === undefined) throw new ProtocolError("bad-request", "this NVE runs without a data plane that keeps counters");
      base = Object.assign(structuredClone(c) as object, { clearedAt: Date.now() });
      return { clearedAt: (base as { clearedAt: number }).clearedAt };
    },
    "show.summary": async () => {
      const cfg = o.reloader.config;
      const ports = core.ports() as { port: string; hypervisors: { hv: string; state: string; vnics: number }[]; vaps: unknown[] }[];
      const hvs = ports.flatMap((p) => p.hypervisors);
      const c = await raw().catch(() => undefined);
      const n = c === undefined ? undefined : normCounters(c).counters;
      return {
        nve: cfg.nve, version: o.version, bootId: core.settings.bootId, uptimeSeconds: Math.round((Date.now() - o.started) / 1000),
        io: o.io, underlay: { port: cfg.underlay.port, ip: cfg.underlay.ip, mac: cfg.underlay.mac },
        broker: { url: o.broker ?? cfg.broker ?? "embedded", connected: o.mqttUp() },
        ports: ports.map((p) => ({ port: p.port, hypervisors: p.hypervisors.length, vaps: p.vaps.length })),
        hypervisors: { configured: hvs.length, online: hvs.filter((h) => h.state === "online").length },
        vns: core.catalog.all().length, vnics: core.model.vnics.size, bindings: core.model.macOwner.size,
        remotes: cfg.remotes.length,
        frames: n ? { rx: n.frames.rx, forwarded: n.frames.forwarded, dropped: n.frames.dropped } : undefined,
        dropsLastMinute: await drops.lastMinute(),
        logLevel: o.logger.level,
      };
    },
    "show.remotes": () => {
      const cfg = o.reloader.config;
      const rows = new Map<string, { nve: string; ip: string; vns: Set<number>; macs: number; source: string }>();
      for (const r of cfg.remotes) {
        const e = rows.get(r.nve) ?? { nve: r.nve, ip: r.ip, vns: new Set<number>(), macs: 0, source: "config" };
        for (const v of r.vns) { try { e.vns.add(core.catalog.resolve(v).id); } catch { /* a VN the file no longer has */ } }
        e.macs += r.addrs.length;
        rows.set(r.nve, e);
      }
      for (const b of core.ima?.remoteBindings?.() ?? []) {
        const e = rows.get(b.nve) ?? { nve: b.nve, ip: b.ip, vns: new Set<number>(), macs: 0, source: "ima" };
        e.vns.add(b.vn);
        e.macs++;
        rows.set(b.nve, e);
      }
      return [...rows.values()].sort((a, b) => a.nve.localeCompare(b.nve)).map((e) => ({ ...e, vns: [...e.vns].sort((a, b) => a - b) }));
    },
    // PROTOCOL.md §5 acl: the rules in order with the frames each denied (since `counters clear`)
    "show.acl": async () => {
      const c = await counters().catch(() => undefined);
      const hits = c === undefined ? {} : ((normCounters(c).counters as unknown as { acl?: Record<string, { default: number; rules: Record<string, number> }> }).acl ?? {});
      return core.catalog.all().filter((v) => v.profile.acl?.length || v.profile.aclDefault === "deny").map((v) => {
        const h = hits[String(v.id)];
        return { vn: v.id, alias: v.alias, default: v.profile.aclDefault ?? "allow", defaultDenied: h?.default ?? 0,
          rules: (v.profile.acl ?? []).map((rule, i) => ({ index: i, rule, denied: h?.rules[String(i)] ?? 0 })) };
      });
    },
    "show.hypervisors": () => {
      const ports = core.ports() as { port: string; hypervisors: { hv: string; state: string; vnics: number; holdUntil?: number }[] }[];
      return ports.flatMap((p) => p.hypervisors.map((h) => ({ hv: h.hv, port: p.port, state: h.state, vnics: h.vnics, ...(h.holdUntil ? { holdUntil: h.holdUntil } : {}) })))
        .sort((a, b) => a.hv.localeCompare(b.hv));
    },
    capture: async (m) => {
      if (!o.tap) throw new ProtocolError("bad-request", "this NVE has no packet I/O (--io none): there are no live frames to capture; use nvedge trace --config/--frame, or run with --io afpacket");
      const kind = m.kind;
      if (kind !== "trace" && kind !== "drops") throw new ProtocolError("bad-request", `"kind" must be "trace" or "drops"`, "kind");
      const count = m.count ?? 10;
      if (!Number.isInteger(count) || (count as number) < 1 || (count as number) > 100_000) throw new ProtocolError("bad-request", `"count" must be an integer 1..100000`, "count");
      const timeoutMs = m.timeoutMs ?? 10_000;
      if (!Number.isInteger(timeoutMs) || (timeoutMs as number) < 1 || (timeoutMs as number) > 3_600_000) throw new ProtocolError("bad-request", `"timeoutMs" must be an integer 1..3600000`, "timeoutMs");
      const match = (m.match ?? {}) as CaptureRequest["match"];
      if (typeof match !== "object" || match === null) throw new ProtocolError("bad-request", `"match" must be an object`, "match");
      if (m.reason !== undefined && typeof m.reason !== "string") throw new ProtocolError("bad-request", `"reason" must be a string`, "reason");
      let frames;
      try {
        frames = await o.tap.capture({ kind, count: count as number, timeoutMs: timeoutMs as number, match, reason: m.reason as string | undefined });
      } catch (e) {
        throw new ProtocolError("bad-request", (e as Error).message);
      }
      const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
      return frames.map(({ outputs, ...f }): CapturedFrame => ({ ...f, frame: hex(f.frame), ...(outputs ? { outputs: outputs.map((x) => ({ port: x.port, frame: hex(x.frame) })) } : {}) }));
    },
  };
  return { commands, counters, close: () => drops.close() };
}
