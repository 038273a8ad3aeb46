// `nvedge config check FILE [--json]` (issue 13): every error of a
// configuration file, each with its JSON path, then the data plane's own
// checks of the static state (as `nvedge run` would program it). Exit 0 when
// the file is good, 2 when it is not.
import { UsageError, parseOpts } from "./args.js";
import { checkConfig, checkConfigText, opProblem, type ConfigProblem } from "../config/check.js";
import { ConfigError, parseConfig, readConfigText } from "../config/load.js";

const HELP = `usage: nvedge config check FILE [--json]

Reports every error of the configuration FILE (JSON, or YAML for .yaml/.yml),
each with its JSON path ($.remotes[1].ip): the schema, references between
sections, duplicate or conflicting remotes, MACs, IPs and tags. Exit 0 when
FILE is good, 2 when it is not.`;

export async function configCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === "--help" || sub === "-h") {
    console.log(HELP);
    return 0;
  }
  if (!sub) throw new UsageError(`missing subcommand\n${HELP}`);
  if (sub !== "check") throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}\n${HELP}`);
  const p = parseOpts(rest, { json: { type: "boolean" } }, HELP, true);
  if (!p) return 0;
  if (p.positionals.length !== 1) throw new UsageError(`expected one FILE, got ${p.positionals.length}\n${HELP}`);
  const file = p.positionals[0];
  const text = readConfigText(file);
  const r = checkConfigText(text, file);
  let problems: ConfigProblem[] = r.problems;
  if (r.config) {
    problems = checkConfig(r.config);
    // The loader's own cross-references (ports, VN references, duplicate ids): it stops at the first.
    try {
      parseConfig(text, file);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      const path = e.key ? `$.${e.key}`.replace(/\.(\d+)(?=\.|$)/g, "[$1]") : "$";
      if (!problems.some((x) => x.path === path)) problems.unshift({ path, message: e.message.slice(`${file}: ${e.key ? e.key + ": " : ""}`.length) });
    }
  }
  if (r.config && problems.length === 0) {
    // Last, what the data plane itself refuses of the static state (as `nvedge run` would program it).
    const { DataPlane, DataPlaneError } = await import("../dataplane/dataplane.js");
    const { offlineOps } = await import("../control/static.js");
    const cfg = parseConfig(text, file);
    const ops = offlineOps(cfg);
    const dp = await DataPlane.create({ macLog2: 18, ipLog2: 18, tunLog2: 14, floodCap: 1 << 16 });
    try {
      dp.apply(ops);
    } catch (e) {
      if (!(e instanceof DataPlaneError)) throw e;
      problems = [opProblem(cfg, ops, e)];
    }
  }
  if (p.values.json) console.log(JSON.stringify({ file, ok: problems.length === 0, problems }));
  else if (problems.length === 0) console.log(`${file}: ok`);
  else for (const x of problems) console.error(`${file}: ${x.path}: ${x.message}`);
  return problems.length ? 2 : 0;
}
