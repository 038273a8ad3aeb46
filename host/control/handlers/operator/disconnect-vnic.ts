// vn.disconnect (admin, RFC 8394 Req-6): the NVE disconnects one VNIC from one
// VN and tells its owner (vn.disconnected, PROTOCOL.md §4).
import { ProtocolError } from "../../../protocol/errors.js";
import type { VnRef } from "../../../protocol/types.js";
import type { HandlerCtx } from "../../context.js";
import { isConfigHv } from "../../model.js";

export function disconnectVnic(ctx: HandlerCtx, vnic: string, vnRef: VnRef | number | string, reason: string): void {
  const vn = ctx.catalog.resolve(vnRef).id;
  const r = ctx.tx.edit(vnic)!;
  if (!r.vns.some((b) => b.vn === vn)) throw new ProtocolError("not-connected", `VNIC ${vnic} is not connected to VN ${vn}`, "vn");
  r.vns = r.vns.filter((b) => b.vn !== vn);
  r.vns.length ? ctx.tx.put(r) : ctx.tx.del(vnic);
  if (!isConfigHv(ctx.hv)) ctx.tx.emit(ctx.hv, { event: "vn.disconnected", vnic, vn: ctx.catalog.full(vn), reason });
  ctx.tx.log(`operator: VNIC ${vnic} disconnected from VN ${vn} (${reason})`);
}
