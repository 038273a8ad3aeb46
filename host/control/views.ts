// The admin `show` views (admin.ts {"cmd":"show"}, `nvedge show`): the NVE's
// bindings, VNs, ports and its view of one End Device, read from the committed
// model, never from a transaction in flight.
import { hvId, type NveConfig } from "../config/types.js";
import { normIp, normMac } from "../domain/addr-text.js";
import type { Clock } from "../domain/clock.js";
import type { ImaLink } from "../ima-client/wire.js";
import type { VnCatalog } from "./catalog.js";
import { splitKey, type Model } from "./model.js";
import { viewVnic } from "./vnic.js";

/** What the views read (NveCore's committed state). */
export interface ViewSource {
  model: Model;
  catalog: VnCatalog;
  config: NveConfig;
  clock: Clock;
  portOf(hv: string): string | undefined;
  ima?: ImaLink;
  gleaned?: () => { vn: number; mac: string; ips: string[]; port: string; seen: number }[];
}

const tagOf = (s: ViewSource) => (port: string, vn: number) => s.model.vaps.get(`${port}|${vn}`)?.tag;

/** The NVE's view of one End Device (the `show` op). */
export function viewHv(s: ViewSource, hv: string): { port: string | undefined; vnics: Record<string, unknown>[] } {
  const ids = [...(s.model.byHv.get(hv) ?? [])].sort();
  return { port: s.portOf(hv), vnics: ids.map((id) => viewVnic({ catalog: s.catalog, tagOf: tagOf(s) }, s.model.vnics.get(id)!)) };
}

export function bindings(s: ViewSource): Record<string, unknown>[] {
  const tag = tagOf(s);
  const rows: Record<string, unknown>[] = [];
  const ipsOf = new Map<string, string[]>();
  for (const [k, o] of s.model.ipOwner) {
    const [vn, ip] = splitKey(k);
    const mk = `${vn}|${o.mac}`;
    ipsOf.set(mk, [...(ipsOf.get(mk) ?? []), ip]);
  }
  for (const [k, owner] of s.model.macOwner) {
    const [vn, mac] = splitKey(k);
    const r = s.model.vnics.get(owner)!;
    const row: Record<string, unknown> = { vn, mac, ips: ipsOf.get(k) ?? [], where: "local", port: r.port, tag: tag(r.port, vn),
      vnic: owner, hv: r.hv, state: r.state };
    if (r.hold) row.holdUntil = r.hold.until;
    rows.push(row);
  }
  for (const rem of s.config.remotes)
    for (const a of rem.addrs) {
      const vn = s.catalog.resolve(a.vn).id;
      rows.push({ vn, mac: normMac(a.mac), ips: (a.ips ?? []).map(normIp), where: "remote", nve: rem.nve, ip: rem.ip });
    }
  for (const r of s.ima?.remoteBindings?.() ?? []) rows.push({ ...r, where: "remote", source: "ima" });
  // PROTOCOL.md §5 learn: glean: bindings of a VAP, not of a VNIC
  for (const g of s.gleaned?.() ?? [])
    rows.push({ vn: g.vn, mac: g.mac, ips: g.ips, where: "local", port: g.port, tag: tag(g.port, g.vn), learn: "glean", state: "active", seen: g.seen });
  return rows.sort((a, b) => (a.vn as number) - (b.vn as number) || String(a.mac).localeCompare(String(b.mac)));
}

export function vns(s: ViewSource): Record<string, unknown>[] {
  return s.catalog.all().map((v) => ({
    id: v.id, name: v.name, alias: v.alias, vni: v.vni, encap: v.profile.encap, mtu: v.profile.mtu,
    ports: [...s.model.vaps.values()].filter((x) => x.vn === v.id)
      .map((x) => ({ port: x.port, tag: x.tag, vnics: s.model.vapCount.get(`${x.port}|${v.id}`) ?? 0 })),
  }));
}

export function ports(s: ViewSource): Record<string, unknown>[] {
  const now = s.clock.now();
  return s.config.ports.map((p) => {
    const alloc = s.model.alloc(p.name);
    return {
      port: p.name,
      hypervisors: p.hypervisors.map(hvId).map((hv) => {
        const h = s.model.hvs.get(hv);
        const t = s.model.timers.get(`agent-hold|${hv}`);
        return { hv, state: h ? (h.online ? "online" : "offline") : "unknown", vnics: s.model.byHv.get(hv)?.size ?? 0, ...(t ? { holdUntil: t.due } : {}) };
      }),
      vaps: [...alloc.tags].sort((a, b) => a[0] - b[0]).map(([tag, vn]) => ({ tag, vn, vnics: s.model.vapCount.get(`${p.name}|${vn}`) ?? 0 })),
      quarantine: [...alloc.quarantine].filter(([, q]) => q.until > now).map(([tag, q]) => ({ tag, vn: q.vn, until: q.until })),
    };
  });
}
