// The operator's admin actions on a running NVE, from the command line
// (INTERFACES.md, issue 13); each is one request on the admin socket
// (host/control/admin.ts, host/cli/admin-extras.ts):
//   nvedge reload                       re-read the configuration (as SIGHUP)
//   nvedge log-level [LEVEL]            show or set the log level
//   nvedge vnic remove VNIC [--reason]  the NVE removes a VNIC (RFC 8394 Req-6; the owner is told)
//   nvedge drain                        every End Device is told nve.draining (PROTOCOL.md §4)
//   nvedge counters clear               `show counters` counts from now on
// (`nvedge vn disconnect` is in vn.ts, beside the other VN commands.)
import { join, resolve } from "node:path";
import { UsageError, parseOpts } from "./args.js";
import { adminRequest } from "../control/admin.js";
import { defaultAdminSocket } from "./paths.js";
import { LEVELS } from "../log/logger.js";

export const SOCKET_OPTS = { socket: { type: "string" }, store: { type: "string" } } as const;
export const SOCKET_HELP = `  --socket PATH       the NVE's admin socket (default $NVEDGE_SOCKET or /run/nvedge/nvedge.sock)
  --store DIR         or the one of the NVE run with --store DIR (DIR/nvedge.sock)`;

/** The admin socket named by --socket, --store, or the default place. */
export function socketOf(v: { socket?: string; store?: string }): string {
  if (v.socket !== undefined && v.store !== undefined) throw new UsageError("--socket and --store: give one of them");
  return v.socket ?? (v.store !== undefined ? join(resolve(v.store), "nvedge.sock") : defaultAdminSocket());
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** One admin request; an answer's error becomes a one-line runtime error (exit 1). */
export async function ask(v: { socket?: string; store?: string }, msg: Record<string, unknown>, timeoutMs?: number): Promise<any> {
  try {
    return await adminRequest(socketOf(v), msg, timeoutMs);
  } catch (e) {
    const err = e as Error & { code?: string; field?: string };
    throw new Error(err.code ? `the NVE refused: ${err.code}: ${err.message}${err.field ? ` (field ${err.field})` : ""}` : err.message);
  }
}

const RELOAD_HELP = `usage: nvedge reload [--socket PATH | --store DIR]

Makes the running NVE re-read its configuration file, as SIGHUP does: the
password and TLS files, the log level, timers and limits, and the static
state (VNs, remotes, static VNICs, ports' hypervisors) applied as a diff.
A file that fails validation is refused and the running one kept; the error
is printed (exit 1).
${SOCKET_HELP}`;

export async function reloadCommand(argv: string[]): Promise<number> {
  const p = parseOpts(argv, SOCKET_OPTS, RELOAD_HELP);
  if (!p) return 0;
  const r = await ask(p.values, { cmd: "reload" }, 60_000);
  console.log(r.changes.length ? `reloaded: ${r.changes.join("; ")}` : "reloaded: no change");
  return 0;
}

const LEVEL_HELP = `usage: nvedge log-level [LEVEL] [--socket PATH | --store DIR]

Shows the running NVE's log level, or sets it to LEVEL (${LEVELS.join(", ")}).
${SOCKET_HELP}`;

export async function logLevelCommand(argv: string[]): Promise<number> {
  const p = parseOpts(argv, SOCKET_OPTS, LEVEL_HELP, true);
  if (!p) return 0;
  if (p.positionals.length > 1) throw new UsageError(`expected at most one LEVEL, got ${p.positionals.length}\n${LEVEL_HELP}`);
  const level = p.positionals[0];
  if (level !== undefined && !(LEVELS as readonly string[]).includes(level)) throw new UsageError(`${JSON.stringify(level)}: not a level (${LEVELS.join(", ")})\n${LEVEL_HELP}`);
  const r = await ask(p.values, { cmd: "log-level", ...(level ? { level } : {}) });
  console.log(r.level);
  return 0;
}

const VNIC_HELP = `usage: nvedge vnic remove VNIC [--reason TEXT] [--socket PATH | --store DIR]

The NVE removes the VNIC (every VN it is connected to; RFC 8394 Req-6): its
bindings leave the data plane and its End Device gets vn.disconnected.
${SOCKET_HELP}`;

export async function vnicCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "--help" || sub === "-h") {
    console.log(VNIC_HELP);
    return 0;
  }
  if (!sub) throw new UsageError(`missing subcommand\n${VNIC_HELP}`);
  if (sub !== "remove") throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}\n${VNIC_HELP}`);
  const p = parseOpts(rest, { ...SOCKET_OPTS, reason: { type: "string" } }, VNIC_HELP, true);
  if (!p) return 0;
  if (p.positionals.length !== 1) throw new UsageError(`expected one VNIC (a UUID), got ${p.positionals.length}\n${VNIC_HELP}`);
  const vnic = p.positionals[0];
  if (!UUID_RE.test(vnic)) throw new UsageError(`${vnic}: not a lower-case RFC 4122 UUID`);
  await ask(p.values, { cmd: "vnic.remove", vnic, ...(p.values.reason ? { reason: p.values.reason } : {}) });
  console.log(`VNIC ${vnic} removed`);
  return 0;
}

const DRAIN_HELP = `usage: nvedge drain [--socket PATH | --store DIR]

Maintenance: every End Device of the NVE is told nve.draining (PROTOCOL.md §4),
so their agents move their VNICs elsewhere before the NVE goes down.
${SOCKET_HELP}`;

export async function drainCommand(argv: string[]): Promise<number> {
  const p = parseOpts(argv, SOCKET_OPTS, DRAIN_HELP);
  if (!p) return 0;
  const hvs = await ask(p.values, { cmd: "drain" }) as string[];
  console.log(`draining: ${hvs.length} End Devices told${hvs.length ? ` (${hvs.join(", ")})` : ""}`);
  return 0;
}

const COUNTERS_HELP = `usage: nvedge counters clear [--socket PATH | --store DIR]

\`nvedge show counters\` counts from now on. The data plane's counters, and
/metrics, stay monotonic (Prometheus computes rates from them).
${SOCKET_HELP}`;

export async function countersCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "--help" || sub === "-h") {
    console.log(COUNTERS_HELP);
    return 0;
  }
  if (!sub) throw new UsageError(`missing subcommand\n${COUNTERS_HELP}`);
  if (sub !== "clear") throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}\n${COUNTERS_HELP}`);
  const p = parseOpts(rest, SOCKET_OPTS, COUNTERS_HELP);
  if (!p) return 0;
  const r = await ask(p.values, { cmd: "counters.clear" });
  console.log(`counters cleared at ${new Date(r.clearedAt).toISOString()}`);
  return 0;
}
