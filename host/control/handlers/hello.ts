// hello (PROTOCOL.md §2, §3): the first request of a session; the End Device is
// known (its port comes from the NVE's config, Req-2) and alive again.
import type { RequestOf } from "../../protocol/types.js";
import { PROTOCOL_VERSION } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";

export function hello(ctx: HandlerCtx, req: RequestOf<"hello">): Reply {
  const prev = ctx.tx.model.hvs.get(ctx.hv);
  if (!prev || !prev.online) ctx.tx.putHv({ hv: ctx.hv, online: true, since: ctx.now });
  ctx.tx.clearTimer("agent-hold", ctx.hv);
  ctx.tx.log(`hello from ${ctx.hv} (agent "${req.agent}", capabilities ${JSON.stringify(req.capabilities ?? [])}) on port ${ctx.port}`);
  const s = ctx.settings;
  return () => ({ nve: s.nve, bootId: s.bootId, protocol: PROTOCOL_VERSION, holdMs: s.holdMs, maxPayload: s.maxPayload });
}
