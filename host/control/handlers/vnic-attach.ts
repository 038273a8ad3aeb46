// vnic.attach (PROTOCOL.md §2; seed §3.1 Figure 2): connect + associate + activate
// in one message. `migration:true` marks a hot-migration arrival (Req-13).
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { acquire, associate, connect, connectResult, newVnic, normAddrs, resolveVn } from "../vnic.js";

export function vnicAttach(ctx: HandlerCtx, req: RequestOf<"vnic.attach">): Reply {
  const vn = resolveVn(ctx, req.vn);
  const r = acquire(ctx, req.vnic, { activating: true, migration: req.migration === true, claim: true }) ?? newVnic(ctx, req.vnic, "active");
  r.state = "active";
  connect(ctx, r, vn, req.tag, true);
  associate(ctx, r, vn, normAddrs(req.addrs));
  ctx.tx.put(r);
  return connectResult(ctx, r.port, vn);
}
