// vnic.remove (admin, RFC 8394 Req-6): an operator removes a VNIC; every VN is
// disconnected and the owner told (vn.disconnected, PROTOCOL.md §4).
import type { HandlerCtx } from "../../context.js";
import { isConfigHv } from "../../model.js";

export function removeVnic(ctx: HandlerCtx, vnic: string, reason: string): void {
  const r = ctx.tx.peek(vnic)!;
  for (const b of r.vns) if (!isConfigHv(ctx.hv)) ctx.tx.emit(ctx.hv, { event: "vn.disconnected", vnic, vn: ctx.catalog.full(b.vn), reason });
  ctx.tx.del(vnic);
  ctx.tx.clearTimer("migration-hold", vnic);
  ctx.tx.log(`operator: VNIC ${vnic} removed (${reason})`);
}
