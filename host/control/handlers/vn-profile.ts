// vn.profile (PROTOCOL.md §2, §5; seed §4.5).
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";

export function vnProfile(ctx: HandlerCtx, req: RequestOf<"vn.profile">): Reply {
  const v = ctx.catalog.resolve(req.vn);
  ctx.authorize(v, "vn");
  return () => ({ vn: ctx.catalog.full(v.id), vni: v.vni, mtu: v.profile.mtu, profile: v.profile });
}
