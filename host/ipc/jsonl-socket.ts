// Local control sockets (the NVE's admin socket, the agent daemon's control
// socket): one JSON request per line on a unix socket, one JSON answer per
// line, `{"ok": true, "result": ...}` or `{"ok": false, "error": {code, message, field?}}`
// as in PROTOCOL.md §2. Mode 0600: only the owner may drive the process. The
// socket is created under umask 177, so it is never reachable by others, not
// even between bind and a chmod (issue 10); where the umask cannot be set (a
// worker thread) the chmod follows at once.
import { createServer, connect, type Server } from "node:net";
import { existsSync, unlinkSync, chmodSync, statSync } from "node:fs";
import { withPrivateUmask, SOCKET_UMASK } from "../store/private.js";

export type Msg = Record<string, unknown>;
export interface WireError { code: string; message: string; field?: string }

export interface ServeOptions {
  path: string;
  /** Said when a live process already serves `path`. */
  inUse: string;
  /** Longest buffered request before the connection is dropped. */
  maxBytes: number;
  handle(m: Msg): Promise<unknown>;
  toError(e: unknown): WireError;
  /** Called after each request is dispatched (e.g. to log it). */
  onRequest?(m: Msg): void;
}

/** A stale socket left by a crashed process is removed; a live one is refused with `inUse`. */
export async function claimSocketPath(path: string, inUse: string): Promise<void> {
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((res) => {
    const s = connect(path, () => { s.destroy(); res(true); });
    s.on("error", () => res(false));
  });
  if (live) throw new Error(`${path}: ${inUse}`);
  unlinkSync(path);
}

/** Serves `path` (claimed first, see claimSocketPath). */
export async function serveJsonLines(o: ServeOptions): Promise<{ close(): Promise<void> }> {
  await claimSocketPath(o.path, o.inUse);
  const server: Server = createServer((sock) => {
    let buf = "";
    sock.setEncoding("utf8");
    sock.on("error", () => {});
    const answer = (r: unknown) => { if (!sock.destroyed) sock.write(JSON.stringify(r) + "\n"); };
    sock.on("data", (d: string) => {
      buf += d;
      if (buf.length > o.maxBytes) return sock.destroy();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let m: Msg;
        try {
          m = JSON.parse(line);
        } catch {
          answer({ ok: false, error: { code: "bad-request", message: "not JSON" } });
          continue;
        }
        o.handle(m).then(
          (result) => answer({ ok: true, result: result ?? null }),
          (e) => answer({ ok: false, error: o.toError(e) }),
        );
        o.onRequest?.(m);
      }
    });
  });
  await new Promise<void>((res, rej) => {
    server.once("error", rej);
    // listen() binds the unix socket synchronously: the umask applies to it alone.
    withPrivateUmask(() => server.listen(o.path, () => res()), SOCKET_UMASK);
  });
  if ((statSync(o.path).mode & 0o077) !== 0) chmodSync(o.path, 0o600);
  return {
    close: () => new Promise<void>((res) => server.close(() => {
      try { unlinkSync(o.path); } catch { /* gone */ }
      res();
    })),
  };
}

/** One request; rejects with the answer's error (its `code` kept) or with `unreachable(errno)`. */
export function requestJsonLine(path: string, msg: Msg, timeoutMs: number, unreachable: (why: string) => string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = "";
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`${path}: no answer within ${timeoutMs} ms`)); }, timeoutMs);
    s.setEncoding("utf8");
    s.on("connect", () => s.write(JSON.stringify(msg) + "\n"));
    s.on("data", (d: string) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      s.end();
      const r = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: WireError };
      if (r.ok) resolve(r.result);
      else reject(Object.assign(new Error(r.error!.message), { code: r.error!.code, field: r.error!.field }));
    });
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`${path}: ${unreachable((e as NodeJS.ErrnoException).code ?? e.message)}`));
    });
  });
}
