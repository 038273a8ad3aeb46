// nvedge trace --config FILE --port PORT --frame HEX
// One frame through the pipeline of FILE's static state; prints each decision.
// nvedge trace --live [--port P] [--count N] [match]: the next N frames of the
// running NVE (packet I/O), each with its decisions (issue 13).
import { parseOpts, required, UsageError } from "./args.js";
import { buildOfflineDataPlane } from "./pcap.js";
import { SOCKET_HELP, SOCKET_OPTS, ask } from "./admin-cmds.js";

const HELP = `usage: nvedge trace --config FILE --port PORT --frame HEX [--json]
       nvedge trace --port PORT --frame HEX [--json] [--socket PATH | --store DIR]
       nvedge trace --live [--port PORT] [--count N] [--timeout S] [match] [--json] [--socket PATH | --store DIR]

Sends one frame (hex, spaces and colons allowed) into PORT of a data plane
built from FILE's static state and prints each decision: the VN, the
lookups, the action, the outputs (as hex) or the drop reason. Without
--config, the frame goes through the running NVE's tables (static and learned
state alike); its outputs are shown, not sent.

With --live, traces the next N frames (default 10; within S seconds, default
10) that the running NVE receives, on PORT or any port, with their decisions;
they are forwarded as usual. Needs packet I/O (nvedge run --io afpacket).
${"$"}{MATCH}
${SOCKET_HELP}`;

export const MATCH_OPTS = { port: { type: "string" }, mac: { type: "string" }, vn: { type: "string" }, ethertype: { type: "string" } } as const;
export const MATCH_HELP = `  match: --port PORT (where it came in), --mac MAC (source or destination),
         --vn ID (the VN the data plane put it in), --ethertype 0xNNNN (after the 802.1Q tag)`;

/** The filter of --port, --mac, --vn, --ethertype (UsageError for a bad one). */
export function matchOf(v: { port?: string; mac?: string; vn?: string; ethertype?: string }): Record<string, unknown> {
  const m: Record<string, unknown> = {};
  if (v.port !== undefined) m.port = v.port;
  if (v.mac !== undefined) {
    if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(v.mac)) throw new UsageError(`--mac ${v.mac}: not a MAC (xx:xx:xx:xx:xx:xx)`);
    m.mac = v.mac.toLowerCase();
  }
  if (v.vn !== undefined) {
    if (!/^\d+$/.test(v.vn) || Number(v.vn) < 1 || Number(v.vn) > 16777215) throw new UsageError(`--vn ${v.vn}: a VN id 1..16777215`);
    m.vn = Number(v.vn);
  }
  if (v.ethertype !== undefined) {
    const n = /^0x[0-9a-fA-F]{1,4}$/.test(v.ethertype) ? parseInt(v.ethertype, 16) : /^\d+$/.test(v.ethertype) ? Number(v.ethertype) : NaN;
    if (!Number.isInteger(n) || n < 0 || n > 0xffff) throw new UsageError(`--ethertype ${v.ethertype}: 0x0000..0xffff`);
    m.ethertype = n;
  }
  return m;
}

const help = HELP.replace("${MATCH}", MATCH_HELP);

async function live(v: Record<string, string | boolean | undefined>): Promise<number> {
  if (v.config !== undefined || v.frame !== undefined) throw new UsageError(`--live traces the running NVE: --config and --frame are for one frame offline\n${help}`);
  const count = v.count === undefined ? 10 : Number(v.count);
  if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new UsageError(`--count ${v.count}: an integer 1..10000`);
  const timeout = v.timeout === undefined ? 10 : Number(v.timeout);
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 3600) throw new UsageError(`--timeout ${v.timeout}: seconds, more than 0 and at most 3600`);
  const match = matchOf(v as Parameters<typeof matchOf>[0]);
  const frames = await ask(v as { socket?: string; store?: string }, { cmd: "capture", kind: "trace", count, timeoutMs: Math.round(timeout * 1000), match },
    Math.round(timeout * 1000) + 10_000) as { port: string; frame: string; ts: number; drop?: string; steps: string[]; outputs: { port: string; frame: string }[] }[];
  if (v.json) {
    for (const f of frames) console.log(JSON.stringify(f));
    return 0;
  }
  for (const f of frames) {
    console.log(`${new Date(f.ts).toISOString()} ${f.port}: ${f.frame}`);
    for (const s of f.steps) console.log(`  ${s}`);
    for (const o of f.outputs) console.log(`    ${o.port}: ${o.frame}`);
  }
  if (frames.length < count) console.log(`(${frames.length} of ${count} frames within ${timeout} s)`);
  return 0;
}

export async function traceCommand(argv: string[]): Promise<number> {
  const a = parseOpts(argv, { config: { type: "string" }, frame: { type: "string" }, json: { type: "boolean" }, live: { type: "boolean" },
    count: { type: "string" }, timeout: { type: "string" }, ...MATCH_OPTS, ...SOCKET_OPTS }, help);
  if (!a) return 0;
  if (a.values.live) return live(a.values);
  for (const k of ["count", "timeout", "mac", "vn", "ethertype"] as const)
    if (a.values[k] !== undefined) throw new UsageError(`--${k} goes with --live\n${help}`);
  const port = required(a.values.port, "--port", help);
  const hex = required(a.values.frame, "--frame", help).replace(/[\s:.-]/g, "");
  if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new UsageError(`--frame: not an even-length hex string\n${help}`);
  if (a.values.config === undefined) {
    // The running NVE's tables, through its admin socket.
    const t = await ask(a.values, { cmd: "trace", port, frame: hex }) as { steps: string[]; drop: string | null; outputs: { port: string; frame: string }[] };
    if (a.values.json) console.log(JSON.stringify(t));
    else {
      for (const s of t.steps) console.log(s);
      for (const o of t.outputs) console.log(`  ${o.port}: ${o.frame}`);
    }
    return 0;
  }
  if (a.values.socket !== undefined || a.values.store !== undefined) throw new UsageError(`--socket/--store trace the running NVE: leave out --config\n${help}`);
  const configFile = a.values.config;
  const frame = Uint8Array.from(hex.match(/../g)!.map((x) => parseInt(x, 16)));
  const dp = await buildOfflineDataPlane(configFile);
  if (dp.portIndex(port) < 0) throw new UsageError(`--port ${port}: no such port in ${configFile} (ports: ${dp.portList.join(", ")})`);
  const t = dp.trace(port, frame);
  if (a.values.json) {
    console.log(JSON.stringify({ steps: t.steps, drop: t.drop ?? null,
      outputs: t.outputs.map((o) => ({ port: o.port, frame: Buffer.from(o.frame).toString("hex") })) }));
    return 0;
  }
  for (const s of t.steps) console.log(s);
  for (const o of t.outputs) console.log(`  ${o.port}: ${Buffer.from(o.frame).toString("hex")}`);
  return 0;
}
