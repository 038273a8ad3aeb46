// A loopback-to-unix-socket relay for the lab: each namespace has its own
// loopback, so an NVE or agent in `nvl-nve-a` cannot reach a broker on the
// root namespace's 127.0.0.1. `nvedge lab demo` runs one relay per namespace:
// it listens on 127.0.0.1:PORT inside the namespace and forwards every
// connection to a unix socket (a path in the file system, which every
// namespace sees) where the demo forwards it on to the broker. Traffic stays
// on loopback and unix sockets (STANDARDS: no other address is used).
//
//   node dist/host/lab/relay.js LISTEN_HOST LISTEN_PORT UNIX_PATH
import { createServer, connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { inBundle } from "../paths.js";

export function pipeBoth(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  const close = () => { a.destroy(); b.destroy(); };
  a.on("error", close).on("close", close);
  b.on("error", close).on("close", close);
}

export function startRelay(host: string, port: number, unixPath: string): Promise<() => void> {
  const server = createServer((c) => pipeBoth(c, connect(unixPath)));
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(() => server.close()));
  });
}

// (never in a firmware bundle, where this module shares the CLI bundle's file)
if (!inBundle && process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [host, port, path] = process.argv.slice(2);
  if (!host || !port || !path || !Number.isInteger(Number(port))) {
    console.error("usage: relay.js LISTEN_HOST LISTEN_PORT UNIX_PATH");
    process.exit(2);
  }
  startRelay(host, Number(port), path).then(
    (stop) => {
      console.log("relay ready");
      for (const s of ["SIGTERM", "SIGINT"] as const) process.on(s, () => { stop(); process.exit(0); });
    },
    (e) => { console.error(`relay: cannot listen on ${host}:${port}: ${(e as Error).message}`); process.exit(1); },
  );
}
