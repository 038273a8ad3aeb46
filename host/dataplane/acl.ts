// The VN profile's `acl` / `aclDefault` and `qos` (PROTOCOL.md §5), checked
// and compiled once, when the profile is programmed: the data plane compares
// numbers only (assembly/pipeline/acl.ts setAclRule, qos.ts setQos). One
// checker serves the configuration file, the control protocol, the IMA and
// the data plane's op validation, so every bad rule gets the same error,
// naming its key (`acl[2].dstPort`).
import type { AclRule, VnProfile } from "./ops.js";
import { parseIp } from "../domain/addr.js";

/** assembly/pipeline/acl.ts HAS_* and DIR_* */
const HAS_PROTO = 1, HAS_SPORT = 2, HAS_DPORT = 4, HAS_ICMP = 8;
export const DIR_FROM = 1, DIR_TO = 2;
const PROTO: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmp6: 58 };
/** Transports whose first 4 bytes are the source and destination ports (RFC 793, RFC 768, RFC 4960, RFC 4340, UDP-Lite). */
const PORTED = new Set([6, 17, 132, 33, 136]);

export interface CompiledRule {
  family: 0 | 4 | 6; dirs: number; action: 0 | 1; has: number; proto: number; icmpType: number;
  srcLo: number; srcHi: number; dstLo: number; dstHi: number;
  src?: { bytes: Uint8Array; plen: number }; dst?: { bytes: Uint8Array; plen: number };
}
export interface CompiledAcl { rules: CompiledRule[]; deny: boolean; dirs: number }
export interface AclProblem { path: string; message: string }

const RULE_KEYS = new Set(["action", "dir", "proto", "src", "dst", "srcPort", "dstPort", "icmpType"]);

function portRange(v: unknown): [number, number] | string {
  if (Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 65535) return [v as number, v as number];
  if (typeof v === "string") {
    const m = /^(\d{1,5})-(\d{1,5})$/.exec(v);
    if (m) {
      const lo = Number(m[1]), hi = Number(m[2]);
      if (lo > 65535 || hi > 65535) return `port out of range 0..65535: "${v}"`;
      if (lo > hi) return `range "${v}" runs backwards (lo > hi)`;
      return [lo, hi];
    }
  }
  return `not a port (0..65535) or a "lo-hi" range: ${JSON.stringify(v)}`;
}

function prefix(v: unknown): { bytes: Uint8Array; plen: number; is6: boolean } | string {
  if (typeof v !== "string") return `not a prefix: ${JSON.stringify(v)}`;
  const ip = parseIp(v);
  if (!ip) return `not an IPv4/IPv6 address or prefix (with zero host bits): ${JSON.stringify(v)}`;
  const plen = ip.prefix ?? (ip.is6 ? 128 : 32);
  const bytes = new Uint8Array(16);
  bytes.set(ip.bytes.subarray(0, ip.is6 ? 16 : 4));
  return { bytes, plen, is6: ip.is6 };
}

/**
 * The profile's ACL and QoS compiled, or the problems of each bad key (paths
 * relative to the profile: `acl[1].srcPort`, `aclDefault`, `qos.burstKb`).
 */
export function compileAcl(p: Pick<VnProfile, "acl" | "aclDefault">): { acl?: CompiledAcl; problems: AclProblem[] } {
  const problems: AclProblem[] = [];
  const bad = (path: string, message: string) => problems.push({ path, message });
  const out: CompiledRule[] = [];
  let dirs = 0;
  if (p.aclDefault !== undefined && p.aclDefault !== "allow" && p.aclDefault !== "deny") bad("aclDefault", `must be "allow" or "deny", not ${JSON.stringify(p.aclDefault)}`);
  if (p.acl !== undefined && !Array.isArray(p.acl)) bad("acl", "must be an array of rules");
  const list = Array.isArray(p.acl) ? p.acl : [];
  if (list.length > 4096) bad("acl", `at most 4096 rules per VN, not ${list.length}`);
  list.forEach((r: AclRule, i) => {
    const at = (k: string) => `acl[${i}]${k ? "." + k : ""}`;
    if (!r || typeof r !== "object" || Array.isArray(r)) return bad(at(""), "a rule is an object with at least an \"action\"");
    for (const k of Object.keys(r)) if (!RULE_KEYS.has(k)) bad(at(k), `unknown key (a rule has ${[...RULE_KEYS].join(", ")})`);
    const n0 = problems.length;
    if (r.action !== "allow" && r.action !== "deny") bad(at("action"), `must be "allow" or "deny", not ${JSON.stringify(r.action)}`);
    const dir = r.dir ?? "both";
    const d = dir === "from-vnic" ? DIR_FROM : dir === "to-vnic" ? DIR_TO : dir === "both" ? DIR_FROM | DIR_TO : 0;
    if (!d) bad(at("dir"), `must be "from-vnic", "to-vnic" or "both", not ${JSON.stringify(r.dir)}`);
    let proto = -1;
    if (r.proto !== undefined) {
      if (typeof r.proto === "string" && r.proto in PROTO) proto = PROTO[r.proto];
      else if (Number.isInteger(r.proto) && (r.proto as number) >= 0 && (r.proto as number) <= 255) proto = r.proto as number;
      else bad(at("proto"), `must be tcp, udp, icmp, icmp6 or a protocol number 0..255, not ${JSON.stringify(r.proto)}`);
    }
    let family: 0 | 4 | 6 = proto === 1 ? 4 : proto === 58 ? 6 : 0;
    const pre: Partial<Record<"src" | "dst", { bytes: Uint8Array; plen: number }>> = {};
    for (const k of ["src", "dst"] as const) {
      if (r[k] === undefined) continue;
      const x = prefix(r[k]);
      if (typeof x === "string") { bad(at(k), x); continue; }
      const f = x.is6 ? 6 : 4;
      if (family !== 0 && family !== f) bad(at(k), `an IPv${f} prefix in a rule that is IPv${family} (${proto === 1 ? "proto icmp" : proto === 58 ? "proto icmp6" : "the other prefix"})`);
      else family = f;
      pre[k] = { bytes: x.bytes, plen: x.plen };
    }
    const ports: Partial<Record<"srcPort" | "dstPort", [number, number]>> = {};
    for (const k of ["srcPort", "dstPort"] as const) {
      if (r[k] === undefined) continue;
      const x = portRange(r[k]);
      if (typeof x === "string") { bad(at(k), x); continue; }
      if (!PORTED.has(proto)) bad(at(k), `ports need a "proto" with ports (tcp, udp, or 132, 33, 136), not ${r.proto === undefined ? "none" : JSON.stringify(r.proto)}`);
      ports[k] = x;
    }
    if (r.icmpType !== undefined) {
      if (!Number.isInteger(r.icmpType) || r.icmpType < 0 || r.icmpType > 255) bad(at("icmpType"), `must be an integer 0..255, not ${JSON.stringify(r.icmpType)}`);
      else if (proto !== 1 && proto !== 58) bad(at("icmpType"), `needs "proto": "icmp" or "icmp6", not ${r.proto === undefined ? "none" : JSON.stringify(r.proto)}`);
    }
    if (problems.length !== n0) return;
    dirs |= d;
    out.push({
      family, dirs: d, action: r.action === "deny" ? 1 : 0,
      has: (proto >= 0 ? HAS_PROTO : 0) | (ports.srcPort ? HAS_SPORT : 0) | (ports.dstPort ? HAS_DPORT : 0) | (r.icmpType !== undefined ? HAS_ICMP : 0),
      proto: Math.max(proto, 0), icmpType: r.icmpType ?? 0,
      srcLo: ports.srcPort?.[0] ?? 0, srcHi: ports.srcPort?.[1] ?? 65535, dstLo: ports.dstPort?.[0] ?? 0, dstHi: ports.dstPort?.[1] ?? 65535,
      src: pre.src, dst: pre.dst,
    });
  });
  if (problems.length) return { problems };
  return { acl: { rules: out, deny: p.aclDefault === "deny", dirs }, problems };
}

/** Default policer depth when `qos.burstKb` is absent: 10 ms at the rate, at least 64 KiB (a few full-size frames). */
const DEFAULT_BURST_MS = 10;
const MIN_BURST_BYTES = 64 * 1024;

export interface CompiledQos { pcp: number; rateBytesPerMs: number; depthBytes: number }

/** `qos` compiled for assembly/pipeline/qos.ts setQos, or the problems (paths relative to the profile). */
export function compileQos(p: Pick<VnProfile, "qos" | "mtu">): { qos?: CompiledQos; problems: AclProblem[] } {
  const problems: AclProblem[] = [];
  const q = p.qos ?? {};
  if (q.pcp !== undefined && (!Number.isInteger(q.pcp) || q.pcp < 0 || q.pcp > 7)) problems.push({ path: "qos.pcp", message: `must be an integer 0..7, not ${JSON.stringify(q.pcp)}` });
  if (q.rateMbps !== undefined && !(typeof q.rateMbps === "number" && q.rateMbps > 0 && q.rateMbps <= 1e6))
    problems.push({ path: "qos.rateMbps", message: `must be a number above 0 and at most 1000000, not ${JSON.stringify(q.rateMbps)}` });
  if (q.burstKb !== undefined) {
    if (q.rateMbps === undefined) problems.push({ path: "qos.burstKb", message: "needs qos.rateMbps (the policer's rate)" });
    else if (!(typeof q.burstKb === "number" && q.burstKb > 0 && q.burstKb <= 1e6)) problems.push({ path: "qos.burstKb", message: `must be a number above 0 and at most 1000000, not ${JSON.stringify(q.burstKb)}` });
    // a bucket shallower than one frame of the VN's MTU would drop every such frame
    else if (q.burstKb * 1024 < (p.mtu ?? 1500) + 18) problems.push({ path: "qos.burstKb", message: `${q.burstKb} KiB is less than one frame of the VN's MTU (${(p.mtu ?? 1500) + 18} bytes)` });
  }
  if (problems.length) return { problems };
  // rateMbps: 10^6 bits per second = 125 bytes per ms; burstKb: KiB (1024 bytes)
  const rate = q.rateMbps ? q.rateMbps * 125 : 0;
  const depth = !rate ? 0 : q.burstKb !== undefined ? q.burstKb * 1024 : Math.max(rate * DEFAULT_BURST_MS, MIN_BURST_BYTES);
  return { qos: { pcp: q.pcp ?? 8, rateBytesPerMs: rate, depthBytes: depth }, problems };
}

/** Every ACL / QoS problem of a profile (paths relative to it), for the validators that have no data plane. */
export function profileProblems(p: VnProfile): AclProblem[] {
  return [...compileAcl(p).problems, ...compileQos(p).problems, ...learnProblems(p)];
}

/** `learnAgeMs`, `maxLearnedPerPort` (PROTOCOL.md §5 learn: glean). */
export function learnProblems(p: Pick<VnProfile, "learnAgeMs" | "maxLearnedPerPort">): AclProblem[] {
  const out: AclProblem[] = [];
  if (p.learnAgeMs !== undefined && !(Number.isInteger(p.learnAgeMs) && p.learnAgeMs >= 1000 && p.learnAgeMs <= 86_400_000))
    out.push({ path: "learnAgeMs", message: `must be an integer from 1000 to 86400000 (ms), not ${JSON.stringify(p.learnAgeMs)}` });
  if (p.maxLearnedPerPort !== undefined && !(Number.isInteger(p.maxLearnedPerPort) && p.maxLearnedPerPort >= 1 && p.maxLearnedPerPort <= 65536))
    out.push({ path: "maxLearnedPerPort", message: `must be an integer from 1 to 65536, not ${JSON.stringify(p.maxLearnedPerPort)}` });
  return out;
}
