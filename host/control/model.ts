// The NVE's state in memory, with the indexes the handlers need, mirrored in the
// Store (host/store/store.ts). Only Txn.commit() changes it, after the change is
// stored and programmed (PROTOCOL.md §2).
import { ShardedMap } from "../domain/sharded-map.js";
import type { DpOp } from "../dataplane/ops.js";
import type { HvRecord, Store, TimerRecord, VapRecord, VnicRecord } from "../store/store.js";
import { TagAllocator } from "./tags.js";
import { rangeOf } from "./ranges.js";
import type { Ip } from "../domain/addr.js";

function bump(m: Map<string, number>, k: string, d: number): void {
  const n = (m.get(k) ?? 0) + d;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

/** Owner of the static `vnics` of the configuration file on one port ("@" is not allowed in an {hv}). */
export const configHv = (port: string) => `@config/${port}`;
export const isConfigHv = (hv: string) => hv.startsWith("@");

export const macKey = (vn: number, mac: string) => `${vn}|${mac}`;
export const ipKey = (vn: number, ip: string) => `${vn}|${ip}`;
export const vapKey = (port: string, vn: number) => `${port}|${vn}`;
export function splitKey(k: string): [number, string] {
  const i = k.indexOf("|");
  return [Number(k.slice(0, i)), k.slice(i + 1)];
}
export function splitVapKey(k: string): [string, number] {
  const i = k.lastIndexOf("|");
  return [k.slice(0, i), Number(k.slice(i + 1))];
}

export class Model {
  // per-VNIC and per-address indexes: ShardedMap, so no request pays a whole index's rehash (host/domain/sharded-map.ts)
  readonly vnics: Map<string, VnicRecord> = new ShardedMap<VnicRecord>();
  readonly vaps = new Map<string, VapRecord>();
  readonly hvs = new Map<string, HvRecord>();
  readonly timers = new Map<string, TimerRecord>();
  readonly macOwner: Map<string, string> = new ShardedMap<string>();
  /**
   * (VN, IP) -> owner, built on first use from `vnics` (then kept in step by
   * index()): a restart with a million addresses programs the data plane from
   * the records (programAll) without waiting for this index (issue 4); the
   * first request that needs it, or warm(), builds it.
   */
  private ipIdx: Map<string, { vnic: string; mac: string }> | undefined;
  readonly vapCount = new Map<string, number>();
  readonly byHv = new Map<string, Set<string>>();
  readonly allocators = new Map<string, TagAllocator>();
  /** `${hv}|${vn}` → VNICs of the End Device in the VN; hv → how many VNs it uses (its share of its port's tags) */
  readonly hvVn = new Map<string, number>();
  readonly hvVnCount = new Map<string, number>();
  /** hv → ranges (CIDR prefixes) it holds; all local ranges (the data plane's prefix table) */
  readonly hvRanges = new Map<string, number>();
  rangeTotal = 0;
  /** VN → its ranges → owner VNIC (few: load balancers' VIPs; overlap checks, ranges.ts) */
  readonly ranges = new Map<number, Map<string, { vnic: string; p: Ip }>>();

  constructor(ports: string[]) {
    for (const p of ports) this.allocators.set(p, new TagAllocator(p));
  }

  alloc(port: string): TagAllocator {
    let a = this.allocators.get(port);
    if (!a) this.allocators.set(port, (a = new TagAllocator(port)));
    return a;
  }

  get ipOwner(): Map<string, { vnic: string; mac: string }> {
    if (this.ipIdx) return this.ipIdx;
    const m: Map<string, { vnic: string; mac: string }> = new ShardedMap<{ vnic: string; mac: string }>();
    for (const r of this.vnics.values())
      for (const b of r.vns) {
        const pre = `${b.vn}|`;
        for (const a of b.addrs) {
          if (a.ips.length === 0) continue;
          const owner = { vnic: r.vnic, mac: a.mac }; // shared by its IPs: owners are never mutated
          for (const ip of a.ips) m.set(pre + ip, owner);
        }
      }
    return (this.ipIdx = m);
  }

  /** Builds the lazy indexes now (after the data plane is programmed, before requests arrive). */
  warm(): void {
    void this.ipOwner;
  }

  /** Restores everything from the store (PROTOCOL.md §3: before answering anything). */
  load(store: Store): void {
    for (const [, r] of store.list("vnics")) this.index(r, true);
    for (const [k, v] of store.list("vaps")) {
      this.vaps.set(k, v);
      this.alloc(v.port).take(v.tag, v.vn);
    }
    for (const [, q] of store.list("quarantine")) this.alloc(q.port).quarantine.set(q.tag, { vn: q.vn, until: q.until });
    for (const [k, h] of store.list("hvs")) this.hvs.set(k, h);
    for (const [k, t] of store.list("timers")) this.timers.set(k, t);
  }

  /**
   * Adds or removes a record and its counts; `owners` false leaves the MAC/IP
   * owner indexes to the caller (Txn.commit and undo set them from the
   * change's overlays right after: doing it here too built every key twice
   * per attach, issue 15).
   */
  index(r: VnicRecord, add: boolean, owners = true): void {
    if (add) {
      this.vnics.set(r.vnic, r);
      let hv = this.byHv.get(r.hv);
      if (!hv) this.byHv.set(r.hv, (hv = new Set()));
      hv.add(r.vnic);
    } else {
      this.vnics.delete(r.vnic);
      this.byHv.get(r.hv)?.delete(r.vnic);
    }
    const ips = this.ipIdx; // not built yet: it will be, from `vnics`
    const d = add ? 1 : -1;
    for (const b of r.vns) {
      const hk = `${r.hv}|${b.vn}`;
      const c = (this.hvVn.get(hk) ?? 0) + d;
      if (c > 0) this.hvVn.set(hk, c);
      else this.hvVn.delete(hk);
      if ((add && c === 1) || (!add && c === 0)) bump(this.hvVnCount, r.hv, d);
      for (const a of b.addrs)
        for (const ip of a.ips) {
          const p = ip.includes("/") ? rangeOf(ip) : null;
          if (!p) continue;
          bump(this.hvRanges, r.hv, d);
          this.rangeTotal += d;
          let vr = this.ranges.get(b.vn);
          if (add) {
            if (!vr) this.ranges.set(b.vn, (vr = new Map()));
            vr.set(ip, { vnic: r.vnic, p });
          } else if (vr?.get(ip)?.vnic === r.vnic) {
            vr.delete(ip);
            if (vr.size === 0) this.ranges.delete(b.vn);
          }
        }
    }
    for (const b of r.vns) {
      const k = vapKey(r.port, b.vn);
      const n = (this.vapCount.get(k) ?? 0) + (add ? 1 : -1);
      if (n > 0) this.vapCount.set(k, n);
      else this.vapCount.delete(k);
      if (!owners) continue;
      for (const a of b.addrs) {
        const mk = macKey(b.vn, a.mac);
        if (add) this.macOwner.set(mk, r.vnic);
        else if (this.macOwner.get(mk) === r.vnic) this.macOwner.delete(mk);
        if (!ips) continue;
        if (add) {
          const owner = { vnic: r.vnic, mac: a.mac };
          for (const ip of a.ips) ips.set(ipKey(b.vn, ip), owner);
        } else for (const ip of a.ips) if (ips.get(ipKey(b.vn, ip))?.vnic === r.vnic) ips.delete(ipKey(b.vn, ip));
      }
    }
  }

  /**
   * Ops that program the whole VNIC state into a fresh data plane (restart):
   * the tags, then one local.bulk op per port straight from the records in
   * index order (a binding claimed twice, never in a consistent store, ends as
   * the indexes have it: the later record wins). Flat arrays, no object per
   * binding (issue 4: a million addresses).
   */
  programAll(): DpOp[] {
    const ops: DpOp[] = [];
    for (const v of this.vaps.values()) ops.push({ op: "tag", port: v.port, tag: v.tag, vn: v.vn });
    const byPort = new Map<string, Extract<DpOp, { op: "local.bulk" }>>();
    for (const [id, r] of this.vnics) {
      let b = byPort.get(r.port);
      if (!b) byPort.set(r.port, (b = { op: "local.bulk", port: r.port, vn: [], mac: [], active: [], ipStart: [0], ips: [], vnic: [] }));
      const active = r.state === "active";
      for (const x of r.vns)
        for (const a of x.addrs) {
          b.vn.push(x.vn);
          b.mac.push(a.mac);
          b.active.push(active);
          b.vnic!.push(id);
          for (const ip of a.ips) b.ips.push(ip);
          b.ipStart.push(b.ips.length);
        }
    }
    for (const b of byPort.values()) ops.push(b);
    return ops;
  }
}
