// vnic.deactivate (PROTOCOL.md §2; RFC 8394 §3; Req-8; seed §4.4):
// shutdown → Init (purge now); suspend → Associated, bindings kept;
// migration → Associated and held for holdMs, then purged unless it reappears.
import { ProtocolError } from "../../protocol/errors.js";
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { owned } from "../vnic.js";

export function vnicDeactivate(ctx: HandlerCtx, req: RequestOf<"vnic.deactivate">): Reply {
  const cur = ctx.tx.peek(req.vnic);
  if (req.reason === "shutdown") {
    if (cur) {
      owned(ctx, req.vnic); // authorization
      ctx.tx.del(req.vnic);
      ctx.tx.clearTimer("migration-hold", req.vnic);
    }
    return () => ({}); // idempotent: a VNIC already shut down stays so
  }
  if (!cur) throw new ProtocolError("unknown-vnic", `no VNIC ${req.vnic} on this NVE`, "vnic");
  // The source of a migration may report it after the destination already took the
  // VNIC over (PROTOCOL.md §2): nothing is left to do here.
  if (req.reason === "migration" && cur.hv !== ctx.hv && !cur.hold) return () => ({});
  const r = owned(ctx, req.vnic);
  r.state = "associated";
  if (req.reason === "migration") {
    if (ctx.settings.holdMs === 0) {
      ctx.tx.del(r.vnic);
      return () => ({});
    }
    if (!r.hold) {
      r.hold = { until: ctx.now + ctx.settings.holdMs };
      ctx.tx.setTimer("migration-hold", r.vnic, r.hold.until);
    }
  } else if (r.hold) {
    delete r.hold;
    ctx.tx.clearTimer("migration-hold", r.vnic);
  }
  ctx.tx.put(r);
  return () => ({});
}
