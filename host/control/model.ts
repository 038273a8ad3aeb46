// The NVE's state in memory, with the indexes the handlers need, mirrored in the
// Store (host/store/store.ts). Only Txn.commit() changes it, after the change is
// stored and programmed (PROTOCOL.md §2).
import type { DpOp } from "../dataplane/ops.js";
import type { HvRecord, Store, TimerRecord, VapRecord, VnicRecord } from "../store/store.js";
import { TagAllocator } from "./tags.js";

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
  readonly vnics = new Map<string, VnicRecord>();
  readonly vaps = new Map<string, VapRecord>();
  readonly hvs = new Map<string, HvRecord>();
  readonly timers = new Map<string, TimerRecord>();
  readonly macOwner = new Map<string, string>();
  readonly ipOwner = new Map<string, { vnic: string; mac: string }>();
  readonly vapCount = new Map<string, number>();
  readonly byHv = new Map<string, Set<string>>();
  readonly allocators = new Map<string, TagAllocator>();

  constructor(ports: string[]) {
    for (const p of ports) this.allocators.set(p, new TagAllocator(p));
  }

  alloc(port: string): TagAllocator {
    let a = this.allocators.get(port);
    if (!a) this.allocators.set(port, (a = new TagAllocator(port)));
    return a;
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

  index(r: VnicRecord, add: boolean): void {
    if (add) {
      this.vnics.set(r.vnic, r);
      if (!this.byHv.has(r.hv)) this.byHv.set(r.hv, new Set());
      this.byHv.get(r.hv)!.add(r.vnic);
    } else {
      this.vnics.delete(r.vnic);
      this.byHv.get(r.hv)?.delete(r.vnic);
    }
    for (const b of r.vns) {
      const k = vapKey(r.port, b.vn);
      const n = (this.vapCount.get(k) ?? 0) + (add ? 1 : -1);
      if (n > 0) this.vapCount.set(k, n);
      else this.vapCount.delete(k);
      for (const a of b.addrs) {
        if (add) this.macOwner.set(macKey(b.vn, a.mac), r.vnic);
        else if (this.macOwner.get(macKey(b.vn, a.mac)) === r.vnic) this.macOwner.delete(macKey(b.vn, a.mac));
        for (const ip of a.ips) {
          if (add) this.ipOwner.set(ipKey(b.vn, ip), { vnic: r.vnic, mac: a.mac });
          else if (this.ipOwner.get(ipKey(b.vn, ip))?.vnic === r.vnic) this.ipOwner.delete(ipKey(b.vn, ip));
        }
      }
    }
  }

  /** Ops that program the whole VNIC state into a fresh data plane (restart). */
  programAll(): DpOp[] {
    const ops: DpOp[] = [];
    for (const v of this.vaps.values()) ops.push({ op: "tag", port: v.port, tag: v.tag, vn: v.vn });
    for (const [k, owner] of this.macOwner) {
      const r = this.vnics.get(owner)!;
      const [vn, mac] = splitKey(k);
      ops.push({ op: "mac.local", vn, mac, port: r.port, active: r.state === "active" });
    }
    for (const [k, o] of this.ipOwner) {
      const [vn, ip] = splitKey(k);
      ops.push({ op: "ip", vn, ip, mac: o.mac });
    }
    return ops;
  }
}
