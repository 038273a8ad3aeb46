// HOST:PORT of --metrics and --listen, apart from the metrics (prom-client),
// so that checking a flag does not load them (issue 15: start-up time).

/** "HOST:PORT" (an IPv6 host in brackets) as its parts, or undefined. */
export function parseListen(s: string): { host: string; port: number } | undefined {
  const m = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535) return undefined;
  return { host: m[1].replace(/^\[|\]$/g, ""), port: Number(m[2]) };
}
