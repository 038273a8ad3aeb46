// vnic.deactivate (PROTOCOL.md §2; RFC 8394 §3; Req-8; seed §4.4):
// shutdown → Init (purge now); suspend → Associated, bindings kept;
// migration → Associated and held for holdMs, then purged unless it reappears.
// A VNIC that is not the requester's own (unknown, or another End Device's) is
// answered alike, so the answer reveals nothing of other End Devices' VNICs
// (PROTOCOL.md §2 Authority): shutdown and migration succeed and change nothing
// (idempotent: the VNIC is already gone from here, e.g. a source reporting its
// side after the destination took the VNIC over), suspend is unknown-vnic.
import { ProtocolError } from "../../protocol/errors.js";
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { acquire } from "../vnic.js";

export function vnicDeactivate(ctx: HandlerCtx, req: RequestOf<"vnic.deactivate">): Reply {
  const r = acquire(ctx, req.vnic, { activating: false });
  if (!r) {
    if (req.reason === "suspend") throw new ProtocolError("unknown-vnic", `no VNIC ${req.vnic} on this NVE`, "vnic");
    return () => ({});
  }
  if (req.reason === "shutdown") {
    ctx.tx.del(req.vnic);
    ctx.tx.clearTimer("migration-hold", req.vnic);
    return () => ({});
  }
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
