// sync (PROTOCOL.md §2, §3): the End Device's full state, in chunks; on `final`
// the NVE's state for this {hv} becomes the union of the chunks. Records that
// already match are not rewritten, so unchanged entries cause no data-plane op.
// VNICs departing by migration are left to their hold timer.
import type { RequestOf, SyncVnic } from "../../protocol/types.js";
import type { VnicRecord } from "../../store/store.js";
import type { HandlerCtx, Reply } from "../context.js";
import { acquire, associate, connect, newVnic, normAddrs } from "../vnic.js";

function canonical(r: VnicRecord | undefined): string {
  if (!r) return "";
  const vns = [...r.vns].sort((a, b) => a.vn - b.vn).map((b) => ({
    vn: b.vn, addrs: [...b.addrs].sort((x, y) => (x.mac < y.mac ? -1 : 1)).map((a) => ({ mac: a.mac, ips: [...a.ips].sort() })),
  }));
  return JSON.stringify([r.vnic, r.hv, r.port, r.state, r.hold?.until ?? null, vns]);
}

export function sync(ctx: HandlerCtx, req: RequestOf<"sync">): Reply {
  // Every VN reference must resolve before anything is kept (unknown-vn names the entry).
  const resolved = req.vnics.map((v, i) => v.vns.map((b, j) => ctx.catalog.resolve(b.vn, `vnics[${i}].vns[${j}].vn`).id));
  let acc = ctx.syncs.get(ctx.hv);
  if (!acc || acc.syncId !== req.syncId) ctx.syncs.set(ctx.hv, (acc = { syncId: req.syncId, vnics: [] }));
  acc.vnics.push(...req.vnics.map((v, i) => ({ ...v, vns: v.vns.map((b, j) => ({ ...b, vn: { id: resolved[i][j] } })) })));
  if (!req.final) return () => ({ tags: [] });
  ctx.syncs.delete(ctx.hv);

  // Union of the chunks: per VNIC, per VN, addresses merged; the last state reported wins.
  const desired = new Map<string, { state: SyncVnic["state"]; vns: Map<number, { tag?: number; addrs: { mac: string; ips?: string[] }[] }> }>();
  for (const v of acc.vnics) {
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
  for (const [id, d] of desired) {
    const cur = ctx.tx.peek(id);
    const r = acquire(ctx, id, { activating: d.state === "active" });
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
    return { tags: [...vns].sort((a, b) => a - b).map((vn) => ({ vn: ctx.catalog.full(vn), tag: ctx.tx.vapTag(ctx.port, vn) })) };
  };
}
