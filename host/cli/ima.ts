// `nvedge ima run [--config FILE] [--broker URL] [--store DIR]` (INTERFACES.md):
// the mapping authority of PROTOCOL.md §6 until SIGINT/SIGTERM.
import { ConfigError } from "../config/load.js";
import { loadImaConfig } from "../ima/config.js";
import { ImaDbError } from "../ima/db.js";
import { ImaService } from "../ima/service.js";
import { ProtocolError } from "../protocol/errors.js";
import { parseOpts, readPasswordFile, UsageError } from "./args.js";
import { LOG_HELP, LOG_OPTS, Logger, logOptions } from "../log/logger.js";
import { defaultImaConfig, defaultImaStore } from "./paths.js";
import { existsSync } from "node:fs";
import { parseListen } from "../metrics/metrics.js";

const HELP = `usage: nvedge ima run [--config FILE] [--broker URL] [--store DIR] [--password-file FILE]
                      [--metrics HOST:PORT] [--log-level L] [--log-format json|text]

Runs the mapping authority (IMA, PROTOCOL.md §6): the VN catalog, flood lists
and MAC bindings between NVEs, published retained under nvo3/v1/ima/.

  --config FILE   (default /etc/nvedge/ima.json when it exists) JSON or YAML: ima (identity, default "ima"), broker, auth
                  (password or tls), operators, nves ([{id, ip}]: the NVEs
                  served, each with its one underlay IP), vns (seeded into a new store),
                  duplicate {moves, windowMs} (RFC 7432 §15, default 5 in 180000),
                  nveHoldMs (withdraw an offline NVE's bindings after it; 0 = never)
  --broker URL    overrides the file's broker (default mqtt://127.0.0.1:1883)
  --store DIR     LMDB directory (default /var/lib/nvedge/ima)
  --password-file FILE  the identity's broker password, the file's first line
                  (else $NVEDGE_MQTT_PASSWORD or $NVEDGE_PASSWORD; never on the command line)
  --metrics HOST:PORT  Prometheus /metrics (catalog, flood lists, bindings, frozen MACs, moves), /healthz, /readyz
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
  const logger = new Logger({ service: "ima", id: cfg.ima, ...logOptions(o) });
  logger.start("ima run", { config: configFile ?? null });
  const url = o.broker ?? cfg.broker ?? "mqtt://127.0.0.1:1883";
  if (!/^(mqtts?|wss?|tcp):\/\//.test(url)) throw new UsageError(`--broker ${JSON.stringify(url)}: not an mqtt://, mqtts://, ws://, wss:// or tcp:// URL`);
  const log = logger.lines();
  const password = o["password-file"] !== undefined ? readPasswordFile(o["password-file"]) : undefined;
  let ima: ImaService;
  try {
    ima = await ImaService.start({
      settings: { ima: cfg.ima, operators: cfg.operators, nves: cfg.nves, dupMoves: cfg.duplicate.moves, dupWindowMs: cfg.duplicate.windowMs, maxPayload: cfg.limits.maxPayload },
      broker: { url, username: cfg.auth?.username ?? cfg.ima, password: password ?? cfg.auth?.password ?? process.env.NVEDGE_MQTT_PASSWORD ?? process.env.NVEDGE_PASSWORD, tls: cfg.auth?.tls },
      store: o.store ?? defaultImaStore(),
      seed: cfg.vns,
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
    const { imaMetrics, serveMetrics } = await import("../metrics/metrics.js");
    const c = ima.core;
    const registry = imaMetrics(() => {
      const now = Date.now();
      let bindings = 0, frozen = 0, recentMoves = 0;
      for (const b of c.binds.values()) {
        if (b.withdrawn) continue;
        bindings++;
        if (b.frozen) frozen++;
        recentMoves += (b.moves ?? []).filter((t: number) => now - t < cfg.duplicate.windowMs).length;
      }
      return { vns: c.vns.size, floodListEntries: c.vteps.size, bindings, frozen, recentMoves };
    }, () => ima.client.connected, { ima: cfg.ima });
    const m = await serveMetrics({ listen: o.metrics, registry, healthy: () => undefined,
      ready: () => ima.client.connected ? undefined : "the MQTT session is down" }).catch(async (e: Error) => {
      await ima.stop();
      throw new Error(`metrics on ${o.metrics}: ${e.message}`);
    });
    metricsServer = m;
    log(`metrics: serving ${m.url}/metrics, /healthz, /readyz`);
  }
  const notify = (await import("../service/systemd.js")).systemdNotifier(log);
  notify.ready("serving");
  // SIGHUP must not kill the IMA (issue 13); its configuration is read at start only.
  process.on("SIGHUP", () => log("reload: SIGHUP: the IMA reads its configuration at start only; restart it to change it"));
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  log("ima: stopping");
  notify.stopping();
  await metricsServer?.close();
  await ima.stop();
  notify.close();
  logger.close();
  return 0;
}
