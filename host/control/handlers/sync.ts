// sync (PROTOCOL.md §2, §3): the End Device's full state, in chunks; on `final`
// the NVE's state for this {hv} becomes the union of the chunks. Records that
// already match are not rewritten, so unchanged entries cause no data-plane op.
// VNICs departing by migration are left to their hold timer.
import type { RequestOf, SyncVnic } from "../../protocol/types.js";
import type { VnicRecord } from "../../store/store.js";
import { ProtocolError } from "../../protocol/errors.js";
import type { HandlerCtx, Reply, Settings, SyncState } from "../context.js";
import { acquire, associate, connect, newVnic, normAddrs, resolveVn } from "../vnic.js";

function canonical(r: VnicRecord | undefined): string {
  if (!r) return "";
  const vns = [...r.vns].sort((a, b) => a.vn - b.vn).map((b) => ({
    vn: b.vn, addrs: [...b.addrs].sort((x, y) => (x.mac < y.mac ? -1 : 1)).map((a) => ({ mac: a.mac, ips: [...a.ips].sort() })),
  }));
  return JSON.stringify([r.vnic, r.hv, r.port, r.state, r.hold?.until ?? null, vns]);
}

/** How many finished syncs per {hv} keep their answer (a replay of one of them is answered again). */
const FINISHED_KEPT = 4;

export function sync(ctx: HandlerCtx, req: RequestOf<"sync">): Reply {
  const st = ctx.syncs;
  // A chunk repeated for a finished syncId (an agent's retry, a broker's
  // redelivery) is answered as the first time and changes nothing (PROTOCOL.md §2 Authority).
  const fin = st.finished.get(ctx.hv)?.find((f) => f.syncId === req.syncId);
  if (fin) return () => (req.final ? fin.reply : { tags: [] });
  if (st.discarded.get(ctx.hv)?.includes(req.syncId))
    throw new ProtocolError("bad-request", `sync ${req.syncId} was discarded unfinished (limits.maxSyncChunks, limits.maxVnicsPerHv, or no chunk within ${syncHoldMs(ctx.settings)} ms); send the whole state again under a new syncId`, "syncId");
  // Every VN reference must resolve, and be the requester's to use, before anything is kept (the field names the entry).
  const resolved = req.vnics.map((v, i) => v.vns.map((b, j) => resolveVn(ctx, b.vn, `vnics[${i}].vns[${j}].vn`)));
  let acc = st.open.get(ctx.hv);
  if (acc && acc.syncId === req.syncId && ctx.mono - acc.at >= syncHoldMs(ctx.settings)) {
    discard(st, ctx.hv, acc.syncId);
    throw new ProtocolError("bad-request", `sync ${req.syncId} was discarded unfinished after ${syncHoldMs(ctx.settings)} ms; send the whole state again under a new syncId`, "syncId");
  }
  // A chunk of another syncId starts over (the unfinished one is dropped); the final chunk is
  // taken only once its transaction commits (the reply below), so a refused one changes nothing.
  if (!acc || acc.syncId !== req.syncId) acc = { syncId: req.syncId, chunks: [], vnicIds: new Set(), at: ctx.mono };
  if (!req.final && acc.chunks.some((c) => c.id === req.id)) return () => ({ tags: [] }); // the same chunk again: taken once
  const max = ctx.settings.limits;
  if (acc.chunks.length + 1 > max.maxSyncChunks) {
    discard(st, ctx.hv, acc.syncId);
    throw new ProtocolError("limit-exceeded", `sync ${req.syncId} has more than ${max.maxSyncChunks} chunks (limits.maxSyncChunks); it is discarded`, "vnics");
  }
  const added = [...new Set(req.vnics.map((v) => v.vnic))].filter((id) => !acc!.vnicIds.has(id));
  if (acc.vnicIds.size + added.length > max.maxVnicsPerHv) {
    discard(st, ctx.hv, acc.syncId);
    throw new ProtocolError("limit-exceeded", `sync ${req.syncId} names more than ${max.maxVnicsPerHv} VNICs (limits.maxVnicsPerHv); it is discarded`, "vnics");
  }
  const vnics = req.vnics.map((v, i) => ({ ...v, vns: v.vns.map((b, j) => ({ ...b, vn: { id: resolved[i][j] } })) }));
  if (!req.final) {
    for (const id of added) acc.vnicIds.add(id);
    acc.at = ctx.mono;
    acc.chunks.push({ id: req.id, entries: vnics.length, text: JSON.stringify(vnics), added });
    st.open.set(ctx.hv, acc);
    return () => ({ tags: [] });
  }
  const open = acc;

  // Union of the chunks taken in and this final one: per VNIC, per VN, addresses merged; the last state reported wins.
  const desired = new Map<string, { state: SyncVnic["state"]; vns: Map<number, { tag?: number; addrs: { mac: string; ips?: string[] }[] }> }>();
  for (const v of [...open.chunks.flatMap((c) => JSON.parse(c.text) as SyncVnic[]), ...vnics]) {
    let d = desired.get(v.vnic);
    if (!d) desired.set(v.vnic, (d = { state: v.state, vns: new Map() }));
    d.state = v.state;
    for (const b of v.vns) {
      const id = (b.vn as { id: number }).id;
      const e = d.vns.get(id) ?? { addrs: [] };
      if (b.tag !== undefined) e.tag = b.tag;
      e.addrs.push(...b.addrs);
      d.vns.set(id, e);
    }
  }
  const order = new Map<string, number>();
  req.vnics.forEach((v, i) => order.set(v.vnic, i));
  for (const [id, d] of desired) {
    const cur = ctx.tx.peek(id);
    const r = acquire(ctx, id, { activating: d.state === "active", claim: true, field: order.has(id) ? `vnics[${order.get(id)}].vnic` : "vnics" });
    const target: VnicRecord = r
      ? { vnic: id, hv: ctx.hv, port: ctx.port, state: d.state, vns: [] }
      : { ...newVnic(ctx, id, d.state) };
    if (r?.hold && d.state === "associated") target.hold = r.hold;
    for (const [vn, e] of d.vns) {
      connect(ctx, target, vn, e.tag, false);
      associate(ctx, target, vn, normAddrs(e.addrs), "vnics");
    }
    if (target.vns.length === 0) {
      if (cur) ctx.tx.del(id);
      continue;
    }
    if (canonical(target) !== canonical(cur)) ctx.tx.put(target);
  }
  for (const id of ctx.tx.vnicsOf(ctx.hv)) {
    if (desired.has(id)) continue;
    if (ctx.tx.peek(id)?.hold) continue;
    ctx.tx.del(id); // the End Device no longer has it: shutdown (seed §4.4)
  }
  return () => {
    const vns = new Set<number>();
    for (const id of ctx.tx.vnicsOf(ctx.hv)) for (const b of ctx.tx.peek(id)!.vns) vns.add(b.vn);
    const reply = { tags: [...vns].sort((a, b) => a - b).map((vn) => ({ vn: ctx.catalog.full(vn), tag: ctx.tx.vapTag(ctx.port, vn) })) };
    st.open.delete(ctx.hv); // this sync is done, and any older unfinished one is superseded
    const list = st.finished.get(ctx.hv) ?? [];
    list.push({ syncId: req.syncId, reply });
    st.finished.set(ctx.hv, list.slice(-FINISHED_KEPT));
    return reply;
  };
}

/** How long an unfinished sync waits for its next chunk: holdMs (at least a second, holdMs 0 only disables migration holds). */
export function syncHoldMs(s: Pick<Settings, "holdMs">): number {
  return Math.max(s.holdMs, 1000);
}

/** Drops an unfinished sync; its later chunks are refused (PROTOCOL.md §2 Authority: chunk cap, holdMs). */
export function discard(st: SyncState, hv: string, syncId: string): void {
  st.open.delete(hv);
  st.discarded.set(hv, [...(st.discarded.get(hv) ?? []), syncId].slice(-FINISHED_KEPT));
}
