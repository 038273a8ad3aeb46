// Parallel lanes of scripts/test.mjs (NVEDGE_TEST_JOBS=N, N > 1): the test
// files are split into N lanes, each run by its own `node scripts/test.mjs`
// (a lane child: the same guards, on its files only), and their reports are
// merged, so the totals, the problems and the last line are what one run
// would print. Why: most of the suite waits (child processes starting, brokers,
// timers) on a machine with more than one core.
//
// Lane 0 runs, one after the other, every file that touches state shared by the
// whole machine (network namespaces, links, OVS, the lab's fixed broker port,
// root-only mounts) or that needs the machine to itself (the crash test's kill
// count within its time bound, the soak's figures): SERIAL below. The other
// files are dealt to the other lanes, longest first by the weights below (the
// slowest files of a sequential run: scripts/test.mjs prints them).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Files that run in lane 0 only (shared system state, or a bound that needs the machine). */
export const SERIAL = /^(lab|lab-demo|e2e(-[\w-]+)?|agent-ovs|io|io-pool|io-afxdp|underlay-resolve|underlay-routes-ns|dataplane-offload|ops-io|durability|fuzz|crash|security)\.test\.js$/;

/** Rough seconds per file (the slow ones, from a 2-lane run; others count 5), to balance the parallel lanes. */
const WEIGHT = { "firmware-qemu.test.js": 96, "agent.test.js": 77, "control.test.js": 49, "dataplane-cli.test.js": 42, "ima-ha.test.js": 36,
  "ops-cli.test.js": 30, "ima-cli.test.js": 27, "firmware-pack.test.js": 19, "firmware.test.js": 16, "ops-reload.test.js": 15,
  "control-cli.test.js": 15, "broker-restart.test.js": 14, "broker.test.js": 14, "dataplane-scale.test.js": 11, "profile-cli.test.js": 10 };

/** Lane k's file names (some may be empty): lane 0 the SERIAL ones, the rest dealt longest first to the least loaded of lanes 1..jobs-1. */
export function lanes(names, jobs) {
  const out = Array.from({ length: jobs }, () => []);
  const load = new Array(jobs).fill(0);
  const w = (n) => WEIGHT[n] ?? 5;
  for (const n of names) if (SERIAL.test(n)) { out[0].push(n); load[0] += w(n); }
  const rest = names.filter((n) => !SERIAL.test(n)).sort((a, b) => w(b) - w(a));
  for (const n of rest) {
    let k = 1;
    for (let j = 2; j < jobs; j++) if (load[j] < load[k]) k = j;
    out[k].push(n);
    load[k] += w(n);
  }
  // keep each lane in the sequential run's (alphabetical) order
  return out.map((l) => l.sort());
}

/**
 * Runs the lanes; resolves with the merged report: { passed, total, problems, skips, timing, wallMs }.
 * Each lane's output is printed when the lane ends (one block per lane, not interleaved).
 */
export async function runLanes({ runner, dirArg, pattern, names, jobs, limitS }) {
  const work = mkdtempSync(join(tmpdir(), "nvl-test-lanes-"));
  const t0 = performance.now();
  const children = [];
  try {
    const plan = lanes(names, jobs).map((files, k) => ({ files, k })).filter((l) => l.files.length > 0);
    console.log(`nvedge-test: ${names.length} files in ${plan.length} lanes (NVEDGE_TEST_JOBS=${jobs}; lane 0: the serial files)`);
    const results = await Promise.all(plan.map(({ files, k }) => new Promise((resolve) => {
      const list = join(work, `lane${k}.json`), report = join(work, `report${k}.json`);
      writeFileSync(list, JSON.stringify(files));
      const env = { ...process.env, NVEDGE_TEST_TIMEOUT_S: String(limitS) };
      env.NVEDGE_TEST_JOBS = "1"; // a lane runs its files one after the other (and so do runners the tests start)
      const child = spawn(process.execPath, [runner, dirArg, pattern, "--lane-files", list, "--lane-report", report], { stdio: ["ignore", "pipe", "pipe"], env });
      children.push(child);
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      child.once("exit", (code, sig) => {
        process.stdout.write(`\n======== lane ${k} (${files.length} files: ${files.join(" ")}) ========\n${out}`);
        let r;
        try { r = JSON.parse(readFileSync(report, "utf8")); } catch { /* none written: counted below */ }
        resolve(r ?? { passed: 0, total: 0, skips: [], timing: [], problems: [`lane ${k} (${files.join(" ")}) ended without a report (exit ${code ?? sig})`] });
      });
    })));
    const merged = { passed: 0, total: 0, problems: [], skips: [], timing: [], wallMs: performance.now() - t0 };
    for (const r of results) {
      merged.passed += r.passed;
      merged.total += r.total;
      merged.problems.push(...r.problems);
      merged.skips.push(...r.skips);
      merged.timing.push(...r.timing);
    }
    return merged;
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
    rmSync(work, { recursive: true, force: true });
  }
}
