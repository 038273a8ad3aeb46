#!/usr/bin/env node
// The test runner behind `npm test` and .ci/run (issue 17, "CI that cannot be
// fooled"). It runs uvu over the built tests, as `uvu DIR PATTERN` does, with
// every test file's uvu replaced by test/support/uvu-guard.js, and then fails
// the run, whatever uvu counted, when:
//   - a suite passed fewer tests than it registered, or ran a different number
//     (a throwing `before` hook: uvu prints (0 / N) and exits 0);
//   - a hook threw (`after` hooks included);
//   - a suite registered tests and was never run, or registered none;
//   - a test file registered no test and recorded no skip (test/support/tools.ts);
//   - a file failed to load;
//   - a tool the tests need is missing and NVEDGE_TEST_SKIP does not name it;
//   - test.only / test.skip is left in a file;
//   - the whole run (default directory and pattern) registered fewer tests than
//     test/expected-count says.
// Its last line is `nvedge-test: N passed, M failed, ...` (.ci/run reads it).
//
//   node scripts/test.mjs [DIR [PATTERN]]   (default: dist/test '\.test\.js$')
//   node scripts/test.mjs --count           (npm run test:count) imports every
//       test file without running it and writes the number of registered tests
//       to test/expected-count: run it on purpose after adding tests.
// NVEDGE_TEST_TIMEOUT_S (default 1200) bounds the whole run.
// At the end it prints the slowest files (import + run time each) and the totals;
// NVEDGE_TEST_SLOWEST=N shows N of them (default 15, 0 none).
import { register } from "node:module";
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { join, dirname, resolve } from "node:path";
import { loadavg, availableParallelism } from "node:os";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const countOnly = args.includes("--count");
// --expected-file FILE: check the count against FILE, whatever DIR and PATTERN (the runner's own tests)
const ei = args.indexOf("--expected-file");
const expectedFile = ei >= 0 ? args[ei + 1] : undefined;
// --lane-files LIST --lane-report FILE: a lane child of NVEDGE_TEST_JOBS (scripts/test-lanes.mjs): run only the
// files named in LIST (JSON), check no count, and write what the parent merges to FILE
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const laneFiles = opt("--lane-files"), laneReport = opt("--lane-report");
const valueAt = new Set(["--expected-file", "--lane-files", "--lane-report"].map((n) => args.indexOf(n)).filter((i) => i >= 0).map((i) => i + 1));
const pos = args.filter((a, i) => !a.startsWith("--") && !valueAt.has(i));
const DEFAULT_DIR = "dist/test", DEFAULT_PATTERN = "\\.test\\.js$";
const dir = resolve(root, pos[0] ?? DEFAULT_DIR);
const pattern = pos[1] ?? DEFAULT_PATTERN;
const whole = (pos[0] === undefined || resolve(root, pos[0]) === resolve(root, DEFAULT_DIR)) && pattern === DEFAULT_PATTERN;
const countFile = expectedFile ? resolve(expectedFile) : join(root, "test", "expected-count");
const checkCount = (whole || expectedFile !== undefined) && laneFiles === undefined;
// NVEDGE_TEST_JOBS=N (N > 1): N lanes of test files at once (scripts/test-lanes.mjs); NVEDGE_TEST_JOBS=1 one file
// after the other. Default: 2 lanes on a machine with 2 or more CPUs, which keeps `npm test` under issue 10's
// 10 minutes (here: 6 min 46 s with 2 lanes against 11 min sequentially, both green).
const jobs = Math.max(1, Math.floor(Number(process.env.NVEDGE_TEST_JOBS ?? (availableParallelism() >= 2 ? 2 : 1))) || 1);

// the guard and the registry come from the build, whatever DIR is (the runner's own tests point DIR at fixtures)
const support = join(root, "dist", "test", "support");
const guardPath = join(support, "uvu-guard.js");
if (!existsSync(guardPath)) {
  console.error(`test: ${guardPath} is missing; build first (node scripts/build.mjs --host)`);
  process.exit(1);
}
register(pathToFileURL(join(root, "scripts", "test-hooks.mjs")), {
  data: { guard: pathToFileURL(guardPath).href, testDir: pathToFileURL(dir + "/").href },
});

globalThis.UVU_DEFER = 1;
const uvu = await import("uvu");
const { parse } = await import("uvu/parse");
const { registry } = await import(pathToFileURL(join(support, "test-registry.js")).href);
const reg = registry();

const problems = []; // each one is a failure the uvu totals do not show
let { suites: files } = await parse(dir, pattern, {});
if (files.length === 0) problems.push(`no test file in ${dir} matches ${pattern}`);
if (laneFiles) {
  const mine = new Set(JSON.parse(readFileSync(laneFiles, "utf8")));
  files = files.filter((f) => mine.has(f.name));
}
const limitS = Number(process.env.NVEDGE_TEST_TIMEOUT_S ?? 1200);

if (jobs > 1 && !countOnly && !laneFiles && files.length > 1) {
  const { runLanes } = await import("./test-lanes.mjs");
  const r = await runLanes({ runner: fileURLToPath(import.meta.url), dirArg: dir, pattern, names: files.map((f) => f.name), jobs, limitS });
  problems.push(...r.problems);
  finish({ passed: r.passed, total: r.total, skips: r.skips, timing: r.timing, runMs: r.wallMs });
  process.exit();
}

// where the time goes, per file: its import (top-level setup included) and its suites' runs
// (and its CPU: this process's plus its waited-for children's, so a file that waits is told from one that works)
const timing = files.map((f) => ({ name: f.name, importMs: 0, runMs: 0, cpuMs: 0, since: 0 }));
function cpuMs() {
  const u = process.cpuUsage();
  let children = 0;
  try { // cutime + cstime, fields 16 and 17 of /proc/self/stat, in clock ticks (USER_HZ, 100 on Linux)
    const f = readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ");
    children = (Number(f[13]) + Number(f[14])) * 10;
  } catch { /* not Linux: this process only */ }
  return (u.user + u.system) / 1000 + children;
}
let idx = 0;
for (const f of files) {
  reg.file = f.name;
  globalThis.UVU_INDEX = idx++;
  globalThis.UVU_QUEUE.push([f.name]);
  const t0 = performance.now(), c0 = cpuMs();
  try {
    await import(pathToFileURL(f.file).href);
  } catch (e) {
    problems.push(`${f.name}: failed to load: ${e?.stack ?? e}`);
  }
  timing[idx - 1].importMs = performance.now() - t0;
  timing[idx - 1].cpuMs = cpuMs() - c0;
}
reg.file = "";

const registered = () => reg.suites.reduce((n, s) => n + s.registered, 0);

if (countOnly) {
  const n = registered();
  const missing = reg.missing.map((m) => `${m.tool} (${m.file})`);
  if (missing.length || reg.skips.length || problems.length) {
    console.error(`test:count: not writing ${countFile}: the count must come from a complete run` +
      `${missing.length ? `; missing: ${missing.join(", ")}` : ""}` +
      `${reg.skips.length ? `; skipped: ${reg.skips.map((s) => `${s.tool} (${s.file})`).join(", ")}` : ""}` +
      `${problems.length ? `; ${problems.join("; ")}` : ""}`);
    process.exit(1);
  }
  writeFileSync(countFile, "# The number of tests the whole suite registers (scripts/test.mjs fails a run below it).\n" +
    "# Update it on purpose, after adding or merging tests: npm run test:count\n" + `${n}\n`);
  console.log(`test:count: ${n} tests registered in ${files.length} files; wrote ${countFile}`);
  process.exit(0);
}

// the slowest files (NVEDGE_TEST_SLOWEST, default 15; 0 prints none), then the totals
let runStart = 0, runMs;
function printTiming(timing, runMs) {
  const slowest = Number(process.env.NVEDGE_TEST_SLOWEST ?? 15);
  if (!(slowest > 0) || timing.length === 0) return;
  const sec = (ms) => (ms / 1000).toFixed(1).padStart(6) + " s";
  const now = performance.now();
  // (a file still running, at the watchdog, counts up to now)
  const ranked = timing.map((t) => ({ ...t, ms: t.importMs + t.runMs + (t.since ? now - t.since : 0) })).sort((a, b) => b.ms - a.ms);
  const sum = ranked.reduce((n, t) => n + t.ms, 0);
  console.log(`\n  slowest test files (of ${timing.length}; wall time of import + run, share, CPU time with child processes):`);
  for (const t of ranked.slice(0, slowest))
    console.log(`  ${sec(t.ms)}  ${(100 * t.ms / sum).toFixed(1).padStart(5)}%  cpu ${sec(t.cpuMs)}  ${t.name}`);
  const imports = ranked.reduce((n, t) => n + t.importMs, 0);
  const cpu = ranked.reduce((n, t) => n + t.cpuMs, 0);
  console.log(`  ${sec(sum)}  in all files (imports ${(imports / 1000).toFixed(1)} s, runs ${(runMs / 1000).toFixed(1)} s, cpu ${(cpu / 1000).toFixed(1)} s); ` +
    `runner wall time ${(performance.now() / 1000).toFixed(1)} s; load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}\n`);
}

// the count check, the timing, the problems and the last line: of this run, or of the lanes merged (scripts/test-lanes.mjs)
function finish({ passed, total, skips, timing, runMs }) {
  let expected;
  if (existsSync(countFile)) expected = Number(readFileSync(countFile, "utf8").split("\n").find((l) => /^\d+/.test(l.trim())));
  const skipsAllowed = (process.env.NVEDGE_TEST_SKIP ?? "").trim();
  if (checkCount) {
    if (expected === undefined || !Number.isFinite(expected)) problems.push(`${countFile} is missing or holds no number (npm run test:count writes it)`);
    else if (total < expected && skips.length === 0)
      problems.push(`${total} tests registered, below the ${expected} of ${countFile}: tests vanished (or, on purpose, run npm run test:count)`);
  }

  printTiming(timing, runMs);

  // every registered test that did not pass, plus each problem above
  const failed = total - passed + problems.length;
  if (problems.length) {
    console.log("\n  nvedge-test found problems uvu does not count:");
    for (const p of problems) console.log(`  ✘ ${p}`);
  }
  const skipped = [...new Set(skips.map((s) => s.tool))];
  const tail = [
    `registered ${total}`,
    checkCount && expected !== undefined ? `expected ≥ ${expected}` : checkCount ? undefined : "partial run: expected count not checked",
    skipped.length ? `SKIPPED: ${skipped.join(",")}${skipsAllowed ? ` (NVEDGE_TEST_SKIP=${skipsAllowed})` : skips.every((s) => s.kernel) ? " (refused by this kernel)" : " (not root, no CI, or refused by this kernel)"}` : "skipped: none",
  ].filter(Boolean).join("; ");
  console.log(`nvedge-test: ${passed} passed, ${failed} failed (${tail})`);
  process.exitCode = failed > 0 || process.exitCode ? 1 : 0;
}

const watchdog = setTimeout(() => {
  const cur = reg.suites.find((s) => s.running);
  console.error(`\ntest: the run exceeded NVEDGE_TEST_TIMEOUT_S=${limitS}${cur ? ` in ${cur.file} "${cur.name}"` : ""}`);
  printTiming(timing, performance.now() - runStart); // where the time went, up to here
  console.log(`nvedge-test: 0 passed, ${Math.max(1, registered())} failed (timed out)`);
  process.exit(1);
}, limitS * 1000);
watchdog.unref();

// each file's group is [name, ...suite runners] (uvu.exec shifts the name off): time every runner
globalThis.UVU_QUEUE.forEach((group, i) => {
  const t = timing[i];
  if (!t) return;
  for (let k = 1; k < group.length; k++) {
    const run = group[k];
    group[k] = async () => {
      const t0 = (t.since = performance.now()), c0 = cpuMs();
      try { return await run(); } finally { t.since = 0; t.runMs += performance.now() - t0; t.cpuMs += cpuMs() - c0; }
    };
  }
});

runStart = performance.now();
await uvu.exec();
clearTimeout(watchdog);
runMs = performance.now() - runStart;

// ---- the checks uvu does not make ----
let passed = 0;
for (const s of reg.suites) {
  const where = `${s.file} "${s.name || "(default suite)"}"`;
  for (const h of s.hookErrors) problems.push(`${where}: ${h.split("\n")[0]}`);
  if (s.registered === 0) { problems.push(`${where}: registers zero tests`); continue; }
  if (!s.result) { problems.push(`${where}: ${s.registered} tests registered, never run (no .run())`); continue; }
  passed += s.result.passed;
  if (s.only) problems.push(`${where}: test.only left in the file`);
  if (s.skipped > 0) problems.push(`${where}: ${s.skipped} test.skip left in the file (skip a tool with NVEDGE_TEST_SKIP)`);
  else if (s.result.total !== s.registered) problems.push(`${where}: registered ${s.registered} tests, ran ${s.result.total}`);
}
for (const f of files) {
  const mine = reg.suites.filter((s) => s.file === f.name);
  const n = mine.reduce((k, s) => k + s.registered, 0);
  if (n === 0 && !reg.skips.some((s) => s.file === f.name) && !reg.missing.some((m) => m.file === f.name) && !problems.some((p) => p.startsWith(`${f.name}:`)))
    problems.push(`${f.name}: registers zero tests and recorded no skip`);
}
for (const m of reg.missing)
  problems.push(`${m.file}: missing ${m.tool}: ${m.why} (install it: scripts/system-deps.sh; or skip on purpose: NVEDGE_TEST_SKIP=${m.tool})`);

const total = registered();
if (laneReport) {
  // a lane child: the parent merges this, checks the count and prints the last line of the whole run
  writeFileSync(laneReport, JSON.stringify({ passed, total, problems, skips: reg.skips, timing: timing.map(({ since, ...t }) => t) }));
  printTiming(timing, runMs);
  console.log(`nvedge-test lane: ${passed} passed, ${total - passed + problems.length} failed`);
  process.exitCode = total - passed + problems.length > 0 ? 1 : 0;
} else finish({ passed, total, skips: reg.skips, timing, runMs });
