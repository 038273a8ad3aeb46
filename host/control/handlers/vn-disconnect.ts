// vn.disconnect (PROTOCOL.md §2; Req-5): containment (seed §3.1) removes every
// address of the VNIC in the VN; a VNIC left with no VN returns to Init (RFC 8394 §3).
// Idempotent: disconnecting what is not connected succeeds and changes nothing;
// another End Device's VNIC is answered as an unknown one (PROTOCOL.md §2 Authority).
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { acquire, resolveVn } from "../vnic.js";

export function vnDisconnect(ctx: HandlerCtx, req: RequestOf<"vn.disconnect">): Reply {
  const vn = resolveVn(ctx, req.vn);
  const r = acquire(ctx, req.vnic, { activating: false });
  if (r && r.vns.some((b) => b.vn === vn)) {
    r.vns = r.vns.filter((b) => b.vn !== vn);
    if (r.vns.length === 0) {
      ctx.tx.del(r.vnic);
      ctx.tx.clearTimer("migration-hold", r.vnic);
    } else ctx.tx.put(r);
  }
  return () => ({});
}
