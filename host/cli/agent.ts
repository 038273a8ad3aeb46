// `nvedge agent run|attach|detach|activate|deactivate|associate|disassociate|show`
// (INTERFACES.md). `run` is the daemon (host/agent/daemon.ts); the others are
// one-shot requests to it over its control socket.
import { UsageError, parseOpts, required } from "./args.js";
import { daemonRequest } from "../agent/control-client.js";
import { isIdent } from "../protocol/topics.js";
import { brokerUrlError } from "../domain/broker-url.js";
import { isIpOrPrefix, isUnicastMac } from "../domain/addr-text.js";
import type { VnRef } from "../protocol/types.js";
import { PORT_NAME_RE, checkOvsDb } from "../agent/driver.js";
import { LEVELS, Logger, isLevel, type Level } from "../log/logger.js";
import { LOG_OPTS, logOptions } from "./log-opts.js";
import { readFileSync } from "node:fs";
import { parseEnv } from "node:util";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const defaultSocket = () => process.env.NVEDGE_AGENT_SOCKET ?? `${process.env.XDG_RUNTIME_DIR ?? "/tmp"}/nvedge-agent.sock`;

const HELP = `usage:
  nvedge agent run --broker URL --hv ID --nve ID [--state FILE] [--socket PATH] [--mqtt 4|5]
                   [--tls-cert FILE --tls-key FILE --tls-ca FILE]      (password: env NVEDGE_MQTT_PASSWORD)
                   [--ovs-db unix:PATH|tcp:IP:PORT]   (default $NVEDGE_OVS_DB; none: no bridge ports are driven)
                   [--log-level L] [--log-format json|text] [--env-file FILE]
  nvedge agent attach --vnic UUID --vn REF --mac MAC [--ip IP]... [--tag N] [--migration] [--port OVSPORT] [--json] [--socket PATH]
  nvedge agent associate|disassociate --vnic UUID --vn REF --mac MAC [--ip IP]... [--socket PATH]
  nvedge agent detach --vnic UUID [--vn REF] [--socket PATH]
  nvedge agent activate --vnic UUID [--migration] [--socket PATH]
  nvedge agent deactivate --vnic UUID --reason shutdown|migration|suspend [--socket PATH]
  nvedge agent show [--json] [--socket PATH]
REF is a VN id (number), name (uuid) or alias. --port names the VM's OVS port: the agent sets its tag to
the one the NVE returns (and again after a sync), and parks it on detach. The socket defaults to $NVEDGE_AGENT_SOCKET or $XDG_RUNTIME_DIR/nvedge-agent.sock.
--env-file FILE: the KEY=VALUE file the agent's settings come from (systemd's EnvironmentFile,
/etc/nvedge/agent-HV.env); its NVEDGE_LOG_LEVEL is the log level (else info; --log-level wins),
re-read on SIGHUP (systemctl reload), as are the --tls-* files. Its NVEDGE_BROKER, NVEDGE_NVE and NVEDGE_OVS_DB, when
present, must match what runs: a change to them needs a restart, and a SIGHUP that finds one is refused.`;

function vnRef(s: string): VnRef {
  if (/^\d+$/.test(s)) {
    const id = Number(s);
    if (id < 1 || id > 16777215) throw new UsageError(`--vn ${s}: a VN id is 1..16777215`);
    return { id };
  }
  if (UUID_RE.test(s)) return { name: s };
  if (s.length < 1 || s.length > 64) throw new UsageError(`--vn "${s}": an alias is 1..64 characters`);
  return { alias: s };
}

function vnicOf(v: string | undefined): string {
  const s = required(v, "--vnic", HELP);
  if (!UUID_RE.test(s)) throw new UsageError(`--vnic ${s}: not a lower-case RFC 4122 UUID`);
  return s;
}

function addrsOf(mac: string | undefined, ips: string[] | undefined, macRequired: boolean) {
  if (mac === undefined) {
    if (macRequired) throw new UsageError(`missing --mac\n${HELP}`);
    return [];
  }
  if (!isUnicastMac(mac)) throw new UsageError(`--mac ${mac}: not a unicast, non-zero MAC (xx:xx:xx:xx:xx:xx)`);
  for (const ip of ips ?? []) if (!isIpOrPrefix(ip)) throw new UsageError(`--ip ${ip}: not an IPv4/IPv6 address or prefix`);
  return [{ mac, ...(ips?.length ? { ips } : {}) }];
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (c ?? "").padEnd(w[i])).join("  ").trimEnd()).join("\n");
}

const spec = {
  broker: { type: "string" }, hv: { type: "string" }, nve: { type: "string" }, state: { type: "string" }, socket: { type: "string" },
  mqtt: { type: "string" }, "tls-cert": { type: "string" }, "tls-key": { type: "string" }, "tls-ca": { type: "string" },
  vnic: { type: "string" }, vn: { type: "string" }, mac: { type: "string" }, ip: { type: "string", multiple: true },
  tag: { type: "string" }, migration: { type: "boolean" }, reason: { type: "string" }, json: { type: "boolean" },
  "ovs-db": { type: "string" }, port: { type: "string" }, "env-file": { type: "string" }, ...LOG_OPTS,
} as const;

/** The agent's KEY=VALUE settings file (--env-file; systemd's EnvironmentFile syntax, read by node:util parseEnv). */
function readEnvFile(file: string): Record<string, string | undefined> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`--env-file ${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const env = parseEnv(text);
  const level = env.NVEDGE_LOG_LEVEL;
  if (level !== undefined && !isLevel(level)) throw new UsageError(`--env-file ${file}: NVEDGE_LOG_LEVEL=${level}: expected one of ${LEVELS.join(", ")}`);
  return env;
}

export async function agentCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === "--help" || sub === "-h") {
    console.log(HELP);
    return sub ? 0 : 2;
  }
  const p = parseOpts(rest, spec, HELP);
  if (!p) return 0;
  const v = p.values;
  const socket = v.socket ?? defaultSocket();
  const ask = (msg: Record<string, unknown>) => daemonRequest(socket, msg);
  switch (sub) {
    case "run": {
      const url = required(v.broker, "--broker", HELP);
      const badUrl = brokerUrlError(url);
      if (badUrl) throw new UsageError(badUrl);
      const hv = required(v.hv, "--hv", HELP);
      const nve = required(v.nve, "--nve", HELP);
      for (const [k, x] of [["--hv", hv], ["--nve", nve]]) if (!isIdent(x)) throw new UsageError(`${k} ${x}: must match ^[A-Za-z0-9._-]{1,64}$`);
      const pv = v.mqtt === undefined ? 4 : Number(v.mqtt);
      if (pv !== 4 && pv !== 5) throw new UsageError(`--mqtt ${v.mqtt}: 4 (3.1.1) or 5`);
      const tlsParts = [v["tls-cert"], v["tls-key"], v["tls-ca"]];
      if (tlsParts.some((x) => x !== undefined) && tlsParts.some((x) => x === undefined)) throw new UsageError("--tls-cert, --tls-key and --tls-ca go together");
      const ovsDb = v["ovs-db"] ?? (process.env.NVEDGE_OVS_DB || undefined);
      if (ovsDb !== undefined) {
        const bad = checkOvsDb(ovsDb);
        if (bad) throw new UsageError(`${v["ovs-db"] !== undefined ? "--ovs-db" : "NVEDGE_OVS_DB"}: ${bad}`);
      }
      const envFile = v["env-file"];
      // With --env-file the file is the level's source, at start and on SIGHUP alike.
      const fileLevel = () => (envFile !== undefined ? readEnvFile(envFile).NVEDGE_LOG_LEVEL ?? "info" : undefined);
      const logger = new Logger({ service: "agent", id: hv, ...logOptions(v, { level: fileLevel() }) });
      logger.start("agent run", { nve });
      const log = logger.lines();
      // loaded here, by `agent run` only: the one-shot commands (attach, show ...) talk to the daemon's socket, not to MQTT
      const { startAgentDaemon } = await import("../agent/daemon.js");
      const { readClientTls } = await import("../protocol/mqtt.js");
      const { OvsPortDriver, noPortDriver } = await import("../agent/driver.js");
      const d = await startAgentDaemon({
        hv, nve, statePath: v.state, socketPath: socket, log, driver: ovsDb !== undefined ? new OvsPortDriver(ovsDb) : noPortDriver,
        broker: { url, username: hv, password: process.env.NVEDGE_MQTT_PASSWORD, protocolVersion: pv as 4 | 5,
          tls: v["tls-cert"] ? { cert: v["tls-cert"]!, key: v["tls-key"]!, ca: v["tls-ca"]! } : undefined },
      });
      log(`running: broker ${url}, NVE ${nve}, control socket ${socket}, ${d.agent.desired.size} VNICs desired, port driver ${d.agent.driver.name}`);
      const notify = (await import("../service/systemd.js")).systemdNotifier(log);
      notify.ready(`NVE ${nve}, ${d.agent.desired.size} VNICs desired`);
      // SIGHUP (issue 13) re-reads the --tls-* files and the log level from --env-file. The rest of
      // the agent's settings are its command line and environment, fixed for
      // the life of a process, and its desired state is the state file and the
      // control socket, which it follows already: nothing else to re-read.
      const tls = v["tls-cert"] ? { cert: v["tls-cert"]!, key: v["tls-key"]!, ca: v["tls-ca"]! } : undefined;
      process.on("SIGHUP", () => {
        // The --tls-* files (same names: a renewal or a CA rotation), presented at the next connection.
        if (tls) {
          try {
            readClientTls(tls, d.agent.client)();
            log("reload: SIGHUP: client certificate re-read (for the next connection)");
          } catch (e) {
            log(`reload: SIGHUP: refused, the running certificate is kept: ${(e as Error).message.replace(/^auth\.tls/, "--tls")}`);
            return;
          }
        }
        if (envFile === undefined) return log("reload: SIGHUP: nothing to re-read: the log level comes from --log-level or $NVEDGE_LOG_LEVEL, fixed for this process (give --env-file FILE to re-read it)");
        try {
          const env = readEnvFile(envFile);
          const running: Record<string, string | undefined> = { NVEDGE_BROKER: url, NVEDGE_NVE: nve, NVEDGE_OVS_DB: ovsDb };
          const restart = Object.keys(running).filter((k) => env[k] !== undefined && env[k] !== running[k]);
          if (restart.length) throw new Error(`${envFile}: ${restart.join(", ")} changed: a restart applies ${restart.length > 1 ? "them" : "it"} (systemctl restart)`);
          const level = (env.NVEDGE_LOG_LEVEL ?? "info") as Level;
          if (v["log-level"] !== undefined) log(`reload: SIGHUP: log level ${level} from ${envFile} not applied: --log-level ${v["log-level"]} was given`);
          else if (level === logger.level) log(`reload: SIGHUP: no change (log level ${level})`);
          else logger.switchLevel(level, `reload: SIGHUP: log level ${logger.level} → ${level} (${envFile})`, "reload");
        } catch (e) {
          log(`reload: SIGHUP: refused, the running settings are kept: ${(e as Error).message}`);
        }
      });
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
      });
      notify.stopping();
      await d.close();
      notify.close();
      logger.close();
      return 0;
    }
    case "attach": {
      const r = await ask({ cmd: "attach", vnic: vnicOf(v.vnic), vn: vnRef(required(v.vn, "--vn", HELP)), addrs: addrsOf(v.mac, v.ip, true),
        ...(v.tag !== undefined ? { tag: tagOf(v.tag) } : {}), ...(v.migration ? { migration: true } : {}), ...(v.port !== undefined ? { port: portOf(v.port) } : {}) }) as Record<string, any>;
      console.log(v.json ? JSON.stringify(r) : `attached: VN ${r.vn.alias ?? r.vn.id} tag ${r.tag} (vni ${r.vni}, mtu ${r.mtu}, ${r.profile.encap})${v.port !== undefined ? ` on port ${v.port}` : ""}`);
      return 0;
    }
    case "associate":
    case "disassociate":
      await ask({ cmd: sub, vnic: vnicOf(v.vnic), vn: vnRef(required(v.vn, "--vn", HELP)), addrs: addrsOf(v.mac, v.ip, true) });
      console.log(`${sub}d`);
      return 0;
    case "detach":
      await ask({ cmd: "detach", vnic: vnicOf(v.vnic), ...(v.vn ? { vn: vnRef(v.vn) } : {}) });
      console.log("detached");
      return 0;
    case "activate":
      await ask({ cmd: "activate", vnic: vnicOf(v.vnic), ...(v.migration ? { migration: true } : {}) });
      console.log("activated");
      return 0;
    case "deactivate": {
      const reason = required(v.reason, "--reason", HELP);
      if (!["shutdown", "migration", "suspend"].includes(reason)) throw new UsageError(`--reason ${reason}: shutdown, migration or suspend`);
      await ask({ cmd: "deactivate", vnic: vnicOf(v.vnic), reason });
      console.log("deactivated");
      return 0;
    }
    case "show": {
      const r = await ask({ cmd: "show" }) as Record<string, any>;
      if (v.json) {
        console.log(JSON.stringify(r, null, 1));
        return 0;
      }
      console.log(`agent ${r.hv} → NVE ${r.nve}: ${r.connected ? "connected" : "disconnected"}, NVE bootId ${r.bootId ?? "-"}, port ${r.nveView?.port ?? "-"}`);
      const rows = [["VNIC", "STATE", "VN", "TAG", "MAC", "IPS"]];
      for (const d of (r.nveView?.vnics ?? []) as any[])
        for (const b of d.vns) for (const a of b.addrs.length ? b.addrs : [{ mac: "-", ips: [] }])
          rows.push([d.vnic, d.state + (d.holdUntil ? " (held)" : ""), String(b.vn.alias ?? b.vn.id), String(b.tag ?? "-"), a.mac, a.ips.join(",")]);
      console.log(table(rows));
      if (r.nveView?.error) console.log(`(NVE view unavailable: ${r.nveView.error})`);
      return 0;
    }
    default:
      throw new UsageError(`unknown agent command "${sub}"\n${HELP}`);
  }
}

function portOf(s: string): string {
  if (!PORT_NAME_RE.test(s)) throw new UsageError(`--port ${JSON.stringify(s)}: not a valid OVS port name`);
  return s;
}

function tagOf(s: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n < 1 || n > 4094) throw new UsageError(`--tag ${s}: an 802.1Q VID 1..4094`);
  return n;
}
