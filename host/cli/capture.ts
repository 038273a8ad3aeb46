// `nvedge capture --drops [--reason R] [--count N] -w FILE` (issue 13): the
// next N frames that the running NVE's data plane drops (of reason R, or any),
// written as pcapng with the drop reason as each packet's comment (tshark
// shows it as frame.comment / pkt_comment), each on an interface named after
// the port it came in on. Needs packet I/O (--io afpacket).
import { writeFileSync } from "node:fs";
import { UsageError, parseOpts, required } from "./args.js";
import { SOCKET_HELP, SOCKET_OPTS, ask } from "./admin-cmds.js";
import { encodePcapng } from "../pcap/pcapng.js";
import { matchOf, MATCH_HELP, MATCH_OPTS } from "./trace.js";

const HELP = `usage: nvedge capture --drops [--reason R] [--count N] [--timeout S] -w FILE [match] [--socket PATH | --store DIR]

Writes the next N frames (default 100) that the running NVE drops, or what
came within S seconds (default 10), to FILE as pcapng: each packet's comment
is its drop reason (assembly/drops.ts), its interface the port it came in on.
  --reason R          only drops of reason R (e.g. unknown-vid, spoofed-mac)
${MATCH_HELP}
${SOCKET_HELP}`;

export async function captureCommand(argv: string[]): Promise<number> {
  const p = parseOpts(argv, { drops: { type: "boolean" }, reason: { type: "string" }, count: { type: "string" }, timeout: { type: "string" },
    write: { type: "string", short: "w" }, ...MATCH_OPTS, ...SOCKET_OPTS }, HELP);
  if (!p) return 0;
  const v = p.values;
  if (!v.drops) throw new UsageError(`missing --drops (the only capture there is: dropped frames)\n${HELP}`);
  const file = required(v.write, "-w FILE", HELP);
  const count = v.count === undefined ? 100 : Number(v.count);
  if (!Number.isInteger(count) || count < 1 || count > 100_000) throw new UsageError(`--count ${v.count}: an integer 1..100000`);
  const timeout = v.timeout === undefined ? 10 : Number(v.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 3600) throw new UsageError(`--timeout ${v.timeout}: seconds, more than 0 and at most 3600`);
  if (v.reason !== undefined && !/^[a-z0-9-]{1,40}$/.test(v.reason)) throw new UsageError(`--reason ${v.reason}: a drop reason name (as in nvedge show counters)`);
  const match = matchOf(v);
  const frames = await ask(v, { cmd: "capture", kind: "drops", count, timeoutMs: Math.round(timeout * 1000), match, ...(v.reason ? { reason: v.reason } : {}) },
    Math.round(timeout * 1000) + 10_000) as { port: string; frame: string; ts: number; drop: string }[];
  writeFileSync(file, encodePcapng(frames.map((f) => {
    const frame = Buffer.from(f.frame, "hex");
    return { iface: f.port, frame, origLen: frame.length, tsSec: Math.floor(f.ts / 1000), tsUsec: (f.ts % 1000) * 1000, comment: f.drop };
  }), { app: "nvedge capture --drops" }));
  const by = new Map<string, number>();
  for (const f of frames) by.set(f.drop, (by.get(f.drop) ?? 0) + 1);
  console.log(`${frames.length} dropped frames written to ${file}${by.size ? ` (${[...by].map(([r, n]) => `${r} ${n}`).join(", ")})` : ""}`);
  return 0;
}
