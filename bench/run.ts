// `npm run bench`: every bench module that exists, in order, each row one
// JSON line on stdout as it comes. A module that is missing or fails (e.g.
// not root) is skipped with {"case": "<name>", "skipped": "<reason>"}.
//   node dist/bench/run.js [--only NAME] [--quick]
// NAME is one of the module names below. --quick shortens every run (the
// modules read it from their options and from NVEDGE_BENCH_QUICK=1).
import { fileURLToPath } from "node:url";
import { spawn } from "node:child_process";
import { constants } from "node:os";

interface Module { name: string; file: string; fn: string }

const MODULES: Module[] = [
  { name: "dataplane", file: "./dataplane.js", fn: "runDataplaneBench" },
  { name: "component", file: "./component.js", fn: "runComponentBench" },
  { name: "control", file: "./control.js", fn: "runControlBench" },
  { name: "io", file: "./io.js", fn: "runIoBench" },
  { name: "race", file: "./race.js", fn: "runRaceBench" },
  { name: "xdp-sender", file: "./xdp-sender.js", fn: "runXdpSenderBench" },
  { name: "tcp", file: "./tcp.js", fn: "runTcpBench" },
  { name: "latency", file: "./latency.js", fn: "runLatencyBench" },
  { name: "tunnel-tx", file: "./tunnel-tx.js", fn: "runTunTxBench" },
  { name: "nexthop", file: "./nexthop.js", fn: "runNexthopBench" },
  { name: "store", file: "./store.js", fn: "runStoreBench" },
  { name: "ima", file: "./ima.js", fn: "runImaBench" },
  { name: "migration", file: "./migration.js", fn: "runMigrationBench" },
];

export interface RunOptions { only?: string; quick?: boolean }

export function parseArgs(argv: string[]): RunOptions {
  const o: RunOptions = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") o.quick = true;
    else if (a === "--only") {
      const v = argv[++i];
      if (!v) throw new Error("--only needs a module name");
      o.only = v;
    } else if (a.startsWith("--only=")) o.only = a.slice(7);
    else throw new Error(`unknown argument ${JSON.stringify(a)} (usage: bench [--only NAME] [--quick])`);
  }
  if (o.only && !MODULES.some((m) => m.name === o.only)) {
    throw new Error(`--only ${o.only}: no such bench (one of ${MODULES.map((m) => m.name).join(", ")})`);
  }
  return o;
}

const line = (r: object) => process.stdout.write(JSON.stringify(r) + "\n");

/**
 * Runs one module. Its rows are printed as they come: modules print each row
 * themselves (so a long module shows progress); a returned row that the
 * module did not print is printed here, so each row appears exactly once.
 */
async function runModule(m: Module, quick: boolean): Promise<object[]> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(m.file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const reason = err.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes(m.file.slice(2))
      ? `bench/${m.name}.ts does not exist`
      : `cannot load bench/${m.name}: ${err.message.split("\n")[0]}`;
    const r = { case: m.name, skipped: reason };
    line(r);
    return [r];
  }
  const fn = mod[m.fn];
  if (typeof fn !== "function") {
    const r = { case: m.name, skipped: `bench/${m.name} exports no ${m.fn}()` };
    line(r);
    return [r];
  }
  const printed = new Set<string>();
  const log = console.log;
  console.log = (...args: unknown[]) => {
    if (args.length === 1 && typeof args[0] === "string") printed.add(args[0]);
    log(...args);
  };
  try {
    const rows = await (fn as (o: { quick: boolean }) => Promise<object[]>)({ quick });
    console.log = log;
    for (const r of Array.isArray(rows) ? rows : []) {
      const s = JSON.stringify(r);
      if (!printed.has(s)) line(r);
    }
    return rows;
  } catch (e) {
    console.log = log;
    const r = { case: m.name, skipped: `failed: ${(e as Error).message.split("\n")[0]}` };
    line(r);
    return [r];
  } finally {
    console.log = log;
  }
}

export async function runAll(o: RunOptions): Promise<object[]> {
  if (o.quick) process.env.NVEDGE_BENCH_QUICK = "1";
  const all: object[] = [];
  for (const m of MODULES) {
    if (o.only && m.name !== o.only) continue;
    all.push(...await runModule(m, !!o.quick));
  }
  return all;
}

/**
 * The control bench's agents are this process (bench/control.ts: its CPU,
 * its pinning, its heap profile are the agents'), and their scavenges hold
 * every answer that arrives meanwhile: with V8's default young generation
 * (16 MiB semi-spaces) 5-7 per paced case of 4.3-6.6 ms (up to 10 ms),
 * with 8 MiB 13-14 of 2.4-2.9 ms (at most 4.6); 4 MiB made them shorter
 * still but promoted enough to bring mark-compacts of up to 12.6 ms into the
 * paced cases and cost ~8 µs more per attach at max (bench/README.md
 * "tail15", "read15"). V8 sizes the
 * young generation before any script runs, so `--only control` starts this
 * script again under `--max-semi-space-size` when it was not given one (in
 * the process's flags or NODE_OPTIONS). Only for the control module: the
 * other modules measure their in-process work under Node's defaults, and
 * the NVE the control bench starts keeps its own flags (spawned, not
 * forked: execArgv is not passed on). NVEDGE_BENCH_AGENT_SEMI_SPACE=N
 * (MiB; 8 by default; 0: V8's default, no second start).
 * Returns the argv to start again with, or undefined to run here.
 */
export function semiSpaceArgs(o: RunOptions, execArgv: string[], env: NodeJS.ProcessEnv): string[] | undefined {
  if (o.only !== "control") return undefined;
  const v = env.NVEDGE_BENCH_AGENT_SEMI_SPACE ?? "8";
  if (!/^\d+$/.test(v)) throw new Error(`NVEDGE_BENCH_AGENT_SEMI_SPACE=${v}: a size in MiB, or 0 for V8's default`);
  if (v === "0") return undefined;
  if ([...execArgv, env.NODE_OPTIONS ?? ""].some((a) => /--max-semi-space-size/.test(a))) return undefined;
  return [...execArgv, `--max-semi-space-size=${v}`];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  let o: RunOptions;
  let again: string[] | undefined;
  try {
    o = parseArgs(process.argv.slice(2));
    again = semiSpaceArgs(o, process.execArgv, process.env);
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    process.exit(2);
  }
  if (again) {
    // the same script under the flag; a signal to this process goes on to it (its NVE and Mosquitto are its to stop)
    const child = spawn(process.execPath, [...again, process.argv[1], ...process.argv.slice(2)], { stdio: "inherit" });
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => child.kill(sig));
    child.on("exit", (code, signal) => process.exit(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  } else runAll(o).then(() => process.exit(0), (e) => { console.error(`bench: ${(e as Error).message}`); process.exit(1); });
}
