// show (PROTOCOL.md §2): the NVE's view of the requester, in the shape of sync,
// one page at a time. A reply never exceeds maxPayload: while more VNICs remain
// it carries `next`, the `cursor` of the following page (VNIC names in order).
import { ProtocolError } from "../../protocol/errors.js";
import type { RequestOf } from "../../protocol/types.js";
import type { HandlerCtx, Reply } from "../context.js";
import { viewVnic } from "../vnic.js";

/** Room kept in a reply for its envelope: id (64), ok, port (15), next (a uuid), JSON punctuation. */
const ENVELOPE = 256;

export function show(ctx: HandlerCtx, req: RequestOf<"show">): Reply {
  const view = { catalog: ctx.catalog, tagOf: (p: string, vn: number) => ctx.tx.vapTag(p, vn) };
  const ids = ctx.tx.vnicsOf(ctx.hv).sort();
  let i = 0;
  if (req.cursor !== undefined) while (i < ids.length && ids[i] < req.cursor) i++;
  const limit = req.limit ?? Number.MAX_SAFE_INTEGER;
  const budget = ctx.settings.maxPayload - ENVELOPE;
  const vnics: Record<string, unknown>[] = [];
  let size = 2; // the array's brackets
  for (; i < ids.length && vnics.length < limit; i++) {
    const v = viewVnic(view, ctx.tx.peek(ids[i])!);
    const n = Buffer.byteLength(JSON.stringify(v)) + 1;
    if (size + n > budget) {
      if (vnics.length === 0)
        throw new ProtocolError("limit-exceeded", `the view of VNIC ${ids[i]} alone (${n} bytes) exceeds maxPayload (${ctx.settings.maxPayload})`, "cursor");
      break;
    }
    vnics.push(v);
    size += n;
  }
  const next = i < ids.length ? ids[i] : undefined;
  return () => ({ port: ctx.port, vnics, ...(next !== undefined ? { next } : {}) });
}
