// One handler per op (PROTOCOL.md §2), one small module each.
import type { OpName } from "../../protocol/schemas.js";
import type { Request } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { hello } from "./hello.js";
import { vnConnect } from "./vn-connect.js";
import { vnDisconnect } from "./vn-disconnect.js";
import { addrAssociate } from "./addr-associate.js";
import { addrDisassociate } from "./addr-disassociate.js";
import { vnicAttach } from "./vnic-attach.js";
import { vnicActivate } from "./vnic-activate.js";
import { vnicDeactivate } from "./vnic-deactivate.js";
import { vnProfile } from "./vn-profile.js";
import { sync } from "./sync.js";
import { show } from "./show.js";

export const handlers: Record<OpName, (ctx: HandlerCtx, req: never) => Reply> = {
  hello, "vn.connect": vnConnect, "vn.disconnect": vnDisconnect, "addr.associate": addrAssociate,
  "addr.disassociate": addrDisassociate, "vnic.attach": vnicAttach, "vnic.activate": vnicActivate,
  "vnic.deactivate": vnicDeactivate, "vn.profile": vnProfile, sync, show,
};

export function dispatch(ctx: HandlerCtx, req: Request): Reply {
  return handlers[req.op](ctx, req as never);
}
