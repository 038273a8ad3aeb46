// vn.connect (PROTOCOL.md §2; RFC 8394 Req-5, Req-7): VNIC ↔ VN, a tag per (port, VN).
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { acquire, connect, connectResult, newVnic, resolveVn } from "../vnic.js";

export function vnConnect(ctx: HandlerCtx, req: RequestOf<"vn.connect">): Reply {
  const vn = resolveVn(ctx, req.vn);
  const activate = req.activate !== false;
  const r = acquire(ctx, req.vnic, { activating: activate, claim: true }) ?? newVnic(ctx, req.vnic, activate ? "active" : "associated");
  // activate:false pre-associates a new VNIC; it never deactivates one that already flows.
  if (activate) r.state = "active";
  else if (r.hold) {
    // A VNIC held since it migrated away is pre-associated here again (the VM
    // comes back, issue 15): the agent wants it, so the hold no longer purges it.
    delete r.hold;
    ctx.tx.clearTimer("migration-hold", r.vnic);
  }
  connect(ctx, r, vn, req.tag, true);
  ctx.tx.put(r);
  return connectResult(ctx, r.port, vn);
}
