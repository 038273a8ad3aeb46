// `nvedge show bindings|vns|ports|counters|neighbours [--json]` (INTERFACES.md): asks the
// running NVE over its admin socket (host/control/admin.ts) and prints tables.
import { join, resolve } from "node:path";
import { UsageError, parseOpts } from "./args.js";
import { adminRequest } from "../control/admin.js";

const HELP = `usage: nvedge show bindings|vns|ports|counters|neighbours [--json] [--store DIR | --socket PATH]
  the NVE is reached at --socket, else <--store DIR>/nvedge.sock (default ./nvedge-data/nvedge.sock)`;

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (c ?? "").padEnd(w[i])).join("  ").trimEnd()).join("\n");
}

const iso = (ms: unknown) => (typeof ms === "number" ? new Date(ms).toISOString() : "");

export function render(what: string, data: any): string {
  switch (what) {
    case "bindings": {
      const rows = [["VN", "MAC", "IPS", "WHERE", "PORT/NVE", "TAG", "VNIC", "HV", "STATE"]];
      for (const b of data) rows.push([String(b.vn), b.mac, b.ips.join(","), b.where, b.where === "local" ? b.port : `${b.nve} (${b.ip})`,
        b.tag === undefined ? "" : String(b.tag), b.vnic ?? "", b.hv ?? "", b.state ? b.state + (b.holdUntil ? ` held until ${iso(b.holdUntil)}` : "") : ""]);
      return table(rows);
    }
    case "vns": {
      const rows = [["ID", "ALIAS", "NAME", "VNI", "ENCAP", "MTU", "PORT:TAG(VNICS)"]];
      for (const v of data) rows.push([String(v.id), v.alias ?? "", v.name ?? "", String(v.vni), v.encap, String(v.mtu),
        v.ports.map((p: any) => `${p.port}:${p.tag}(${p.vnics})`).join(" ")]);
      return table(rows);
    }
    case "ports": {
      const rows = [["PORT", "HYPERVISORS", "TAG→VN(VNICS)", "QUARANTINED"]];
      for (const p of data) rows.push([p.port,
        p.hypervisors.map((h: any) => `${h.hv}:${h.state}${h.holdUntil ? `(hold until ${iso(h.holdUntil)})` : ""}`).join(" "),
        p.vaps.map((x: any) => `${x.tag}→${x.vn}(${x.vnics})`).join(" "),
        p.quarantine.map((q: any) => `${q.tag} until ${iso(q.until)}`).join(" ")]);
      return table(rows);
    }
    case "counters": {
      const c = data.counters ?? data;
      const out = [`frames: rx ${c.frames.rx}  forwarded ${c.frames.forwarded}  outputs ${c.frames.outputs ?? "-"}  dropped ${c.frames.dropped}`];
      const drops = Object.entries(c.drops as Record<string, number>).filter(([, n]) => n > 0);
      out.push("", table([["DROP REASON", "FRAMES"], ...(drops.length ? drops.map(([k, n]) => [k, String(n)]) : [["(none)", "0"]])]));
      out.push("", table([["PORT", "RX FRAMES", "RX BYTES", "TX FRAMES", "TX BYTES", "DROPS"],
        ...Object.entries(c.ports as Record<string, any>).map(([k, p]) => [k, p.rxFrames, p.rxBytes, p.txFrames, p.txBytes, p.drops].map(String))]));
      out.push("", table([["VN", "RX", "TX", "ENCAP", "DECAP", "FLOOD", "DROPS"],
        ...Object.entries(c.vns as Record<string, any>).map(([k, v]) => [k, v.rxFrames, v.txFrames, v.encap, v.decap, v.flood, v.drops].map(String))]));
      return out.join("\n");
    }
    case "neighbours": {
      // the underlay's neighbour cache (host/underlay/resolver.ts), carried in the counters answer
      const u = data;
      if (!u) return "no neighbour cache: the next hop is fixed by underlay.gatewayMac, or no underlay.gateway is configured";
      const rows = [["IP", "MAC", "STATE", "AGE", "NEXT HOP"]];
      for (const e of u.neighbours) rows.push([e.ip, e.mac ?? "", e.state, `${(e.ageMs / 1000).toFixed(1)}s`, e.ip === u.nextHop ? "yes" : ""]);
      const c = u.counters;
      return `${table(rows)}

requests ${c.requests}  probes ${c.probes}  replies ${c.replies}  unsolicited ${c.unsolicited}  ` +
        `failures ${c.failures}  changes ${c.changes}  unreadable ${c.unreadable}`;
    }
  }
  return JSON.stringify(data, null, 1);
}

export async function showCommand(argv: string[]): Promise<number> {
  const p = parseOpts(argv, { json: { type: "boolean" }, store: { type: "string" }, socket: { type: "string" } }, HELP, true);
  if (!p) return 0;
  const what = p.positionals[0];
  if (p.positionals.length !== 1 || !["bindings", "vns", "ports", "counters", "neighbours"].includes(what))
    throw new UsageError(`expected one of bindings, vns, ports, counters, neighbours${what ? `, got "${p.positionals.join(" ")}"` : ""}\n${HELP}`);
  const path = p.values.socket ?? join(resolve(p.values.store ?? "nvedge-data"), "nvedge.sock");
  const data = what === "neighbours"
    ? ((await adminRequest(path, { cmd: "show", what: "counters" })) as { underlay?: unknown }).underlay ?? null
    : await adminRequest(path, { cmd: "show", what });
  console.log(p.values.json ? JSON.stringify(data, null, 1) : render(what, data));
  return 0;
}
