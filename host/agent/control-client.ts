// The client side of the agent daemon's control socket (daemon.ts), kept apart
// so the one-shot commands load neither MQTT nor the schemas.
import { requestJsonLine, type Msg } from "../ipc/jsonl-socket.js";

/** One request to a running agent daemon. */
export function daemonRequest(path: string, msg: Msg, timeoutMs = 15_000): Promise<unknown> {
  return requestJsonLine(path, msg, timeoutMs,
    (why) => `cannot reach the agent daemon (${why}); is \`nvedge agent run\` running with --socket ${path}?`);
}
