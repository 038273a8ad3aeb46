// The client side of the agent daemon's control socket (daemon.ts), kept apart
// so the one-shot commands load neither MQTT nor the schemas.
import { connect } from "node:net";

type Msg = Record<string, unknown>;

/** One request to a running agent daemon. */
export function daemonRequest(path: string, msg: Msg, timeoutMs = 15_000): Promise<unknown> {
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
      const r = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: { code: string; message: string } };
      if (r.ok) resolve(r.result);
      else reject(Object.assign(new Error(r.error!.message), { code: r.error!.code }));
    });
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`${path}: cannot reach the agent daemon (${(e as NodeJS.ErrnoException).code ?? e.message}); is \`nvedge agent run\` running with --socket ${path}?`));
    });
  });
}
