// Glue between the NVE service's state (host/control: Model, Txn) and the IMA
// client (client.ts): what the client's desired state is, read from the Model.
// Kept here so host/control only calls three functions around its commit:
//
//   const keys = bindingKeys(tx.vnicChanges, model.vnics);   // before f.commit()
//   f.commit();
//   ima.setServed(servedVnsOf(model));
//   ima.applyLocal(localChangesFor(keys, model));
import type { VnicRecord } from "../store/store.js";
import type { LocalBinding, LocalChange } from "./client.js";

/** The part of host/control's Model these functions read. */
export interface ModelView {
  vnics: ReadonlyMap<string, VnicRecord>;
  vaps: ReadonlyMap<string, { port: string; vn: number; tag: number }>;
  macOwner: ReadonlyMap<string, string>;
}

/** Every (VN, MAC) a transaction touches, from the records before and after it. Call before commit(). */
export function bindingKeys(changes: ReadonlyMap<string, VnicRecord | null>, pre: ReadonlyMap<string, VnicRecord>): Set<string> {
  const keys = new Set<string>();
  const add = (r: VnicRecord | null | undefined) => {
    if (r) for (const b of r.vns) for (const a of b.addrs) keys.add(`${b.vn}|${a.mac}`);
  };
  for (const [id, post] of changes) {
    add(pre.get(id));
    add(post);
  }
  return keys;
}

function bindingOf(m: ModelView, vn: number, mac: string): LocalBinding | undefined {
  const owner = m.macOwner.get(`${vn}|${mac}`);
  const r = owner === undefined ? undefined : m.vnics.get(owner);
  const a = r?.vns.find((b) => b.vn === vn)?.addrs.find((x) => x.mac === mac);
  if (!r || !a) return undefined;
  return { vn, mac, ips: [...a.ips], port: r.port, active: r.state === "active" };
}

/** The committed state of the touched keys, as the client's changes. Call after commit(). */
export function localChangesFor(keys: Iterable<string>, m: ModelView): LocalChange[] {
  const out: LocalChange[] = [];
  for (const k of keys) {
    const i = k.indexOf("|");
    const vn = Number(k.slice(0, i)), mac = k.slice(i + 1);
    out.push(bindingOf(m, vn, mac) ?? { vn, mac, gone: true });
  }
  return out;
}

/** Every local binding (the client's `local` at start, after the store is restored). */
export function localBindingsOf(m: ModelView): LocalBinding[] {
  const out: LocalBinding[] = [];
  for (const k of m.macOwner.keys()) {
    const i = k.indexOf("|");
    const b = bindingOf(m, Number(k.slice(0, i)), k.slice(i + 1));
    if (b) out.push(b);
  }
  return out;
}

/** The VNs with at least one Connected VAP (RFC 8394 §3): the flood lists the NVE is on. */
export function servedVnsOf(m: ModelView): Set<number> {
  return new Set([...m.vaps.values()].map((v) => v.vn));
}

/**
 * The VN references of an agent request (PROTOCOL.md §2), so the NVE can
 * resolve the ones its catalog lacks through the IMA (client.resolve) before
 * the request's transaction, whose handlers resolve synchronously.
 */
export function vnRefsOf(req: { op: string; vn?: unknown; vnics?: { vns?: { vn?: unknown }[] }[] }): unknown[] {
  if (req.op === "sync") return (req.vnics ?? []).flatMap((v) => (v.vns ?? []).map((b) => b.vn)).filter((x) => x !== undefined);
  return req.vn !== undefined ? [req.vn] : [];
}
