// The configuration's L3 service (INTERFACES.md `l3domains`; PROTOCOL.md §5
// `service: "l3"`, §6 `l3domain`): the data plane ops that declare the
// routing domains, and the rules a schema cannot say, each naming its key:
// a VN in an undeclared domain, an L3 VNI that is also a VN's VNI, a gateway
// address that is not a host of its prefix.
import type { NveConfig } from "./types.js";
import type { DpOp } from "../dataplane/ops.js";
import { l3OfProfile } from "../dataplane/l3.js";

/** This NVE's router MAC (the inner source of symmetric IRB): `underlay.routerMac`, else the underlay MAC. */
export const routerMacOf = (cfg: NveConfig): string => (cfg.underlay.routerMac ?? cfg.underlay.mac).toLowerCase();

/** One `l3domain` op per declared domain: they come before the VNs (a routed VN names one). */
export function l3DomainOps(cfg: NveConfig): DpOp[] {
  return (cfg.l3domains ?? []).map((d) => ({ op: "l3domain", id: d.id, vni: d.vni, routerMac: routerMacOf(cfg) }));
}

type Seg = string | number;

/** checkConfig's L3 rules (host/config/check.ts). */
export function checkL3(cfg: NveConfig, bad: (segs: Seg[], message: string) => void): void {
  const doms = new Map<number, number>(); // id -> index
  const l3vni = new Map<number, number>(); // L3 VNI -> index
  const vniOf = new Map<number, number>(); // VN VNI -> index in vns
  cfg.vns.forEach((v, i) => { if (!vniOf.has(v.vni)) vniOf.set(v.vni, i); });
  (cfg.l3domains ?? []).forEach((d, i) => {
    if (doms.has(d.id)) bad(["l3domains", i, "id"], `duplicate l3domain ${d.id} (also l3domains[${doms.get(d.id)}])`);
    else doms.set(d.id, i);
    const vn = vniOf.get(d.vni);
    if (vn !== undefined) bad(["l3domains", i, "vni"], `L3 VNI ${d.vni} of l3domain ${d.id} is also the VNI of VN ${cfg.vns[vn].id} (vns[${vn}].vni): an L3 VNI is the domain's own`);
    else if (l3vni.has(d.vni)) bad(["l3domains", i, "vni"], `L3 VNI ${d.vni} is already l3domains[${l3vni.get(d.vni)}]'s`);
    else l3vni.set(d.vni, i);
  });
  cfg.vns.forEach((v, i) => {
    const l3 = l3OfProfile(v.profile);
    if (Array.isArray(l3)) return bad(["vns", i, ...l3[0].split(".").map((s) => /^\d+$/.test(s) ? Number(s) : s)], l3[1]);
    if (l3 && !doms.has(l3.dom)) bad(["vns", i, "profile", "l3domain"], `VN ${v.id} is in l3domain ${l3.dom}, which l3domains does not declare`);
  });
}
