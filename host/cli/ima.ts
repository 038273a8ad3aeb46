// `nvedge ima run [--config FILE] [--broker URL] [--store DIR]` (INTERFACES.md):
// the mapping authority of PROTOCOL.md §6 until SIGINT/SIGTERM.
import { ConfigError } from "../config/load.js";
import { loadImaConfig } from "../ima/config.js";
import { ImaDbError } from "../ima/db.js";
import { ImaService } from "../ima/service.js";
import { ProtocolError } from "../protocol/errors.js";
import { parseOpts, UsageError } from "./args.js";

const HELP = `usage: nvedge ima run [--config FILE] [--broker URL] [--store DIR] [--password PW]

Runs the mapping authority (IMA, PROTOCOL.md §6): the VN catalog, flood lists
and MAC bindings between NVEs, published retained under nvo3/v1/ima/.

  --config FILE   JSON or YAML: ima (identity, default "ima"), broker, auth
                  (password or tls), operators, nves ([{id, ip}]: the NVEs
                  served, each with its one underlay IP), vns (seeded into a new store),
                  duplicate {moves, windowMs} (RFC 7432 §15, default 5 in 180000),
                  nveHoldMs (withdraw an offline NVE's bindings after it; 0 = never)
  --broker URL    overrides the file's broker (default mqtt://127.0.0.1:1883)
  --store DIR     LMDB directory (default ./nvedge-ima-data)
  --password PW   the identity's broker password (also $NVEDGE_MQTT_PASSWORD or $NVEDGE_PASSWORD)`;

export async function imaCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "--help" || sub === "-h") {
    console.log(HELP);
    return 0;
  }
  if (sub !== "run") throw new UsageError(`unknown subcommand ${JSON.stringify(sub ?? "")}\n${HELP}`);
  const p = parseOpts(rest, { config: { type: "string" }, broker: { type: "string" }, store: { type: "string" }, password: { type: "string" } }, HELP);
  if (!p) return 0;
  const o = p.values;
  const cfg = loadImaConfig(o.config);
  const url = o.broker ?? cfg.broker ?? "mqtt://127.0.0.1:1883";
  if (!/^(mqtts?|wss?|tcp):\/\//.test(url)) throw new UsageError(`--broker ${JSON.stringify(url)}: not an mqtt://, mqtts://, ws://, wss:// or tcp:// URL`);
  const log = (l: string) => console.error(`${new Date().toISOString()} ${l}`);
  let ima: ImaService;
  try {
    ima = await ImaService.start({
      settings: { ima: cfg.ima, operators: cfg.operators, nves: cfg.nves, dupMoves: cfg.duplicate.moves, dupWindowMs: cfg.duplicate.windowMs, maxPayload: cfg.limits.maxPayload },
      broker: { url, username: cfg.auth?.username ?? cfg.ima, password: o.password ?? cfg.auth?.password ?? process.env.NVEDGE_MQTT_PASSWORD ?? process.env.NVEDGE_PASSWORD, tls: cfg.auth?.tls },
      store: o.store ?? "./nvedge-ima-data",
      seed: cfg.vns,
      nveHoldMs: cfg.nveHoldMs,
      log,
    });
  } catch (e) {
    if (e instanceof ProtocolError) throw new ConfigError(o.config ?? "(defaults)", "", e.message);
    if (e instanceof ImaDbError) throw new UsageError(`--store: ${e.message}`);
    throw new Error(`cannot start the IMA at ${url}: ${(e as Error).message}`);
  }
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  log("ima: stopping");
  await ima.stop();
  return 0;
}
