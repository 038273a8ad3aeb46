// `nvedge lab up|down|demo` (INTERFACES.md): the veth/netns lab of issue 5.
import { parseOpts, UsageError } from "./args.js";

const HELP = `usage: nvedge lab up|down|demo [options]
  up      build the lab (namespaces and veths prefixed nvl-, OVS hypervisors,
          the Linux VXLAN and OVS Geneve/VXLAN peers); writes the NVE configs and
          lab.json to the state directory; does nothing if the lab is already up
  down    remove everything the lab made, even after a partial up
  demo    up + broker + NVEs + agents + VMs attached + ping, a live line of
          counters; everything down on Ctrl-C or after --duration
options:
  --id ID           a second lab next to the default one (namespaces nvl-ID-*)
  --state-dir DIR   default /run/nvedge-lab (root) or $TMPDIR/nvedge-lab
  --json            print the lab description (up) or what was removed (down) as JSON
  --duration S      demo: stop after S seconds
  --workers N       demo: nvedge run --workers N (default 1)
  --keep            demo: leave the lab up when the demo ends`;

export async function labCommand(argv: string[]): Promise<number> {
  const p = parseOpts(argv, {
    id: { type: "string" }, "state-dir": { type: "string" }, json: { type: "boolean" },
    duration: { type: "string" }, workers: { type: "string" }, keep: { type: "boolean" },
  }, HELP, true);
  if (!p) return 0;
  const [action, ...extra] = p.positionals;
  if (!action) throw new UsageError(`missing up|down|demo\n${HELP}`);
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"\n${HELP}`);
  const { describeLab, LAB_ID_RE } = await import("../lab/topology.js");
  const id = p.values.id;
  if (id !== undefined && !LAB_ID_RE.test(id)) throw new UsageError(`--id "${id}": 1 to 8 lower-case letters or digits`);
  const opts = { id, stateDir: p.values["state-dir"] };
  describeLab(opts);
  const log = (l: string) => { if (!p.values.json) console.error(l); };

  if (action === "up") {
    const { labUp } = await import("../lab/engine.js");
    const d = await labUp({ ...opts, log });
    if (p.values.json) console.log(JSON.stringify(d, null, 2));
    else console.log(`lab up: ${d.descriptionFile}\n  NVE configs: ${d.nves.map((n) => n.config).join(", ")}`);
    return 0;
  }
  if (action === "down") {
    const { labDown } = await import("../lab/engine.js");
    const r = await labDown(opts);
    if (p.values.json) console.log(JSON.stringify(r));
    else console.log(`lab down: ${r.namespaces.length} namespaces removed, ${r.killed.length} processes stopped`);
    return 0;
  }
  if (action === "demo") {
    const num = (flag: string, v: string | undefined, min: number, max: number): number | undefined => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${flag} "${v}": a number from ${min} to ${max}`);
      return n;
    };
    const { runDemo } = await import("../lab/demo.js");
    return runDemo({ ...opts, durationS: num("duration", p.values.duration, 1, 86400),
                     workers: num("workers", p.values.workers, 1, 64), keep: !!p.values.keep });
  }
  throw new UsageError(`unknown action "${action}" (up, down or demo)\n${HELP}`);
}
