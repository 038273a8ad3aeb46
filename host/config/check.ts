// `nvedge config check FILE` (issue 13): every error of a configuration, each
// with its JSON path, not just the first; and the rules that a schema cannot
// say and that the loader used to accept silently: duplicate or conflicting
// remotes, a remote claiming a local VNIC's MAC or IP, a MAC or IP twice in a
// VN, a tag on a port bound to two VNs, a hypervisor on two ports.
// The loader (load.ts) refuses a file with the first of these too, so `run`,
// `reload`, `pcap` and `trace` never start from such a file.
import { isIP } from "node:net";
import { parse as parseYaml } from "yaml";
import { Ajv, type ValidateFunction } from "ajv";
import { configSchema } from "./schema.js";
import type { NveConfig } from "./types.js";
import type { DpOp } from "../dataplane/ops.js";
import { normIp, normMac as normMacP } from "../domain/addr-text.js";
import { profileProblems } from "../dataplane/acl.js";
import { checkL3 } from "./l3.js";

export interface ConfigProblem {
  /** JSONPath of the value at fault, e.g. `$.remotes[1].addrs[0].mac`. */
  path: string;
  message: string;
}

type Seg = string | number;
export const jsonPath = (segs: Seg[]) => "$" + segs.map((s) => typeof s === "number" ? `[${s}]` : /^[A-Za-z_][A-Za-z0-9_]*$/.test(s) ? `.${s}` : `[${JSON.stringify(s)}]`).join("");
/** The loader's dotted key (vns.1.profile.encap) of a JSONPath. */
export const dottedKey = (path: string) => path.replace(/^\$\.?/, "").replace(/\[(\d+)\]/g, ".$1").replace(/\["([^"]*)"\]/g, ".$1").replace(/^\./, "");

const normMac = (m: string) => { try { return normMacP(m); } catch { return m.toLowerCase(); } };
const hvId = (h: unknown) => typeof h === "string" ? h : (h as { id?: string })?.id ?? "";

/** The semantic rules over a schema-valid configuration (defaults filled). */
export function checkConfig(cfg: NveConfig): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  const bad = (segs: Seg[], message: string) => out.push({ path: jsonPath(segs), message });
  const vnOf = (ref: number | string) => cfg.vns.find((v) => v.id === ref || v.name === ref || v.alias === ref)?.id;

  if (!isIP(cfg.underlay.ip)) bad(["underlay", "ip"], `"${cfg.underlay.ip}" is not an IP address`);
  // A profile's ACL rules, QoS and learning limits (PROTOCOL.md §5), as the data plane compiles them.
  cfg.vns.forEach((v, i) => {
    for (const pr of profileProblems(v.profile))
      bad(["vns", i, "profile", ...pr.path.split(/[.[\]]+/).filter(Boolean).map((x) => /^\d+$/.test(x) ? Number(x) : x)], pr.message);
  });
  // the next hop is resolved by ARP or ND from underlay.ip, so it is of its family (issue 11, host/underlay)
  const gw = cfg.underlay.gateway;
  if (gw !== undefined && isIP(cfg.underlay.ip) && isIP(gw)) {
    if (isIP(gw) !== isIP(cfg.underlay.ip)) bad(["underlay", "gateway"], `${gw} is not of underlay.ip's family (${cfg.underlay.ip})`);
    else if (normIp(gw) === normIp(cfg.underlay.ip)) bad(["underlay", "gateway"], `${gw} is this NVE's own underlay IP`);
  }
  const ports = new Set(cfg.ports.map((p) => p.name));
  // A hypervisor on two ports: requests would be answered for one of them only.
  const hvAt = new Map<string, string>();
  cfg.ports.forEach((p, i) => p.hypervisors.forEach((h, j) => {
    const id = hvId(h);
    const prev = hvAt.get(id);
    if (prev !== undefined && prev !== p.name) bad(["ports", i, "hypervisors", j], `hypervisor "${id}" is already listed on port "${prev}"`);
    else hvAt.set(id, p.name);
  }));

  // Local (static VNIC) MACs and IPs per VN, and tags per port.
  const macAt = new Map<string, string>(); // vn|mac -> path
  const ipAt = new Map<string, string>();
  const tagVn = new Map<string, { vn: number; path: string }>(); // port|tag
  const vnTag = new Map<string, { tag: number; path: string }>(); // port|vn
  cfg.vnics.forEach((n, i) => {
    if (!ports.has(n.port)) return; // the loader names it
    n.vns.forEach((b, j) => {
      const vn = vnOf(b.vn);
      if (vn === undefined) return;
      const tp = ["vnics", i, "vns", j, "tag"] as Seg[];
      const t = tagVn.get(`${n.port}|${b.tag}`);
      if (t && t.vn !== vn) bad(tp, `tag ${b.tag} on port ${n.port} is already VN ${t.vn}'s (${t.path})`);
      else tagVn.set(`${n.port}|${b.tag}`, { vn, path: jsonPath(tp) });
      const v = vnTag.get(`${n.port}|${vn}`);
      if (v && v.tag !== b.tag) bad(tp, `VN ${vn} on port ${n.port} already has tag ${v.tag} (${v.path}); a VN has one tag per port`);
      else vnTag.set(`${n.port}|${vn}`, { tag: b.tag, path: jsonPath(tp) });
      b.addrs.forEach((a, k) => {
        const mk = `${vn}|${normMac(a.mac)}`;
        const mp = ["vnics", i, "vns", j, "addrs", k, "mac"] as Seg[];
        if (macAt.has(mk)) bad(mp, `MAC ${a.mac} in VN ${vn} is already at ${macAt.get(mk)}`);
        else macAt.set(mk, jsonPath(mp));
        (a.ips ?? []).forEach((ip, l) => {
          const ipp = ["vnics", i, "vns", j, "addrs", k, "ips", l] as Seg[];
          if (!isIP(ip)) return bad(ipp, `"${ip}" is not an IP address`);
          const ik = `${vn}|${ip.toLowerCase()}`;
          if (ipAt.has(ik)) bad(ipp, `IP ${ip} in VN ${vn} is already at ${ipAt.get(ik)}`);
          else ipAt.set(ik, jsonPath(ipp));
        });
      });
    });
  });

  // Remotes: one entry per NVE and per IP, never our own IP, never a local MAC.
  const nveAt = new Map<string, number>();
  const remIpAt = new Map<string, number>();
  cfg.remotes.forEach((r, i) => {
    if (nveAt.has(r.nve)) bad(["remotes", i, "nve"], `duplicate remote "${r.nve}" (also remotes[${nveAt.get(r.nve)}])`);
    else nveAt.set(r.nve, i);
    if (r.nve === cfg.nve) bad(["remotes", i, "nve"], `"${r.nve}" is this NVE`);
    if (!isIP(r.ip)) bad(["remotes", i, "ip"], `"${r.ip}" is not an IP address`);
    else if (r.ip === cfg.underlay.ip) bad(["remotes", i, "ip"], `${r.ip} is this NVE's own underlay IP`);
    else if (remIpAt.has(r.ip)) bad(["remotes", i, "ip"], `remote IP ${r.ip} is already remotes[${remIpAt.get(r.ip)}] (${cfg.remotes[remIpAt.get(r.ip)!].nve})`);
    else remIpAt.set(r.ip, i);
    const served = new Set(r.vns.map(vnOf));
    r.addrs.forEach((a, j) => {
      const vn = vnOf(a.vn);
      if (vn === undefined) return;
      const mp = ["remotes", i, "addrs", j, "mac"] as Seg[];
      if (parseInt(a.mac.slice(0, 2), 16) & 1) bad(mp, `${a.mac} is a multicast MAC; a binding is a unicast MAC`);
      const mk = `${vn}|${normMac(a.mac)}`;
      const prev = macAt.get(mk);
      if (prev !== undefined) bad(mp, prev.startsWith("$.vnics") ? `MAC ${a.mac} in VN ${vn} is a local VNIC's (${prev}); a remote cannot claim it` : `MAC ${a.mac} in VN ${vn} is already at ${prev}`);
      else macAt.set(mk, jsonPath(mp));
      if (!served.has(vn)) bad(["remotes", i, "addrs", j, "vn"], `VN ${vn} is not in this remote's vns`);
      (a.ips ?? []).forEach((ip, l) => {
        const ipp = ["remotes", i, "addrs", j, "ips", l] as Seg[];
        if (!isIP(ip)) return bad(ipp, `"${ip}" is not an IP address`);
        const ik = `${vn}|${ip.toLowerCase()}`;
        if (ipAt.has(ik)) bad(ipp, `IP ${ip} in VN ${vn} is already at ${ipAt.get(ik)}`);
        else ipAt.set(ik, jsonPath(ipp));
      });
    });
  });
  checkL3(cfg, bad);
  return out;
}

// Compiled on first use (only `nvedge config check` needs it), not at the import of every command.
let allErrorsCompiled: ValidateFunction | undefined;

/** Every problem of a configuration file's text: syntax, schema (all of them), references, the rules above. */
export function checkConfigText(text: string, file: string): { problems: ConfigProblem[]; config?: NveConfig } {
  let raw: unknown;
  try {
    raw = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    return { problems: [{ path: "$", message: `not valid ${/\.ya?ml$/i.test(file) ? "YAML" : "JSON"}: ${(e as Error).message}` }] };
  }
  const allErrors = (allErrorsCompiled ??= new Ajv({ allErrors: true, useDefaults: true, strict: false }).compile(configSchema));
  if (!allErrors(raw)) {
    const seen = new Set<string>();
    const problems: ConfigProblem[] = [];
    for (const err of allErrors.errors ?? []) {
      const segs = err.instancePath.split("/").slice(1).map((s) => /^\d+$/.test(s) ? Number(s) : s.replace(/~1/g, "/").replace(/~0/g, "~"));
      let path = jsonPath(segs);
      let message = err.message ?? "invalid";
      if (err.keyword === "additionalProperties") {
        const k = (err.params as { additionalProperty: string }).additionalProperty;
        path = jsonPath([...segs, k]);
        message = `unknown key "${k}"`;
      } else if (err.keyword === "enum") message = `${message} (${(err.params as { allowedValues: unknown[] }).allowedValues.join(", ")})`;
      else if (err.keyword === "required") {
        const k = (err.params as { missingProperty: string }).missingProperty;
        path = jsonPath([...segs, k]);
        message = `missing (required)`;
      }
      const key = `${path}|${message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      problems.push({ path, message });
    }
    return { problems };
  }
  return { problems: [], config: raw as NveConfig };
}

/**
 * The configuration key a data plane op of the static state came from
 * (host/control/static.ts builds them in file
 * order), so a DataPlaneError ("op 6 (nve): ...") is reported against the key
 * at fault (issue 13). Undefined when the op is not from the file.
 */
export function pathOfOp(cfg: NveConfig, op: DpOp): string | undefined {
  const mac = (m: string) => normMac(m);
  const ipEq = (a: string, b: string) => { try { return normIp(a) === normIp(b); } catch { return a === b; } };
  const vnOf = (ref: number | string) => cfg.vns.find((v) => v.id === ref || v.name === ref || v.alias === ref)?.id;
  switch (op.op) {
    case "underlay": return "$.underlay";
    case "port": { const i = cfg.ports.findIndex((p) => p.name === op.port); return i >= 0 ? jsonPath(["ports", i]) : undefined; }
    case "vn": { const i = cfg.vns.findIndex((v) => v.id === op.vn); return i >= 0 ? jsonPath(["vns", i]) : undefined; }
    case "l3domain": { const i = (cfg.l3domains ?? []).findIndex((d) => d.id === op.id); return i >= 0 ? jsonPath(["l3domains", i]) : undefined; }
    case "tag": case "mac.local": case "ip": case "flood.join": case "mac.remote": break;
    default: return undefined;
  }
  for (let i = 0; i < cfg.vnics.length; i++) {
    const n = cfg.vnics[i];
    for (let j = 0; j < n.vns.length; j++) {
      const b = n.vns[j];
      if (vnOf(b.vn) !== (op as { vn: number }).vn) continue;
      if (op.op === "tag" && n.port === op.port && b.tag === op.tag) return jsonPath(["vnics", i, "vns", j, "tag"]);
      for (let k = 0; k < b.addrs.length; k++) {
        const a = b.addrs[k];
        if (op.op === "mac.local" && mac(a.mac) === mac(op.mac)) return jsonPath(["vnics", i, "vns", j, "addrs", k, "mac"]);
        if (op.op === "ip" && mac(a.mac) === mac(op.mac)) {
          const l = (a.ips ?? []).findIndex((x) => ipEq(x, op.ip));
          if (l >= 0) return jsonPath(["vnics", i, "vns", j, "addrs", k, "ips", l]);
        }
      }
    }
  }
  for (let i = 0; i < cfg.remotes.length; i++) {
    const r = cfg.remotes[i];
    if (op.op === "flood.join" && ipEq(r.ip, op.nve)) {
      const j = r.vns.findIndex((v) => vnOf(v) === op.vn);
      if (j >= 0) return jsonPath(["remotes", i, "vns", j]);
    }
    for (let j = 0; j < r.addrs.length; j++) {
      const a = r.addrs[j];
      if (vnOf(a.vn) !== (op as { vn: number }).vn || !("mac" in op) || mac(a.mac) !== mac(op.mac)) continue;
      if (op.op === "mac.remote") return jsonPath(["remotes", i, "addrs", j, "mac"]);
      if (op.op === "ip") {
        const l = (a.ips ?? []).findIndex((x) => ipEq(x, op.ip));
        if (l >= 0) return jsonPath(["remotes", i, "addrs", j, "ips", l]);
      }
    }
  }
  return undefined;
}

/** A data plane's refusal of the file's static state, as a problem at the key at fault. */
export function opProblem(cfg: NveConfig, ops: DpOp[], e: { index: number; field: string; message: string }): ConfigProblem {
  const op = ops[e.index] as (DpOp & { nve?: string }) | undefined;
  // A refused remote address is the remote's `ip`, whichever op carried it.
  const remote = op && e.field === "nve" && op.nve !== undefined ? cfg.remotes.findIndex((r) => r.ip === op.nve) : -1;
  const path = remote >= 0 ? jsonPath(["remotes", remote, "ip"]) : op ? pathOfOp(cfg, op) : undefined;
  const why = e.message.replace(/^op \d+( \([^)]*\))?: /, "");
  return { path: path ?? "$", message: why };
}
