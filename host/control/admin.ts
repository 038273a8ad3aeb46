// The NVE's local admin API: a unix socket (default `<store dir>/nvedge.sock`)
// speaking JSON lines, one request → one response. `nvedge show` reads views
// through it; operators use it for the NVE-initiated changes of RFC 8394 Req-6
// and Req-9 (PROTOCOL.md §4 events are sent to the End Devices concerned):
//   {"cmd":"show","what":"bindings"|"vns"|"ports"|"counters"|"hv","hv"?: ID}
//   {"cmd":"vnic.remove","vnic":UUID,"reason"?:TEXT}
//   {"cmd":"vn.disconnect","vnic":UUID,"vn":REF,"reason"?:TEXT}
//   {"cmd":"addr.disassociate","vnic":UUID,"vn":REF,"addrs":[{mac,ips?}],"reason"?:TEXT}
//   {"cmd":"vn.remove","vn":REF}     {"cmd":"vn.set-profile","vn":REF,"profile":{...}}     {"cmd":"drain"}
//   {"cmd":"trace","port":NAME,"frame":HEX}   one frame through the running data plane (its decisions, outputs as hex)
// Answers: {"ok":true,"result":…} or {"ok":false,"error":{"code","message"}}.
// The socket is created mode 0600: only the NVE's own user may use it.
import { serveJsonLines, requestJsonLine, type Msg } from "../ipc/jsonl-socket.js";
import { ProtocolError } from "../protocol/errors.js";
import type { NveCore } from "./core.js";

export interface AdminOptions {
  path: string;
  core: NveCore;
  counters?: () => unknown | Promise<unknown>;
  /** One frame through the running data plane (like `nvedge trace`, but on the live tables). */
  trace?: (port: string, frame: Uint8Array) => unknown;
  log?: (l: string) => void;
  /** More commands (host/cli/admin-extras.ts: log-level, reload, counters.clear, capture, summary views). */
  extra?: Record<string, (m: Msg) => Promise<unknown> | unknown>;
}


async function handle(o: AdminOptions, m: Msg): Promise<unknown> {
  const c = o.core;
  const str = (k: string) => {
    if (typeof m[k] !== "string") throw new ProtocolError("bad-request", `"${k}" must be a string`, k);
    return m[k] as string;
  };
  const reason = typeof m.reason === "string" ? m.reason : undefined;
  switch (m.cmd) {
    case "show":
      switch (m.what) {
        case "bindings": return c.bindings();
        case "vns": return c.vns();
        case "ports": return c.ports();
        case "hv": return c.viewHv(str("hv"));
        case "counters":
          if (!o.counters) throw new ProtocolError("bad-request", "this NVE runs without a data plane that keeps counters");
          return await o.counters();
        default:
          if (typeof m.what === "string" && o.extra && Object.hasOwn(o.extra, `show.${m.what}`)) return await o.extra[`show.${m.what}`](m);
          throw new ProtocolError("bad-request", `show: unknown view ${JSON.stringify(m.what)} (bindings, vns, ports, counters, hv)`, "what");
      }
    case "vnic.remove": return c.removeVnic(str("vnic"), reason);
    case "vn.disconnect": return c.disconnectVnic(str("vnic"), m.vn as never, reason);
    case "addr.disassociate":
      if (!Array.isArray(m.addrs)) throw new ProtocolError("bad-request", '"addrs" must be an array', "addrs");
      return c.disassociate(str("vnic"), m.vn as never, m.addrs as never, reason);
    case "vn.remove": return c.removeVn(m.vn as never, reason);
    case "vn.set-profile": return c.setProfile(m.vn as never, m.profile as never);
    case "drain": return c.drain();
    case "trace": {
      if (!o.trace) throw new ProtocolError("bad-request", "this NVE's data plane cannot trace frames (--io afpacket)");
      const hex = str("frame");
      if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new ProtocolError("bad-request", `"frame" must be hex bytes`, "frame");
      return await o.trace(str("port"), Buffer.from(hex, "hex"));
    }
    default:
      if (typeof m.cmd === "string" && o.extra && Object.hasOwn(o.extra, m.cmd)) return await o.extra[m.cmd](m);
      throw new ProtocolError("unknown-op", `unknown admin command ${JSON.stringify(m.cmd)}`, "cmd");
  }
}

export async function startAdmin(o: AdminOptions): Promise<{ path: string; close(): Promise<void> }> {
  const srv = await serveJsonLines({
    path: o.path,
    // a live socket means another NVE uses this store
    inUse: "another NVE is already serving this admin socket",
    maxBytes: 1 << 20,
    handle: (m) => handle(o, m),
    toError: (e) => e instanceof ProtocolError ? e.toWire() : { code: "internal", message: (e as Error).message },
    onRequest: (m) => { if (m.cmd !== "show") o.log?.(`admin: ${JSON.stringify(m)}`); },
  });
  return { path: o.path, close: srv.close };
}

/** One admin request (used by `nvedge show` and tests). */
export function adminRequest(path: string, msg: Msg, timeoutMs = 10_000): Promise<unknown> {
  return requestJsonLine(path, msg, timeoutMs,
    (why) => `cannot reach the NVE's admin socket (${why}); is \`nvedge run\` running with this store?`);
}
