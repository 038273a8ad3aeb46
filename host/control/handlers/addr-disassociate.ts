// addr.disassociate (PROTOCOL.md §2; Req-8, Req-10): a MAC without IPs removes
// the MAC and all its IPs (containment, seed §3.1); with IPs, only those.
import { ProtocolError } from "../../protocol/errors.js";
import { normIp, normMac } from "../../domain/addr-text.js";
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { owned, resolveVn } from "../vnic.js";

export function addrDisassociate(ctx: HandlerCtx, req: RequestOf<"addr.disassociate">): Reply {
  const vn = resolveVn(ctx, req.vn);
  const r = owned(ctx, req.vnic);
  const b = r.vns.find((x) => x.vn === vn);
  if (!b) throw new ProtocolError("not-connected", `VNIC ${r.vnic} is not connected to VN ${vn}`, "vn");
  for (const a of req.addrs) {
    const mac = normMac(a.mac);
    if (!a.ips || a.ips.length === 0) b.addrs = b.addrs.filter((x) => x.mac !== mac);
    else {
      const drop = new Set(a.ips.map(normIp));
      const e = b.addrs.find((x) => x.mac === mac);
      if (e) e.ips = e.ips.filter((ip) => !drop.has(ip));
    }
  }
  ctx.tx.put(r);
  return () => ({});
}
