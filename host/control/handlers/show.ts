// show (PROTOCOL.md §2): the NVE's view of the requester, in the shape of sync.
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { viewVnic } from "../vnic.js";

export function show(ctx: HandlerCtx, _req: RequestOf<"show">): Reply {
  const view = { catalog: ctx.catalog, tagOf: (p: string, vn: number) => ctx.tx.vapTag(p, vn) };
  return () => ({
    port: ctx.port,
    vnics: ctx.tx.vnicsOf(ctx.hv).sort().map((id) => viewVnic(view, ctx.tx.peek(id)!)),
  });
}
