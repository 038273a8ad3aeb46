// vnic.activate (PROTOCOL.md §2; RFC 8394 §3 Associated → Activated; Req-8, Req-13).
// The same VNIC activating on any port within its migration hold takes its
// bindings there with no withdraw (seed §4.3). Without `migration`, another
// End Device's VNIC is unknown-vnic; with it, a claim of one not in its hold is
// not-authorized (PROTOCOL.md §2 Authority).
import { ProtocolError } from "../../protocol/errors.js";
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { acquire } from "../vnic.js";

export function vnicActivate(ctx: HandlerCtx, req: RequestOf<"vnic.activate">): Reply {
  const r = acquire(ctx, req.vnic, { activating: true, migration: req.migration === true, claim: req.migration === true });
  if (!r) throw new ProtocolError("unknown-vnic", `no VNIC ${req.vnic} on this NVE`, "vnic");
  r.state = "active";
  ctx.tx.put(r);
  return () => ({});
}
