// The IMA cache in the NVE's store (issue 4: "the VN catalog and the remote
// bindings learned from the IMA, kept as a cache so the data plane forwards
// before the IMA answers"). The IMA client writes what it learns from
// PROTOCOL.md §6 (`ima/vn/{id}`, `ima/vtep/{id}/{nve}`, `ima/bind/{id}/{mac}`)
// with the cache* functions inside a store transaction; at start, before the
// broker is reached, cachedOps() turns the cache into data plane ops and
// cachedVns() into catalog entries, so remote destinations and flood lists work
// from the first frame. The IMA's answers later replace the cache (a record the
// IMA no longer has is withdrawn like any withdrawal).
//
// Read side: NveCore.open (host/control/core.ts) programs cachedOps() with the
// static config and the stored VNICs, and adds cachedVns() to its catalog.
// Write side: host/ima-client/cache-writer.ts (started by host/ima-client/wire.ts with the
// IMA client) calls the cache* functions in a store transaction for what the
// client learns.
import type { NveConfig, VnConfig } from "../config/types.js";
import type { DpOp } from "../dataplane/ops.js";
import { keys, type RemoteRecord, type StoreReader, type StoreWriter, type VnRecord, type VtepRecord } from "../store/store.js";

export function cacheVn(tx: StoreWriter, v: VnRecord): void {
  tx.put("vns", String(v.id), v);
}

/** A VN the IMA deleted: its cached flood list and bindings go with it (containment, seed §3.1). */
export function uncacheVn(tx: StoreWriter, id: number): void {
  tx.del("vns", String(id));
  for (const [k] of tx.list("vteps", `${id}|`)) tx.del("vteps", k);
  for (const [k] of tx.list("remotes", `${id}|`)) tx.del("remotes", k);
}

export function cacheVtep(tx: StoreWriter, t: VtepRecord): void {
  tx.put("vteps", keys.vtep(t.vn, t.nve), t);
}

export function uncacheVtep(tx: StoreWriter, vn: number, nve: string): void {
  tx.del("vteps", keys.vtep(vn, nve));
}

export function cacheRemote(tx: StoreWriter, r: RemoteRecord): void {
  tx.put("remotes", keys.remote(r.vn, r.mac), r);
}

export function uncacheRemote(tx: StoreWriter, vn: number, mac: string): void {
  tx.del("remotes", keys.remote(vn, mac));
}

/** Cached VNs, as catalog entries (for VNs the configuration file does not define). */
export function cachedVns(store: StoreReader): VnConfig[] {
  return store.list("vns").map(([, v]) => ({ ...v }));
}

/**
 * The data plane ops of the cache: `vn` for cached VNs the configuration does not
 * define (the file wins), then flood-list joins and remote bindings, skipping
 * remotes of our own underlay IP (our own announcements echoed back).
 */
export function cachedOps(store: StoreReader, cfg: NveConfig): DpOp[] {
  const ops: DpOp[] = [];
  const configured = new Set(cfg.vns.map((v) => v.id));
  const known = new Set(configured);
  for (const [, v] of store.list("vns")) {
    known.add(v.id);
    if (!configured.has(v.id)) ops.push({ op: "vn", vn: v.id, vni: v.vni, profile: v.profile });
  }
  const self = cfg.underlay.ip;
  for (const [, t] of store.list("vteps")) if (known.has(t.vn) && t.ip !== self) ops.push({ op: "flood.join", vn: t.vn, nve: t.ip });
  for (const [, r] of store.list("remotes")) {
    if (!known.has(r.vn) || r.ip === self) continue;
    ops.push({ op: "mac.remote", vn: r.vn, mac: r.mac, nve: r.ip });
    for (const ip of r.ips) ops.push({ op: "ip", vn: r.vn, ip, mac: r.mac });
  }
  return ops;
}
