// Decoding what the data plane writes for the host: its counters (u64
// records, assembly/state.ts PC_*, VC_*, GC_* and the drop table) and the
// trace record of one frame (assembly/pipeline/common.ts TR_*), into the
// names the host shows.
import {
  type Exports, PORT_CTR, VN_CTR, PC_RX_FRAMES, PC_RX_BYTES, PC_TX_FRAMES, PC_TX_BYTES, PC_DROPS, VC_RX, VC_TX, VC_ENCAP,
  VC_DECAP, VC_FLOOD, VC_DROPS, GC_RX, GC_FORWARDED, GC_OUTPUTS, GC_DROPPED, TR_VN, TR_VNI, TR_LOOKUP, TR_ACTION, TR_DST,
  TR_SRC, LK_LOCAL, LK_REMOTE, LK_BROADCAST, LK_UNKNOWN, LK_SUPPRESSED, AC_HAIRPIN, AC_ENCAP, AC_FLOOD, AC_DECAP, AC_REPLY, AC_ROUTE, AC_ICMP,
  MK_KIND, MK_LOCAL, MK_REMOTE, ML_ACTIVE, ML_PORT_SHIFT, ML_PORT_MASK, ML_TAG_MASK, MR_TUN_MASK,
} from "./abi.js";
import type { Tables } from "./tables.js";

/** Bytes of a u64 counter. */
const U64 = 8;

/** The trace record's lookup (TR_LOOKUP) and action (TR_ACTION) as the trace shows them (assembly/pipeline/common.ts LK_*, AC_*). */
const LOOKUPS: Record<number, string> = {
  [LK_LOCAL]: "local", [LK_REMOTE]: "remote", [LK_BROADCAST]: "broadcast/multicast", [LK_UNKNOWN]: "unknown unicast",
  [LK_SUPPRESSED]: "answered locally (ARP/ND suppression)",
};
const ACTIONS: Record<number, string> = {
  [AC_HAIRPIN]: "hairpin (re-tag to the local port)", [AC_ENCAP]: "encapsulate", [AC_FLOOD]: "flood", [AC_DECAP]: "decapsulate", [AC_REPLY]: "reply",
  [AC_ROUTE]: "route", [AC_ICMP]: "ICMP time exceeded from the gateway",
};

/** Every drop reason's counter, by index (the module's dropNames order). */
export function readDrops(ex: Exports, dv: DataView, n: number): number[] {
  const dp = ex.dropCtrPtr();
  return Array.from({ length: n }, (_, i) => Number(dv.getBigUint64(dp + i * U64, true)));
}

/** The global, drop, per-port and per-VN counters by name. */
export function readCounters(ex: Exports, dv: DataView, dropNames: string[], t: Tables) {
  const g = ex.globalCtrPtr();
  // counter k of the record at p (u64s: assembly/state.ts PC_*, VC_*, GC_*)
  const rd = (p: number, k = 0) => Number(dv.getBigUint64(p + k * U64, true));
  const drops: Record<string, number> = {};
  const dp = ex.dropCtrPtr();
  dropNames.forEach((n, i) => { drops[n] = rd(dp, i); });
  const ports: Record<string, { rxFrames: number; rxBytes: number; txFrames: number; txBytes: number; drops: number }> = {};
  const pp = ex.portCtrPtr();
  t.portNames.forEach((n, i) => {
    const b = pp + i * PORT_CTR * U64;
    ports[n] = { rxFrames: rd(b, PC_RX_FRAMES), rxBytes: rd(b, PC_RX_BYTES), txFrames: rd(b, PC_TX_FRAMES), txBytes: rd(b, PC_TX_BYTES), drops: rd(b, PC_DROPS) };
  });
  const vns: Record<string, { rxFrames: number; txFrames: number; encap: number; decap: number; flood: number; drops: number }> = {};
  const vp = ex.vnCtrPtr();
  for (const [id, v] of t.vns) {
    const b = vp + v.idx * VN_CTR * U64;
    vns[String(id)] = { rxFrames: rd(b, VC_RX), txFrames: rd(b, VC_TX), encap: rd(b, VC_ENCAP), decap: rd(b, VC_DECAP), flood: rd(b, VC_FLOOD), drops: rd(b, VC_DROPS) };
  }
  // frames each ACL rule and each VN's default denied (`nvedge show acl`), by VN id and rule index
  const acl: Record<string, { default: number; rules: Record<string, number> }> = {};
  const hp = ex.aclRuleHitsPtr(), ap = ex.aclVnPtr();
  for (const [id, v] of t.vns) {
    if (!v.profile.acl?.length && v.profile.aclDefault !== "deny") continue;
    const rules: Record<string, number> = {};
    for (let k = 0; k < v.aclN; k++) rules[String(k)] = rd(hp + (v.aclOff + k) * U64);
    acl[String(id)] = { default: rd(ap + v.idx * 24 + 16), rules };
  }
  return { frames: { rx: rd(g, GC_RX), forwarded: rd(g, GC_FORWARDED), outputs: rd(g, GC_OUTPUTS), dropped: rd(g, GC_DROPPED) }, drops, ports, vns, acl };
}

export interface TraceResult { steps: string[]; outputs: { port: string; frame: Uint8Array }[]; drop?: string; vn?: number }

/**
 * The trace record of the last frame processed since DataPlane.traceBegin
 * (`before`: the drop counters then) as steps: the port, VNI, VN, source,
 * lookup, action, outputs and drop reason; and the VN id.
 */
export function readTrace(ex: Exports, dv: DataView, dropNames: string[], t: Tables, port: string, frameLen: number,
  outputs: { port: string; frame: Uint8Array }[], before: number[],
  domainOfIdx?: (idx: number) => { id: number; vni: number } | undefined): TraceResult {
  const base = ex.tracePtr();
  const f = (k: number) => dv.getUint32(base + k, true);
  const after = readDrops(ex, dv, dropNames.length);
  const di = after.findIndex((n, i) => n !== before[i]);
  const drop = di >= 0 ? dropNames[di] : undefined;
  const steps: string[] = [];
  const pi = t.ports.get(port);
  steps.push(`port ${port}: ${pi === undefined ? "unknown" : pi === t.underlayPort ? "underlay" : "access"}, ${frameLen} bytes`);
  const vni = f(TR_VNI);
  if (vni) steps.push(`vni ${vni}`);
  const vnIdx = f(TR_VN);
  if (vnIdx) {
    const id = t.vnById[vnIdx - 1];
    const v = id !== undefined ? t.vns.get(id) : undefined;
    const dom = id === undefined ? domainOfIdx?.(vnIdx - 1) : undefined; // a domain's L3 VNI (./l3.ts)
    steps.push(dom ? `l3domain ${dom.id} (L3 VNI ${dom.vni})` : `vn ${id} (vni ${v?.vni}, ${v?.profile.encap}, mtu ${v?.profile.mtu})`);
  }
  const src = f(TR_SRC) >>> 0;
  if (src && (src & MK_KIND) >>> 0 === MK_LOCAL) steps.push(`source: local VNIC on ${t.portName((src >> ML_PORT_SHIFT) & ML_PORT_MASK)}${src & ML_ACTIVE ? "" : " (inactive)"}`);
  const lk = LOOKUPS[f(TR_LOOKUP)];
  if (lk) {
    const dst = f(TR_DST) >>> 0;
    let detail = "";
    if ((dst & MK_KIND) >>> 0 === MK_LOCAL) detail = ` -> port ${t.portName((dst >> ML_PORT_SHIFT) & ML_PORT_MASK)} tag ${dst & ML_TAG_MASK}`;
    if ((dst & MK_KIND) >>> 0 === MK_REMOTE) {
      const tun = t.tunByIdx[dst & MR_TUN_MASK];
      const r = tun && t.remoteByIdx[tun.r];
      detail = ` -> NVE ${r?.ip.text ?? "?"}`;
    }
    steps.push(`lookup: ${lk}${detail}`);
  }
  const ac = ACTIONS[f(TR_ACTION)];
  if (ac) steps.push(`action: ${ac}`);
  for (const o of outputs) steps.push(`out ${o.port}: ${o.frame.length} bytes`);
  if (drop) steps.push(`drop: ${drop}`);
  const vn = vnIdx ? t.vnById[vnIdx - 1] : undefined;
  return { steps, outputs: outputs.map(({ port, frame }) => ({ port, frame })), drop, vn };
}
