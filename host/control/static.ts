// The configuration file's static state (INTERFACES.md) as data plane ops: the
// one translation used by `nvedge run` (NveCore.open, reload), `nvedge pcap`,
// `nvedge trace --config` and `nvedge config check`. Underlay, ports, VNs and
// remotes become DpOps at start; static `vnics` are owned by CONFIG_HV and
// reconciled through the same path as an agent's sync (so a restart with the
// same file changes nothing); offline, where there is no sync, staticVnicOps
// gives the ops that sync programs into an empty state (test/static-ops.test.ts
// holds the two equal).
import type { NveConfig } from "../config/types.js";
import type { DpOp } from "../dataplane/ops.js";
import { normIp, normMac } from "../domain/addr-text.js";
import type { SyncVnic } from "../protocol/types.js";
import { VnCatalog } from "./catalog.js";
import { l3DomainOps } from "../config/l3.js";

/**
 * The next hop's MAC until it is known: the data plane sends nothing into a
 * tunnel toward it (`no-next-hop`; floods stay local, decapsulation goes on).
 */
export const UNRESOLVED_GATEWAY_MAC = "ff:ff:ff:ff:ff:ff";

export function staticOps(cfg: NveConfig, catalog: VnCatalog): DpOp[] {
  const u = cfg.underlay;
  const ops: DpOp[] = [
    // Without gatewayMac the next hop is unresolved until the NVE resolves
    // underlay.gateway by ARP/ND (host/underlay/resolver.ts, started by
    // `nvedge run`), which applies the underlay op again with its MAC. Offline
    // (pcap, trace) nothing resolves it: frames into a tunnel are `no-next-hop`.
    { op: "underlay", port: u.port, ip: u.ip, mac: normMac(u.mac), gatewayMac: normMac(u.gatewayMac ?? UNRESOLVED_GATEWAY_MAC),
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

/**
 * The static VNICs' tags, MACs and IPs: what their sync (staticVnics, through
 * the control model) programs into a data plane that holds nothing else.
 */
export function staticVnicOps(cfg: NveConfig, catalog: VnCatalog): DpOp[] {
  const ops: DpOp[] = [];
  const tagged = new Set<string>();
  for (const n of cfg.vnics) {
    for (const b of n.vns) {
      const vn = catalog.resolve(b.vn).id;
      const key = `${n.port}:${b.tag}`;
      if (!tagged.has(key)) { ops.push({ op: "tag", port: n.port, tag: b.tag, vn }); tagged.add(key); }
      for (const a of b.addrs) {
        const mac = normMac(a.mac);
        ops.push({ op: "mac.local", vn, mac, port: n.port, active: n.state !== "associated", vnic: n.vnic });
        for (const ip of a.ips ?? []) ops.push({ op: "ip", vn, ip: normIp(ip), mac });
      }
    }
  }
  return ops;
}

/** The whole static state as one op list, for a data plane without a control plane (`nvedge pcap`, `trace --config`, `config check`). */
export function offlineOps(cfg: NveConfig): DpOp[] {
  const catalog = VnCatalog.fromConfig(structuredClone(cfg));
  return [...staticOps(cfg, catalog), ...staticVnicOps(cfg, catalog)];
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
