// addr.associate (PROTOCOL.md §2; Req-8, Req-10): union with what is there.
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { associate, normAddrs, owned, resolveVn } from "../vnic.js";

export function addrAssociate(ctx: HandlerCtx, req: RequestOf<"addr.associate">): Reply {
  const vn = resolveVn(ctx, req.vn);
  const r = owned(ctx, req.vnic);
  associate(ctx, r, vn, normAddrs(req.addrs));
  ctx.tx.put(r);
  return () => ({});
}
