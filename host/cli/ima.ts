// `nvedge ima run [--config FILE] [--broker URL] [--store DIR]` (INTERFACES.md):
// the mapping authority of PROTOCOL.md §6 until SIGINT/SIGTERM.
import { ConfigError } from "../config/load.js";
import { loadImaConfig, type ImaConfig } from "../ima/config.js";
import { ImaDbError } from "../ima/db.js";
import { ImaService } from "../ima/service.js";
import { ProtocolError } from "../protocol/errors.js";
import { parseOpts, readPasswordFile, UsageError } from "./args.js";
import { Logger, isLevel } from "../log/logger.js";
import { LOG_HELP, LOG_OPTS, logOptions } from "./log-opts.js";
import { defaultImaConfig, defaultImaStore } from "./paths.js";
import { existsSync } from "node:fs";
import { parseListen } from "../metrics/listen.js";
import { readClientTls, type TlsClientLike } from "../protocol/mqtt.js";
import { brokerUrlError } from "../domain/broker-url.js";

const HELP = `usage: nvedge ima run [--config FILE] [--broker URL] [--store DIR] [--password-file FILE]
                      [--metrics HOST:PORT] [--log-level L] [--log-format json|text]

Runs the mapping authority (IMA, PROTOCOL.md §6): the VN catalog, flood lists
and MAC bindings between NVEs, published retained under nvo3/v1/ima/.

  --config FILE   (default /etc/nvedge/ima.json when it exists) JSON or YAML: ima (identity, default "ima"), broker, auth
                  (password or tls), operators, nves ([{id, ip}]: the NVEs
                  served, each with its one underlay IP), vns (seeded into a new store),
                  duplicate {moves, windowMs} (RFC 7432 §15, default 5 in 180000),
                  nveHoldMs (withdraw an offline NVE's bindings after it; 0 = never),
                  log {level, format},
                  ha {instance, priority, holdMs} (issue 15: this process is one of
                  several instances of the IMA; the broker elects the active one,
                  a standby takes over within holdMs, default 10000, of its loss)
  SIGHUP          re-reads FILE: log.level, operators, nves (an NVE removed or moved
                  to another IP has its state withdrawn), duplicate, and the auth.tls
                  files (for the next connection); a change to
                  ima, broker, auth, limits, nveHoldMs, ha or log.format is refused (restart);
                  with ha, for this instance's service now and any later take-over
  --broker URL    overrides the file's broker (default mqtt://127.0.0.1:1883)
  --store DIR     LMDB directory (default /var/lib/nvedge/ima)
  --password-file FILE  the identity's broker password, the file's first line
                  (else $NVEDGE_MQTT_PASSWORD or $NVEDGE_PASSWORD; never on the command line)
  --metrics HOST:PORT  Prometheus /metrics (catalog, flood lists, bindings, frozen MACs, moves), /healthz, /readyz;
                  with ha: the active's figures, nvedge_ima_ha_active, ready only while active
${LOG_HELP}`;

export async function imaCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "--help" || sub === "-h") {
    console.log(HELP);
    return 0;
  }
  if (sub !== "run") throw new UsageError(`unknown subcommand ${JSON.stringify(sub ?? "")}\n${HELP}`);
  if (rest.includes("--password")) throw new UsageError(`--password is gone: a password on the command line is visible to every user (ps); use --password-file FILE or $NVEDGE_MQTT_PASSWORD\n${HELP}`);
  const p = parseOpts(rest, { config: { type: "string" }, broker: { type: "string" }, store: { type: "string" }, "password-file": { type: "string" }, metrics: { type: "string" }, ...LOG_OPTS }, HELP);
  if (!p) return 0;
  const o = p.values;
  logOptions(o);
  if (o.metrics !== undefined && !parseListen(o.metrics)) throw new UsageError(`--metrics ${o.metrics}: expected HOST:PORT`);
  const configFile = o.config ?? (existsSync(defaultImaConfig()) ? defaultImaConfig() : undefined);
  const cfg = loadImaConfig(configFile);
  const logger = new Logger({ service: "ima", id: cfg.ima, ...logOptions(o, cfg.log) });
  logger.start("ima run", { config: configFile ?? null });
  const url = o.broker ?? cfg.broker ?? "mqtt://127.0.0.1:1883";
  const badUrl = brokerUrlError(url);
  if (badUrl) throw new UsageError(badUrl);
  const log = logger.lines();
  const password = o["password-file"] !== undefined ? readPasswordFile(o["password-file"]) : undefined;
  let ima: ImaService;
  if (cfg.ha) return await runHa(cfg, configFile, url, password, o.store ?? defaultImaStore(), logger, log, o.metrics, o["log-level"] !== undefined);
  try {
    ima = await ImaService.start({
      settings: { ima: cfg.ima, operators: cfg.operators, nves: cfg.nves, dupMoves: cfg.duplicate.moves, dupWindowMs: cfg.duplicate.windowMs, maxPayload: cfg.limits.maxPayload },
      broker: { url, username: cfg.auth?.username ?? cfg.ima, password: password ?? cfg.auth?.password ?? process.env.NVEDGE_MQTT_PASSWORD ?? process.env.NVEDGE_PASSWORD, tls: cfg.auth?.tls },
      store: o.store ?? defaultImaStore(),
      seed: cfg.vns, seedL3: cfg.l3domains,
      nveHoldMs: cfg.nveHoldMs,
      log,
    });
  } catch (e) {
    logger.close();
    if (e instanceof ProtocolError) throw new ConfigError(configFile ?? "(defaults)", "", e.message);
    if (e instanceof ImaDbError) throw new UsageError(`--store: ${e.message}`);
    throw new Error(`cannot start the IMA at ${url}: ${(e as Error).message}`);
  }
  let metricsServer: { close(): Promise<void> } | undefined;
  if (o.metrics !== undefined) {
    const svc = ima;
    metricsServer = await serveImaMetrics(o.metrics, cfg.ima, () => svc, log).catch(async (e: Error) => {
      await svc.stop();
      throw e;
    });
  }
  return await serveUntilStopped({ configFile, cfg, target: { reconfigure: (x) => ima.reconfigure(x), tlsClients: () => [ima.client] }, logger, log,
    levelFixed: o["log-level"] !== undefined, ready: "serving", metricsServer, stop: () => ima.stop() });
}

/**
 * The IMA's life once started (one instance or one of several, `ha`): ready
 * to systemd; SIGHUP re-reads the configuration file into `target` (issue 13;
 * imaReload); SIGINT/SIGTERM stop it cleanly, metrics first.
 */
async function serveUntilStopped(o: { configFile: string | undefined; cfg: ImaConfig; target: ImaReloadTarget; logger: Logger; log: (l: string) => void;
  levelFixed: boolean; ready: string; metricsServer: { close(): Promise<void> } | undefined; stop: () => Promise<void> }): Promise<number> {
  const { log, logger } = o;
  const notify = (await import("../service/systemd.js")).systemdNotifier(log);
  notify.ready(o.ready);
  let current = o.cfg;
  process.on("SIGHUP", () => {
    try {
      current = imaReload({ file: o.configFile, current, ima: o.target, logger, log, levelFixed: o.levelFixed, why: "SIGHUP" });
    } catch (e) {
      log(`reload: SIGHUP: refused, the running configuration is kept: ${(e as Error).message}`);
    }
  });
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  log("ima: stopping");
  notify.stopping();
  await o.metricsServer?.close();
  await o.stop();
  notify.close();
  logger.close();
  return 0;
}

const same = (x: unknown, y: unknown) => JSON.stringify(x) === JSON.stringify(y);

/**
 * `--metrics`: the IMA's figures (catalog, flood lists, bindings, frozen
 * MACs, moves) from the service `svc()` gives, /healthz and /readyz. With
 * `ha` (issue 15) `svc()` is the instance's service while it is the active
 * one: a standby reports `nvedge_ima_ha_active` 0, no figures of its own
 * (its store follows the active's), and is not ready (it serves nothing).
 */
async function serveImaMetrics(listen: string, id: string, svc: () => ImaService | undefined, log: (l: string) => void,
  ha?: { active: () => boolean }): Promise<{ close(): Promise<void> }> {
  const { imaMetrics, serveMetrics } = await import("../metrics/metrics.js");
  const registry = imaMetrics(() => {
    const s = svc();
    if (!s) return { vns: 0, floodListEntries: 0, bindings: 0, frozen: 0, moves: 0 };
    const c = s.core;
    let bindings = 0, frozen = 0;
    for (const b of c.binds.values()) {
      if (b.withdrawn) continue;
      bindings++;
      if (b.frozen) frozen++;
    }
    return { vns: c.vns.size, floodListEntries: c.vteps.size, bindings, frozen, moves: s.stats.moves };
  }, () => svc()?.client.connected ?? false, { ima: id });
  if (ha) {
    const { Gauge } = await import("prom-client");
    new Gauge({ name: "nvedge_ima_ha_active", help: "1 while this instance is the active IMA (ha, issue 15), 0 standing by", registers: [registry],
      collect() { this.set(ha.active() ? 1 : 0); } });
  }
  const m = await serveMetrics({ listen, registry, healthy: () => undefined,
    ready: () => ha && !ha.active() ? "standing by (another instance is the active IMA)" : svc()?.client.connected ? undefined : "the MQTT session is down" })
    .catch((e: Error) => { throw new Error(`metrics on ${listen}: ${e.message}`); });
  log(`metrics: serving ${m.url}/metrics, /healthz, /readyz`);
  return m;
}

/** What a reload changes: an ImaService, or an `ha` instance (ImaHaNode: its service now and later). */
export interface ImaReloadTarget {
  reconfigure(s: Parameters<ImaService["reconfigure"]>[0]): string[];
  /** The MQTT clients the re-read TLS files go to, for their next connection. */
  tlsClients(): TlsClientLike[];
}

/**
 * The IMA's reload (SIGHUP, issue 13): the file is read and validated again,
 * then what a running IMA can take is applied, all of it or nothing:
 * - `log.level` (unless --log-level was given);
 * - `operators`: who may change the catalog, from the next request on;
 * - `nves`: the NVEs served and their IPs, from the next request on; an NVE
 *   no longer listed, or listed with another IP, leaves its flood lists and
 *   its bindings are withdrawn, as at start (PROTOCOL.md §6, seed §3.1);
 * - `duplicate` (RFC 7432 §15 moves and window);
 * - the files of `auth.tls` (same names), presented at the next connection.
 * What only a restart can change is refused, naming the key: `ima` (the
 * identity is the MQTT session and client id), `broker` and `auth` (the
 * connection), `limits` (the broker and the NVEs size messages by it),
 * `nveHoldMs` (it decides the subscription to NVE status), `log.format` (the
 * output stream). `vns` is only ever seeded into a new store: a change to it
 * is ignored and said so (the catalog changes through `nvedge vn`).
 * The broker's own ACL (Mosquitto's acl_file, or `nvedge run`'s `ima`) is
 * not the IMA's: a new NVE or operator must also be allowed there.
 */
export function imaReload(o: { file: string | undefined; current: ImaConfig; ima: ImaReloadTarget; logger: Logger; log: (l: string) => void; levelFixed: boolean; why: string }): ImaConfig {
  if (o.file === undefined) {
    o.log(`reload: ${o.why}: no configuration file (the defaults are in use); nothing to re-read`);
    return o.current;
  }
  const cur = o.current;
  const next = loadImaConfig(o.file);
  const restart = (["ima", "broker", "auth", "limits", "nveHoldMs", "ha"] as const).filter((k) => !same(cur[k], next[k]));
  if (!same(cur.log?.format, next.log?.format)) restart.push("log.format" as never);
  if (restart.length) throw new ConfigError(o.file, restart[0], `these keys changed and need a restart (nvedge ima run): ${restart.join(", ")}`);
  // The client certificate (the same file names: a renewal or a CA rotation), read and checked before anything changes.
  const tls = next.auth?.tls;
  const setTls = tls ? o.ima.tlsClients().map((c) => readClientTls(tls, c)) : undefined;
  const useTls = setTls ? () => { for (const f of setTls) f(); } : undefined;
  const changes: string[] = [];
  if (useTls) changes.push("client certificate re-read (for the next connection)");
  if (!same(cur.operators, next.operators)) changes.push(`operators ${next.operators.join(",") || "(none)"}`);
  const ips = (c: ImaConfig) => new Map(c.nves.map((n) => [n.id, n.ip]));
  const [was, now] = [ips(cur), ips(next)];
  for (const [id, ip] of now) if (!was.has(id)) changes.push(`NVE ${id} (${ip}) added`); else if (was.get(id) !== ip) changes.push(`NVE ${id} now at ${ip}`);
  for (const id of was.keys()) if (!now.has(id)) changes.push(`NVE ${id} removed`);
  if (!same(cur.duplicate, next.duplicate)) changes.push(`duplicate detection ${next.duplicate.moves} moves in ${next.duplicate.windowMs} ms`);
  if (!same(cur.vns, next.vns)) changes.push("vns ignored (seeded into a new store only; change the catalog with nvedge vn)");
  if (!same(cur.l3domains, next.l3domains)) changes.push("l3domains ignored (seeded into a new store only; change them with l3domain.create / l3domain.delete)");
  useTls?.();
  const stray = o.ima.reconfigure({ operators: next.operators, nves: next.nves, dupMoves: next.duplicate.moves, dupWindowMs: next.duplicate.windowMs });
  if (stray.length) changes.push(`withdrawing the state of ${stray.join(", ")}`);
  o.log(`reload: ${o.why}: ${changes.length ? changes.join("; ") : "no change in the configuration"}`);
  // What a restart would take: the file's level, else $NVEDGE_LOG_LEVEL, else info (logOptions).
  const level = next.log?.level ?? process.env.NVEDGE_LOG_LEVEL ?? "info";
  if (o.levelFixed) {
    if (next.log?.level !== undefined && next.log.level !== o.logger.level) o.log(`reload: ${o.why}: log.level ${next.log.level} not applied: --log-level ${o.logger.level} was given`);
  } else if (isLevel(level) && level !== o.logger.level) {
    o.logger.switchLevel(level, `reload: ${o.why}: log level ${o.logger.level} → ${level}`, "reload");
  }
  return next;
}

/**
 * `nvedge ima run` with `ha` (issue 15): one instance of the IMA, standing by
 * or active as the broker's election decides (host/ima/ha.ts), until
 * SIGINT/SIGTERM; a clean stop hands the lease to a standby at once.
 */
async function runHa(cfg: ImaConfig, configFile: string | undefined, url: string, password: string | undefined, store: string, logger: Logger, log: (l: string) => void,
  metrics: string | undefined, levelFixed: boolean): Promise<number> {
  const { ImaHaNode } = await import("../ima/ha.js");
  let node: import("../ima/ha.js").ImaHaNode;
  try {
    node = await ImaHaNode.start({
      settings: { ima: cfg.ima, operators: cfg.operators, nves: cfg.nves, dupMoves: cfg.duplicate.moves, dupWindowMs: cfg.duplicate.windowMs, maxPayload: cfg.limits.maxPayload },
      broker: { url, username: cfg.auth?.username ?? cfg.ima, password: password ?? cfg.auth?.password ?? process.env.NVEDGE_MQTT_PASSWORD ?? process.env.NVEDGE_PASSWORD, tls: cfg.auth?.tls },
      store, seed: cfg.vns, nveHoldMs: cfg.nveHoldMs, log,
      ha: { instance: cfg.ha!.instance, priority: cfg.ha!.priority, holdMs: cfg.ha!.holdMs },
    });
  } catch (e) {
    logger.close();
    if (e instanceof ImaDbError) throw new UsageError(`--store: ${e.message}`);
    throw new Error(`cannot start the IMA instance ${cfg.ha!.instance} at ${url}: ${(e as Error).message}`);
  }
  // --metrics (issue 15): the active's figures while this instance is the active one (serveImaMetrics)
  let metricsServer: { close(): Promise<void> } | undefined;
  if (metrics !== undefined) {
    metricsServer = await serveImaMetrics(metrics, cfg.ima, () => node.service, log, { active: () => node.role === "active" && !!node.service })
      .catch(async (e: Error) => { await node.stop(); throw e; });
  }
  // SIGHUP re-reads the file as a single IMA does (imaReload); the settings go to this
  // instance's service now if it is the active one, and to any later take-over.
  return await serveUntilStopped({ configFile, cfg, target: node, logger, log, levelFixed, ready: `instance ${cfg.ha!.instance}: ${node.role}`,
    metricsServer, stop: () => node.stop() });
}
