// nvedge trace --config FILE --port PORT --frame HEX
// One frame through the pipeline of FILE's static state; prints each decision.
import { parseOpts, required, UsageError } from "./args.js";
import { buildOfflineDataPlane } from "./pcap.js";

const HELP = `usage: nvedge trace --config FILE --port PORT --frame HEX [--json]

Sends one frame (hex, spaces and colons allowed) into PORT of a data plane
built from FILE's static state and prints each decision: the VN, the
lookups, the action, the outputs (as hex) or the drop reason.`;

export async function traceCommand(argv: string[]): Promise<number> {
  const a = parseOpts(argv, { config: { type: "string" }, port: { type: "string" }, frame: { type: "string" }, json: { type: "boolean" } }, HELP);
  if (!a) return 0;
  const configFile = required(a.values.config, "--config", HELP);
  const port = required(a.values.port, "--port", HELP);
  const hex = required(a.values.frame, "--frame", HELP).replace(/[\s:.-]/g, "");
  if (!/^([0-9a-fA-F]{2})+$/.test(hex)) throw new UsageError(`--frame: not an even-length hex string\n${HELP}`);
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
