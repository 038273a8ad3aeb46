// vn.remove (admin): every VNIC is disconnected from the VN (containment, seed
// §3.1) and told (vn.disconnected, PROTOCOL.md §4), then the VN leaves the data
// plane. Returns how many VNICs were disconnected.
import type { HandlerCtx } from "../../context.js";
import { isConfigHv } from "../../model.js";

export function removeVn(ctx: HandlerCtx, vn: number, reason: string): number {
  let n = 0;
  for (const [id, rec] of ctx.tx.model.vnics) {
    if (!rec.vns.some((b) => b.vn === vn)) continue;
    const r = ctx.tx.edit(id)!;
    r.vns = r.vns.filter((b) => b.vn !== vn);
    r.vns.length ? ctx.tx.put(r) : ctx.tx.del(id);
    if (!isConfigHv(r.hv)) ctx.tx.emit(r.hv, { event: "vn.disconnected", vnic: id, vn: ctx.catalog.full(vn), reason });
    n++;
  }
  ctx.tx.setVn(vn, undefined); // vn.del once the VNICs are gone, and out of the catalog
  ctx.tx.log(`operator: VN ${vn} removed, ${n} VNICs disconnected`);
  return n;
}
