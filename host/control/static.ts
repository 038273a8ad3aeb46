// The configuration file's static state (INTERFACES.md): underlay, ports, VNs
// and remotes become DpOps at start; static `vnics` are owned by CONFIG_HV and
// reconciled through the same path as an agent's sync (so a restart with the
// same file changes nothing).
import type { NveConfig } from "../config/types.js";
import type { DpOp } from "../dataplane/ops.js";
import { normIp, normMac } from "../protocol/addr.js";
import type { SyncVnic } from "../protocol/types.js";
import type { VnCatalog } from "./catalog.js";
import { l3DomainOps } from "../config/l3.js";

export function staticOps(cfg: NveConfig, catalog: VnCatalog): DpOp[] {
  const u = cfg.underlay;
  const ops: DpOp[] = [
    // Without gatewayMac the next hop comes from the kernel's neighbour table
    // (host/io); broadcast is the placeholder until it is resolved.
    { op: "underlay", port: u.port, ip: u.ip, mac: normMac(u.mac), gatewayMac: normMac(u.gatewayMac ?? "ff:ff:ff:ff:ff:ff"),
      udpPort: u.udpPort, genevePort: u.genevePort },
    ...cfg.ports.map((p): DpOp => ({ op: "port", port: p.name })),
    ...l3DomainOps(cfg),
    ...catalog.all().map((v): DpOp => ({ op: "vn", vn: v.id, vni: v.vni, profile: v.profile })),
  ];
  for (const r of cfg.remotes) {
    for (const ref of r.vns) ops.push({ op: "flood.join", vn: catalog.resolve(ref).id, nve: r.ip, ...(r.routerMac ? { routerMac: normMac(r.routerMac) } : {}) });
    for (const a of r.addrs) {
      const vn = catalog.resolve(a.vn).id;
      const mac = normMac(a.mac);
      ops.push({ op: "mac.remote", vn, mac, nve: r.ip });
      for (const ip of a.ips ?? []) ops.push({ op: "ip", vn, ip: normIp(ip), mac });
    }
  }
  return ops;
}

/** Static VNICs grouped by port, as sync entries. */
export function staticVnics(cfg: NveConfig, catalog: VnCatalog): Map<string, SyncVnic[]> {
  const byPort = new Map<string, SyncVnic[]>();
  for (const n of cfg.vnics) {
    const list = byPort.get(n.port) ?? [];
    list.push({
      vnic: n.vnic, state: n.state === "associated" ? "associated" : "active",
      vns: n.vns.map((b) => ({ vn: { id: catalog.resolve(b.vn).id }, tag: b.tag, addrs: b.addrs })),
    });
    byPort.set(n.port, list);
  }
  return byPort;
}
