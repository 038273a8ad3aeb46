// The configuration file's static state (INTERFACES.md) as data plane ops:
// the underlay, the access ports, the VN catalog, the static VNICs with their
// tags and addresses, and the static remotes with their flood lists.
import type { NveConfig } from "../config/types.js";
import { resolveVn } from "../config/load.js";
import type { DpOp } from "./ops.js";
import { l3DomainOps } from "../config/l3.js";

export function vnOps(cfg: NveConfig): DpOp[] {
  return cfg.vns.map((v) => ({ op: "vn", vn: v.id, vni: v.vni, profile: v.profile }));
}

export function configOps(cfg: NveConfig): DpOp[] {
  const u = cfg.underlay;
  const ops: DpOp[] = [];
  if (!u.gatewayMac) throw new Error(`${cfg.nve}: underlay.gatewayMac is needed to build outer headers (no neighbour table offline)`);
  ops.push({ op: "underlay", port: u.port, ip: u.ip, mac: u.mac, gatewayMac: u.gatewayMac, udpPort: u.udpPort, genevePort: u.genevePort });
  for (const p of cfg.ports) ops.push({ op: "port", port: p.name });
  ops.push(...l3DomainOps(cfg), ...vnOps(cfg));
  ops.push(...staticBindingOps(cfg));
  return ops;
}

/** The `vnics` and `remotes` sections: what the control protocol and the IMA would otherwise install. */
export function staticBindingOps(cfg: NveConfig): DpOp[] {
  const ops: DpOp[] = [];
  const id = (ref: number | string) => resolveVn(cfg, ref)!.id;
  const tagged = new Set<string>();
  for (const n of cfg.vnics) {
    for (const b of n.vns) {
      const vn = id(b.vn);
      const key = `${n.port}:${b.tag}`;
      if (!tagged.has(key)) { ops.push({ op: "tag", port: n.port, tag: b.tag, vn }); tagged.add(key); }
      for (const a of b.addrs) {
        ops.push({ op: "mac.local", vn, mac: a.mac, port: n.port, active: n.state !== "associated" });
        for (const ip of a.ips ?? []) ops.push({ op: "ip", vn, ip, mac: a.mac });
      }
    }
  }
  for (const r of cfg.remotes) {
    for (const v of r.vns) ops.push({ op: "flood.join", vn: id(v), nve: r.ip, ...(r.routerMac ? { routerMac: r.routerMac.toLowerCase() } : {}) });
    for (const a of r.addrs) {
      const vn = id(a.vn);
      ops.push({ op: "mac.remote", vn, mac: a.mac, nve: r.ip });
      for (const ip of a.ips ?? []) ops.push({ op: "ip", vn, ip, mac: a.mac });
    }
  }
  return ops;
}
