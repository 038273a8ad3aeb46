// `nvedge vn create|delete|list|set-profile|frozen|unfreeze` (INTERFACES.md): operator requests
// to the IMA over MQTT (PROTOCOL.md §6), as identity --as (default "operator"),
// which must be listed in the IMA's and the broker's `operators`.
import mqtt from "mqtt";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { imaTopics } from "../protocol/ima-topics.js";
import { IDENT } from "../protocol/topics.js";
import type { VnRecord } from "../protocol/ima-topics.js";
import { parseOpts, readPasswordFile, UsageError } from "./args.js";

const COMMON = `  --broker URL      the broker (default $NVEDGE_BROKER or mqtt://127.0.0.1:1883)
  --as NAME         operator identity (default "operator")
  --password-file F its broker password, the file's first line (else $NVEDGE_MQTT_PASSWORD)
  --cert F --key F --ca F   TLS client certificate (the certificate's CN is the identity)
  --timeout MS      how long to wait for the IMA (default 10000)
  --json            machine-readable output`;

const HELP = `usage: nvedge vn <command> [options]

  nvedge vn create --alias NAME [--id N] [--vni N] [--name UUID] [--encap vxlan|geneve|nvgre] [--mtu N] [--profile JSON]
  nvedge vn delete VN
  nvedge vn list
  nvedge vn set-profile VN (--profile JSON | --encap E [--mtu N] ...)
  nvedge vn frozen [VN]        MACs frozen as duplicates (RFC 7432 §15), in one VN or all
  nvedge vn unfreeze VN MAC    lifts a MAC's freeze: it stays where it is, the next move is accepted
  nvedge vn disconnect VN --vnic UUID [--reason TEXT] [--socket PATH | --store DIR]
        (to the local NVE's admin socket, not the IMA: the NVE disconnects the VNIC
        from the VN and tells its End Device, RFC 8394 Req-6)

VN is an id, an alias or a name (uuid). Profile fields (PROTOCOL.md §5) may be
given one by one: --encap, --mtu, --service l2|l3, --port-security, --arp-suppress,
--learn explicit|glean, --dscp N, --pcp N; or whole with --profile JSON.

${COMMON}`;

const SPEC = {
  broker: { type: "string" }, as: { type: "string" }, "password-file": { type: "string" }, json: { type: "boolean" },
  cert: { type: "string" }, key: { type: "string" }, ca: { type: "string" }, timeout: { type: "string" },
  alias: { type: "string" }, id: { type: "string" }, vni: { type: "string" }, name: { type: "string" },
  profile: { type: "string" }, encap: { type: "string" }, mtu: { type: "string" }, service: { type: "string" },
  "port-security": { type: "boolean" }, "arp-suppress": { type: "boolean" }, learn: { type: "string" },
  dscp: { type: "string" }, pcp: { type: "string" },
  vnic: { type: "string" }, reason: { type: "string" }, socket: { type: "string" }, store: { type: "string" },
} as const;

type Values = Record<string, string | boolean | undefined>;

function int(v: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${flag} ${JSON.stringify(v)}: not an integer ${min}..${max}`);
  return Number(v);
}

export function vnRef(s: string): Record<string, unknown> {
  if (/^\d+$/.test(s)) return { id: int(s, "VN", 1, 16777215) };
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(s)) return { name: s };
  return { alias: s };
}

/** The profile from --profile JSON and the single-field flags (flags win). */
function profileFrom(v: Values): Record<string, unknown> | undefined {
  let p: Record<string, unknown> | undefined;
  if (v.profile !== undefined) {
    try {
      p = JSON.parse(v.profile as string);
    } catch (e) {
      throw new UsageError(`--profile: not valid JSON: ${(e as Error).message}`);
    }
    if (!p || typeof p !== "object" || Array.isArray(p)) throw new UsageError("--profile: must be a JSON object");
  }
  const set = (k: string, val: unknown) => {
    if (val === undefined) return;
    p ??= {};
    p[k] = val;
  };
  set("encap", v.encap);
  set("mtu", int(v.mtu as string | undefined, "--mtu", 68, 9000));
  set("service", v.service);
  set("portSecurity", v["port-security"]);
  set("arpSuppress", v["arp-suppress"]);
  set("learn", v.learn);
  const dscp = int(v.dscp as string | undefined, "--dscp", 0, 63), pcp = int(v.pcp as string | undefined, "--pcp", 0, 7);
  if (dscp !== undefined || pcp !== undefined) set("qos", { ...((p?.qos as object) ?? {}), ...(dscp !== undefined ? { dscp } : {}), ...(pcp !== undefined ? { pcp } : {}) });
  if (p && p.encap === undefined && v.profile === undefined) p.encap = "vxlan";
  return p;
}

/** Sends one operator request and waits for its answer. */
export async function operatorRequest(v: Values, op: string, body: Record<string, unknown>): Promise<Record<string, any>> {
  const url = (v.broker as string | undefined) ?? process.env.NVEDGE_BROKER ?? "mqtt://127.0.0.1:1883";
  const who = (v.as as string | undefined) ?? "operator";
  if (!IDENT.test(who)) throw new UsageError(`--as ${JSON.stringify(who)}: not an identity (${IDENT})`);
  const timeout = int(v.timeout as string | undefined, "--timeout", 1, 600000) ?? 10000;
  const tls = v.cert || v.key || v.ca;
  if (tls && !(v.cert && v.key && v.ca)) throw new UsageError("--cert, --key and --ca go together");
  const read = (f: string, flag: string) => {
    try {
      return readFileSync(f);
    } catch (e) {
      throw new UsageError(`${flag} ${f}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const client = await mqtt.connectAsync(url, {
    username: who, password: (v["password-file"] !== undefined ? readPasswordFile(v["password-file"] as string) : undefined) ?? process.env.NVEDGE_MQTT_PASSWORD ?? process.env.NVEDGE_PASSWORD,
    clientId: `${who}-vn-${randomBytes(4).toString("hex")}`, reconnectPeriod: 0, connectTimeout: timeout,
    ...(tls ? { ca: read(v.ca as string, "--ca"), cert: read(v.cert as string, "--cert"), key: read(v.key as string, "--key"), rejectUnauthorized: true } : {}),
  }).catch((e) => {
    throw new Error(`cannot connect to ${url} as ${who}: ${(e as Error).message}`);
  });
  try {
    const id = `vn-${randomBytes(6).toString("hex")}`;
    const granted = await client.subscribeAsync(imaTopics.rsp(who), { qos: 1 }).catch(() => [{ qos: 128 }]);
    if (granted[0]?.qos === 128) throw new Error(`the broker refused ${who} the subscription ${imaTopics.rsp(who)}: ${who} is not an operator there (--as)`);
    const answer = new Promise<Record<string, any>>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer from the IMA within ${timeout} ms (is \`nvedge ima run\` running, and is ${who} in the broker's and the IMA's operators?)`)), timeout);
      client.on("message", (topic, payload) => {
        if (topic !== imaTopics.rsp(who)) return;
        let r: Record<string, any>;
        try {
          r = JSON.parse(payload.toString("utf8"));
        } catch {
          return;
        }
        if (r.id !== id) return;
        clearTimeout(t);
        resolve(r);
      });
    });
    await client.publishAsync(imaTopics.req(who), JSON.stringify({ id, op, ...body }), { qos: 1 });
    return await answer;
  } finally {
    await client.endAsync(true);
  }
}

function table(rows: VnRecord[]): string {
  const head = ["ID", "ALIAS", "NAME", "VNI", "ENCAP", "MTU", "SERVICE"];
  const data = rows.map((v) => [String(v.id), v.alias ?? "-", v.name, String(v.vni), v.profile.encap, String(v.profile.mtu), v.profile.service ?? "l2"]);
  const w = head.map((h, i) => Math.max(h.length, ...data.map((r) => r[i].length)));
  return [head, ...data].map((r) => r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd()).join("\n");
}

function frozenTable(rows: { vn: { id: number }; mac: string; nve: string; ip: string; seq: number; moves: number }[]): string {
  if (rows.length === 0) return "no frozen MACs";
  const head = ["VN", "MAC", "NVE", "IP", "SEQ", "MOVES"];
  const data = rows.map((m) => [String(m.vn.id), m.mac, m.nve, m.ip, String(m.seq), String(m.moves)]);
  const w = head.map((h, i) => Math.max(h.length, ...data.map((r) => r[i].length)));
  return [head, ...data].map((r) => r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd()).join("\n");
}

function record(r: Record<string, any>): VnRecord {
  return { id: r.vn.id, name: r.vn.name, ...(r.vn.alias !== undefined ? { alias: r.vn.alias } : {}), vni: r.vni, profile: r.profile };
}

export async function vnCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === "--help" || sub === "-h") {
    console.log(HELP);
    return sub ? 0 : 2;
  }
  if (!["create", "delete", "list", "set-profile", "frozen", "unfreeze", "disconnect"].includes(sub)) throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}\n${HELP}`);
  if (rest.includes("--password")) throw new UsageError(`--password is gone: a password on the command line is visible to every user (ps); use --password-file FILE or $NVEDGE_MQTT_PASSWORD\n${HELP}`);
  const p = parseOpts(rest, SPEC, HELP, true);
  if (!p) return 0;
  const v = p.values as Values;
  const pos = p.positionals;
  const oneVn = () => {
    if (pos.length !== 1) throw new UsageError(`nvedge vn ${sub} takes exactly one VN (id, alias or name), got ${pos.length}\n${HELP}`);
    return vnRef(pos[0]);
  };
  let op: string, body: Record<string, unknown>;
  if (sub === "disconnect") {
    const vn = oneVn();
    const vnic = v.vnic as string | undefined;
    if (vnic === undefined) throw new UsageError(`missing --vnic\n${HELP}`);
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(vnic)) throw new UsageError(`--vnic ${vnic}: not a lower-case RFC 4122 UUID`);
    const { ask } = await import("./admin-cmds.js");
    await ask(v as { socket?: string; store?: string }, { cmd: "vn.disconnect", vnic, vn: vn.id ?? vn.name ?? vn.alias, ...(v.reason ? { reason: v.reason } : {}) });
    console.log(`VNIC ${vnic} disconnected from VN ${pos[0]}`);
    return 0;
  } else if (sub === "create") {
    if (pos.length) throw new UsageError(`unexpected argument ${JSON.stringify(pos[0])}: give the alias with --alias`);
    if (v.alias === undefined) throw new UsageError(`missing --alias\n${HELP}`);
    const id = int(v.id as string | undefined, "--id", 1, 16777215);
    const vni = int(v.vni as string | undefined, "--vni", 1, 16777215);
    const profile = profileFrom(v);
    op = "vn.create";
    body = { vn: { alias: v.alias, ...(id !== undefined ? { id } : {}), ...(v.name !== undefined ? { name: v.name } : {}) },
      ...(vni !== undefined ? { vni } : {}), ...(profile ? { profile } : {}) };
  } else if (sub === "delete") {
    op = "vn.delete";
    body = { vn: oneVn() };
  } else if (sub === "set-profile") {
    const profile = profileFrom(v);
    if (!profile) throw new UsageError(`nvedge vn set-profile needs --profile JSON or profile flags (--encap, --mtu, ...)\n${HELP}`);
    op = "vn.set-profile";
    body = { vn: oneVn(), profile };
  } else if (sub === "frozen") {
    if (pos.length > 1) throw new UsageError(`nvedge vn frozen takes at most one VN, got ${pos.length}\n${HELP}`);
    op = "mac.frozen";
    body = pos.length ? { vn: vnRef(pos[0]) } : {};
  } else if (sub === "unfreeze") {
    if (pos.length !== 2) throw new UsageError(`nvedge vn unfreeze takes a VN and a MAC, got ${pos.length} arguments\n${HELP}`);
    if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(pos[1])) throw new UsageError(`MAC ${JSON.stringify(pos[1])}: not of the form 02:00:5e:10:00:01`);
    op = "mac.unfreeze";
    body = { vn: vnRef(pos[0]), mac: pos[1].toLowerCase() };
  } else {
    if (pos.length) throw new UsageError(`unexpected argument ${JSON.stringify(pos[0])}`);
    op = "vn.list";
    body = {};
  }
  const r = await operatorRequest(v, op, body);
  if (!r.ok) {
    const e = r.error ?? {};
    console.error(`nvedge vn ${sub}: the IMA refused: ${e.code}: ${e.message}${e.field ? ` (field ${e.field})` : ""}`);
    return 1;
  }
  if (sub === "frozen") {
    if (v.json) console.log(JSON.stringify(r.macs));
    else console.log(frozenTable(r.macs));
    return 0;
  }
  if (sub === "unfreeze") {
    if (v.json) console.log(JSON.stringify({ vn: r.vn, mac: r.mac, nve: r.nve, ip: r.ip, seq: r.seq }));
    else console.log(`MAC ${r.mac} in VN ${r.vn.id} is not frozen; it stays at ${r.nve} (${r.ip}, seq ${r.seq})`);
    return 0;
  }
  if (v.json) console.log(JSON.stringify(sub === "list" ? r.vns : record(r)));
  else if (sub === "list") console.log(table(r.vns));
  else if (sub === "delete") console.log(`VN ${r.vn.id}${r.vn.alias ? ` (${r.vn.alias})` : ""} deleted`);
  else console.log(table([record(r)]));
  return 0;
}
