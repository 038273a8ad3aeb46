// `nvedge show [summary|bindings|vns|ports|counters|remotes|hypervisors] [--json]`
// (INTERFACES.md, issue 13): asks the running NVE over its admin socket
// (host/control/admin.ts, host/cli/admin-extras.ts) and prints tables; with
// no view, the one-screen summary (like `ovs-vsctl show`).
import { UsageError, parseOpts } from "./args.js";
import { adminRequest } from "../control/admin.js";
import { SOCKET_HELP, socketOf } from "./admin-cmds.js";

const VIEWS = ["summary", "bindings", "vns", "ports", "counters", "remotes", "hypervisors", "neighbours", "acl"];
const HELP = `usage: nvedge show [VIEW] [--json] [--socket PATH | --store DIR]
       nvedge show bindings [--vn VN] [--mac MAC] [--port PORT]

VIEW is one of ${VIEWS.join(", ")}; without one, the summary: the NVE,
its underlay, the broker session, uptime, hypervisors online, VNs, bindings and
the drops of the last minute.
  --vn VN --mac MAC --port PORT   only the bindings of that VN (id or alias), MAC, port or remote NVE
${SOCKET_HELP}`;

const dur = (s: number) => {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return `${d ? `${d}d ` : ""}${d || h ? `${h}h ` : ""}${m}m ${s % 60}s`;
};

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
        b.tag === undefined ? "" : String(b.tag), b.vnic ?? (b.learn === "glean" ? "glean" : ""), b.hv ?? "", b.state ? b.state + (b.holdUntil ? ` held until ${iso(b.holdUntil)}` : "") : ""]);
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
      const out = [`frames: rx ${c.frames.rx}  forwarded ${c.frames.forwarded}  outputs ${c.frames.outputs ?? "-"}  dropped ${c.frames.dropped}` +
        (data.clearedAt ? `   (since counters clear at ${iso(data.clearedAt)})` : "")];
      const drops = Object.entries(c.drops as Record<string, number>).filter(([, n]) => n > 0);
      out.push("", table([["DROP REASON", "FRAMES"], ...(drops.length ? drops.map(([k, n]) => [k, String(n)]) : [["(none)", "0"]])]));
      out.push("", table([["PORT", "RX FRAMES", "RX BYTES", "TX FRAMES", "TX BYTES", "DROPS"],
        ...Object.entries(c.ports as Record<string, any>).map(([k, p]) => [k, p.rxFrames, p.rxBytes, p.txFrames, p.txBytes, p.drops].map(String))]));
      out.push("", table([["VN", "RX", "TX", "ENCAP", "DECAP", "FLOOD", "DROPS"],
        ...Object.entries(c.vns as Record<string, any>).map(([k, v]) => [k, v.rxFrames, v.txFrames, v.encap, v.decap, v.flood, v.drops].map(String))]));
      // Packet I/O (--io afpacket): the kernel's ring drops per interface and each worker's figures.
      // TUNNEL GSO: encap TCP super-frames sent whole as one VXLAN/Geneve frame through the tunnel TX tap (host/io/tunnel-output.ts);
      // TUNNEL GSO ERRORS: those the tap refused (lost, TCP resends; in SEND ERRORS too), with the last reason after the table
      if (data.io) {
        const io = Object.entries(data.io as Record<string, any>);
        out.push("", table([["INTERFACE", "RING DROPS", "RING FREEZES", "OVERSIZE", "SEND ERRORS", "CSUM OFFLOAD", "TUNNEL GSO", "TUNNEL GSO ERRORS"],
          ...io.map(([k, x]) => [k, x.kernelDrops, x.kernelFreezes, x.oversize, x.txErrors, x.csumNotReady, x.gsoTunnelSent ?? 0, x.gsoTunnelErrors ?? 0].map(String))]));
        for (const [k, x] of io) if (x.gsoTunnelLastError) out.push(`${k}: the tunnel TX tap's last refusal: ${x.gsoTunnelLastError}`);
      }
      if (data.perWorker) out.push("", table([["WORKER", "RX", "FORWARDED", "DROPPED", "BATCHES"],
        ...(data.perWorker as any[]).map((w, i) => [i, w.rx, w.forwarded, w.dropped, w.batches].map(String))]));
      return out.join("\n");
    }
    case "summary": {
      const d = data;
      const lines = [
        `NVE ${d.nve} (nvedge ${d.version}), up ${dur(d.uptimeSeconds)}, boot ${d.bootId}, packet I/O ${d.io}, log level ${d.logLevel}`,
        `  underlay  ${d.underlay.port}  ${d.underlay.ip}  ${d.underlay.mac}`,
        `  broker    ${d.broker.url}  ${d.broker.connected ? "connected" : "DISCONNECTED"}`,
        `  hypervisors online ${d.hypervisors.online}/${d.hypervisors.configured}   VNs ${d.vns}   VNICs ${d.vnics}   bindings ${d.bindings}   remotes ${d.remotes}`,
      ];
      for (const p of d.ports) lines.push(`  port ${p.port}: ${p.hypervisors} hypervisors, ${p.vaps} VNs attached`);
      if (d.frames) lines.push(`  frames rx ${d.frames.rx}  forwarded ${d.frames.forwarded}  dropped ${d.frames.dropped}` +
        (d.dropsLastMinute ? `   drops in the last ${d.dropsLastMinute.seconds >= 55 ? "minute" : `${d.dropsLastMinute.seconds} s`}: ${d.dropsLastMinute.drops}` : ""));
      return lines.join("\n");
    }
    case "remotes": {
      const rows = [["NVE", "IP", "VNS", "MACS", "SOURCE"]];
      for (const r of data) rows.push([r.nve, r.ip, r.vns.join(","), String(r.macs), r.source]);
      return table(rows);
    }
    case "hypervisors": {
      const rows = [["HV", "PORT", "STATE", "VNICS", "HOLD UNTIL"]];
      for (const h of data) rows.push([h.hv, h.port, h.state, String(h.vnics), h.holdUntil ? iso(h.holdUntil) : ""]);
      return table(rows);
    }
    case "acl": {
      // PROTOCOL.md §5: each VN's rules in order (first match wins), the frames each denied
      if (!data.length) return "no VN has an ACL";
      const rows = [["VN", "#", "ACTION", "DIR", "PROTO", "SRC", "SRC PORT", "DST", "DST PORT", "ICMP TYPE", "DENIED"]];
      for (const v of data) {
        const vn = `${v.vn}${v.alias ? ` (${v.alias})` : ""}`;
        for (const r of v.rules) rows.push([vn, String(r.index), r.rule.action, r.rule.dir ?? "both", r.rule.proto === undefined ? "any" : String(r.rule.proto),
          r.rule.src ?? "any", r.rule.srcPort === undefined ? "" : String(r.rule.srcPort), r.rule.dst ?? "any",
          r.rule.dstPort === undefined ? "" : String(r.rule.dstPort), r.rule.icmpType === undefined ? "" : String(r.rule.icmpType),
          r.rule.action === "deny" ? String(r.denied) : ""]);
        rows.push([vn, "-", v.default, "both", "(default)", "", "", "", "", "", v.default === "deny" ? String(v.defaultDenied) : ""]);
      }
      return table(rows);
    }
    case "neighbours": {
      // the underlay's neighbour cache (host/underlay/resolver.ts), carried in the counters answer
      const u = data;
      if (!u) return "no neighbour cache: the next hop is fixed by underlay.gatewayMac (or packet I/O is off)";
      const remotes = (u.remotes ?? []) as { nve: string; via: string | null; onLink: boolean; hops: string[]; macs: string[] }[];
      const used = new Set(remotes.flatMap((r) => r.hops));
      const rows = [["IP", "MAC", "STATE", "AGE", "NEXT HOP"]];
      for (const e of u.neighbours) rows.push([e.ip, e.mac ?? "", e.state, `${(e.ageMs / 1000).toFixed(1)}s`, e.ip === u.nextHop || used.has(e.ip) ? "yes" : ""]);
      const routes = [["REMOTE NVE", "ROUTE", "NEXT HOPS", "MACS"]];
      for (const r of remotes) routes.push([r.nve, r.via ?? "none", r.onLink ? "on the link" : r.hops.join(",") || "none", r.macs.join(",") || "none"]);
      const c = u.counters;
      return `${table(rows)}

${table(routes)}

next hops from ${u.mode === "routes" ? "the kernel's routes" : `underlay.gateway ${u.nextHop}`}` +
        `  requests ${c.requests}  probes ${c.probes}  replies ${c.replies}  unsolicited ${c.unsolicited}  ` +
        `failures ${c.failures}  changes ${c.changes}  unreadable ${c.unreadable}  route reads ${c.routeReads ?? 0}`;
    }
  }
  return JSON.stringify(data, null, 1);
}

/** `show bindings` rows kept by --vn (id or alias, matched against the VN id), --mac and --port (a local port or a remote NVE). */
export function filterBindings(rows: any[], f: { vn?: string; mac?: string; port?: string }, vnsList?: any[]): any[] {
  let vnId: number | undefined;
  if (f.vn !== undefined) {
    vnId = /^\d+$/.test(f.vn) ? Number(f.vn) : vnsList?.find((v) => v.alias === f.vn || v.name === f.vn)?.id;
    if (vnId === undefined) throw new UsageError(`--vn ${f.vn}: no such VN on this NVE`);
  }
  const mac = f.mac?.toLowerCase();
  return rows.filter((b) => (vnId === undefined || b.vn === vnId) && (mac === undefined || b.mac === mac) &&
    (f.port === undefined || b.port === f.port || b.nve === f.port));
}

export async function showCommand(argv: string[]): Promise<number> {
  const p = parseOpts(argv, { json: { type: "boolean" }, store: { type: "string" }, socket: { type: "string" },
    vn: { type: "string" }, mac: { type: "string" }, port: { type: "string" } }, HELP, true);
  if (!p) return 0;
  const what = p.positionals[0] ?? "summary";
  if (p.positionals.length > 1 || !VIEWS.includes(what))
    throw new UsageError(`expected one of ${VIEWS.join(", ")}, got "${p.positionals.join(" ")}"\n${HELP}`);
  const { vn, mac, port } = p.values;
  if ((vn ?? mac ?? port) !== undefined && what !== "bindings") throw new UsageError(`--vn, --mac and --port filter \`show bindings\` only\n${HELP}`);
  if (mac !== undefined && !/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new UsageError(`--mac ${mac}: not a MAC (xx:xx:xx:xx:xx:xx)`);
  const path = socketOf(p.values);
  // the neighbours are the underlay resolver's, carried in the counters answer (host/underlay/resolver.ts)
  let data = what === "neighbours"
    ? ((await adminRequest(path, { cmd: "show", what: "counters" })) as { underlay?: unknown }).underlay ?? null
    : await adminRequest(path, { cmd: "show", what }) as any;
  if (what === "bindings" && (vn ?? mac ?? port) !== undefined)
    data = filterBindings(data, { vn, mac, port }, vn !== undefined && !/^\d+$/.test(vn) ? await adminRequest(path, { cmd: "show", what: "vns" }) as any[] : undefined);
  console.log(p.values.json ? JSON.stringify(data, null, 1) : render(what, data));
  return 0;
}
