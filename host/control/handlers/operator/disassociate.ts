// addr.disassociate (admin, RFC 8394 Req-9): the NVE de-associates addresses of
// a VNIC and tells its owner (addr.disassociated, PROTOCOL.md §4).
import { ProtocolError } from "../../../protocol/errors.js";
import type { Addr, VnRef } from "../../../protocol/types.js";
import { normIp, normMac } from "../../../domain/addr-text.js";
import type { HandlerCtx } from "../../context.js";
import { isConfigHv } from "../../model.js";

export function disassociate(ctx: HandlerCtx, vnic: string, vnRef: VnRef | number | string, addrs: Addr[], reason: string): void {
  const vn = ctx.catalog.resolve(vnRef).id;
  const r = ctx.tx.edit(vnic)!;
  const b = r.vns.find((x) => x.vn === vn);
  if (!b) throw new ProtocolError("not-connected", `VNIC ${vnic} is not connected to VN ${vn}`, "vn");
  const removed: Addr[] = [];
  for (const a of addrs) {
    const mac = normMac(a.mac);
    const e = b.addrs.find((x) => x.mac === mac);
    if (!e) continue;
    if (!a.ips?.length) {
      b.addrs = b.addrs.filter((x) => x !== e);
      removed.push({ mac, ips: e.ips });
    } else {
      const drop = new Set(a.ips.map(normIp));
      removed.push({ mac, ips: e.ips.filter((ip) => drop.has(ip)) });
      e.ips = e.ips.filter((ip) => !drop.has(ip));
    }
  }
  ctx.tx.put(r);
  if (!isConfigHv(ctx.hv) && removed.length) ctx.tx.emit(ctx.hv, { event: "addr.disassociated", vnic, vn: ctx.catalog.full(vn), addrs: removed, reason });
  ctx.tx.log(`operator: VNIC ${vnic} VN ${vn}: ${removed.length} addresses de-associated (${reason})`);
}
