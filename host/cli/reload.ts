// Reload of a running NVE (issue 13): SIGHUP or `nvedge reload` (the admin
// socket's `reload`). Re-reads the configuration file and applies it as a
// diff, as FRR's `reload` and Mosquitto's SIGHUP do:
//   - the password file and the TLS files of the embedded broker, and the
//     NVE's own client certificate (auth.tls) for its next connection;
//   - the log level (`log.level` in the file, unless --log-level was given);
//   - timers and limits;
//   - the static state: VNs, remotes (flood lists, MACs, IPs), static VNICs
//     and ports' hypervisors. Only what changed is programmed, so traffic of
//     what did not change is not touched.
// A file that fails validation (schema, cross-references, `config check`'s
// rules) or asks for what only a restart can do (another NVE id, underlay,
// broker, auth files, ports added or removed, IMA) is refused: the running
// configuration stays, and the error is logged and returned.
//
// applyConfig() is the one function that takes a running NVE from one
// configuration to the next; Reloader adds the file, the broker and the log.
import { loadConfig, ConfigError } from "../config/load.js";
import type { NveConfig, VnConfig } from "../config/types.js";
import { checkConfig } from "../config/check.js";
import type { DpOp } from "../dataplane/ops.js";
import { VnCatalog } from "../control/catalog.js";
import { staticOps } from "../control/static.js";
import type { NveCore } from "../control/core.js";
import { isLevel, type Logger } from "../log/logger.js";
import type { Notifier } from "../service/systemd.js";
import type { NveMetrics } from "../metrics/metrics.js";
import { readClientTls, type TlsClientLike } from "../protocol/mqtt.js";

export class ReloadError extends Error {}

const keyOf = (op: DpOp): string => {
  switch (op.op) {
    case "vn": return `vn|${op.vn}`;
    case "flood.join": return `flood|${op.vn}|${op.nve}`;
    case "mac.remote": return `mac|${op.vn}|${op.mac}`;
    case "ip": return `ip|${op.vn}|${op.ip}`;
    case "port": return `port|${op.port}`;
    case "underlay": return "underlay";
    case "l3domain": return `l3domain|${op.id}`;
    default: return `${op.op}|${JSON.stringify(op)}`;
  }
};

/** The ops that take the data plane from `before`'s static state to `after`'s: removals first (innermost first), then additions and changes. */
export function staticDiff(before: DpOp[], after: DpOp[]): DpOp[] {
  const a = new Map(before.map((o) => [keyOf(o), o]));
  const b = new Map(after.map((o) => [keyOf(o), o]));
  const del: DpOp[][] = [[], [], [], [], []];
  for (const [k, o] of a) {
    if (b.has(k)) continue;
    if (o.op === "ip") del[0].push({ op: "ip.del", vn: o.vn, ip: o.ip });
    else if (o.op === "mac.remote") del[1].push({ op: "mac.del", vn: o.vn, mac: o.mac });
    else if (o.op === "flood.join") del[2].push({ op: "flood.leave", vn: o.vn, nve: o.nve });
    else if (o.op === "vn") del[3].push({ op: "vn.del", vn: o.vn });
    else if (o.op === "l3domain") del[4].push({ op: "l3domain.del", id: o.id }); // after its VNs
  }
  const order = ["l3domain", "vn", "flood.join", "mac.remote", "ip"]; // a routed VN names its domain
  const add = [...b].filter(([k, o]) => JSON.stringify(a.get(k)) !== JSON.stringify(o)).map(([, o]) => o)
    .sort((x, y) => order.indexOf(x.op) - order.indexOf(y.op));
  return [...del.flat(), ...add];
}

const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);

/** What a reload cannot change; each names the key. */
function needsRestart(cur: NveConfig, next: NveConfig): string[] {
  const out: string[] = [];
  if (cur.nve !== next.nve) out.push("nve");
  if (!same(cur.underlay, next.underlay)) out.push("underlay");
  if (cur.broker !== next.broker) out.push("broker");
  if (!same(cur.auth, next.auth)) out.push("auth (the files themselves are re-read; their names need a restart)");
  if (!same(cur.ima, next.ima)) out.push("ima");
  if (!same(cur.ports.map((p) => p.name), next.ports.map((p) => p.name))) out.push("ports (adding, removing or renaming a port)");
  const m = (c: NveConfig) => (c as { metrics?: unknown }).metrics;
  if (!same(m(cur), m(next))) out.push("metrics");
  return out;
}

export interface ApplyResult { ops: number; changes: string[] }

/**
 * Takes the running NVE from `cur` to `next` (both already validated): the
 * static state's diff programmed, the catalog changed, VN profile changes told
 * to the End Devices (vn.profile, seed §4.5), ports' hypervisors, timers and
 * limits replaced, static VNICs reconciled.
 */
export async function applyConfig(core: NveCore, cur: NveConfig, next: NveConfig): Promise<ApplyResult> {
  const restart = needsRestart(cur, next);
  if (restart.length) throw new ReloadError(`these keys changed and need a restart (nvedge run): ${restart.join(", ")}`);
  const before = new Map(cur.vns.map((v) => [v.id, v]));
  const after = new Map(next.vns.map((v) => [v.id, v]));
  const changes: string[] = [];
  const profileOnly: VnConfig[] = [];
  for (const [id, v] of before) {
    const n = after.get(id);
    if (!n) {
      const users = [...core.model.vnics.values()].filter((r) => r.vns.some((b) => b.vn === id)).length;
      if (users) throw new ReloadError(`vns: VN ${id} is removed but ${users} VNICs are connected to it; disconnect them first (nvedge vn disconnect) or keep it`);
      changes.push(`VN ${id} removed`);
    } else if (!same(v, n)) {
      if (v.vni === n.vni && v.name === n.name && v.alias === n.alias) profileOnly.push(n);
      else changes.push(`VN ${id} changed`);
    }
  }
  for (const id of after.keys()) if (!before.has(id)) changes.push(`VN ${id} added`);
  // The config's own VNs on both sides (not the IMA's, which the file does not hold).
  const mk = (c: NveConfig, skipProfiles: boolean) => {
    const cfg = structuredClone(c);
    if (skipProfiles) for (const v of cfg.vns) { const o = profileOnly.find((p) => p.id === v.id); if (o) v.profile = before.get(v.id)!.profile; }
    return staticOps(cfg, VnCatalog.fromConfig(cfg)).filter((o) => o.op !== "underlay" && o.op !== "port");
  };
  const ops = staticDiff(mk(cur, false), mk(next, true));
  for (const o of ops) {
    if (o.op === "vn" || o.op === "vn.del") continue;
    const r = o as { vn?: number; mac?: string; ip?: string; nve?: string };
    changes.push([o.op, r.vn !== undefined ? `VN ${r.vn}` : "", r.ip ?? r.mac ?? "", r.nve ? `at ${r.nve}` : ""].filter(Boolean).join(" "));
  }
  if (!same(cur.vnics, next.vnics)) changes.push("static VNICs");
  if (!same(cur.ports, next.ports)) changes.push("ports' hypervisors");
  if (!same(cur.timers, next.timers)) changes.push("timers");
  if (!same(cur.limits, next.limits)) changes.push("limits");
  // reconfigure takes the new file's limits (issue 10) itself
  await core.reconfigure(next, ops, (cat) => {
    for (const id of before.keys()) if (!after.has(id)) cat.remove(id);
    for (const [id, v] of after) {
      const b = before.get(id);
      if (!b || !same(b, v) && !profileOnly.includes(v)) {
        cat.remove(id);
        cat.add(structuredClone(v));
      }
    }
  });
  for (const v of profileOnly) {
    await core.setProfile(v.id, v.profile);
    changes.push(`VN ${v.id} profile`);
  }
  return { ops: ops.length, changes };
}

export interface ReloaderOptions {
  configFile: string;
  current: NveConfig;
  core: NveCore;
  broker?: { reload(): void | Promise<void> };
  /** The NVE's own MQTT client and its auth.tls files (re-read on reload, for its next connection). */
  client?: TlsClientLike;
  clientTls?: { cert: string; key: string; ca: string };
  logger: Logger;
  log: (l: string) => void;
  notify?: Notifier;
  metrics?: NveMetrics;
  /** --log-level was given: it wins over the file's log.level. */
  logLevelFixed?: boolean;
}

export class Reloader {
  private current: NveConfig;
  private running: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: ReloaderOptions) {
    this.current = o.current;
  }

  get config(): NveConfig {
    return this.current;
  }

  /** One reload at a time; resolves with what changed, rejects (and logs) when refused. */
  reload(why: string): Promise<{ changes: string[]; ops: number }> {
    const p = this.running.then(() => this.run(why));
    this.running = p.catch(() => undefined);
    return p;
  }

  private async run(why: string): Promise<{ changes: string[]; ops: number }> {
    const { o } = this;
    o.notify?.reloading();
    try {
      const next = loadConfig(o.configFile);
      const errs = checkConfig(next);
      if (errs.length) throw new ConfigError(o.configFile, errs[0].path, `${errs[0].message}${errs.length > 1 ? ` (and ${errs.length - 1} more: nvedge config check ${o.configFile})` : ""}`);
      const level = (next as { log?: { level?: string } }).log?.level;
      if (level !== undefined && !isLevel(level)) throw new ConfigError(o.configFile, "log.level", `"${level}" is not a level`);
      // The files first: a bad password or TLS file refuses the whole reload before anything changed.
      const useClientTls = o.client && o.clientTls ? readClientTls(o.clientTls, o.client) : undefined;
      await o.broker?.reload();
      useClientTls?.();
      const r = await applyConfig(o.core, this.current, next);
      this.current = next;
      if (level !== undefined && !o.logLevelFixed && level !== o.logger.level) {
        o.logger.setLevel(level as never);
        r.changes.push(`log level ${level}`);
      }
      o.metrics?.observeReload(true);
      o.log(`reload: ${why}: ${r.changes.length ? r.changes.join("; ") : "no change in the configuration"} (${r.ops} data plane ops)`);
      return r;
    } catch (e) {
      o.metrics?.observeReload(false);
      o.log(`reload: ${why}: refused, the running configuration is kept: ${(e as Error).message}`);
      throw e;
    } finally {
      o.notify?.ready();
    }
  }
}
