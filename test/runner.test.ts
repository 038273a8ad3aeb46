// The test runner itself (scripts/test.mjs, issue 17 "CI that cannot be
// fooled"): each fixture under test/fixtures/runner/ is a way a green uvu run
// used to hide a missing test; the runner must exit non-zero and name it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const RUNNER = `${ROOT}scripts/test.mjs`;

function run(fixture: string, env: Record<string, string> = {}, extra: string[] = []) {
  const r = spawnSync(process.execPath, [RUNNER, ...extra, `test/fixtures/runner/${fixture}`, "\\.test\\.mjs$"], {
    cwd: ROOT, encoding: "utf8", timeout: 60_000,
    // strict as in CI; NVEDGE_TEST_SKIP only where a case sets it
    // one lane unless a case asks for more (the default is 2 on a machine with 2 CPUs)
    env: { ...process.env, CI: "1", NVEDGE_TEST_SKIP: "", FORCE_COLOR: "0", NVEDGE_TEST_JOBS: "1", ...env },
  });
  const out = r.stdout + r.stderr;
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  return { code: r.status, out, last };
}

test("a clean run exits 0 and ends with `N passed, 0 failed`", () => {
  const r = run("ok");
  assert.is(r.code, 0, r.out);
  assert.match(r.last, /^nvedge-test: 3 passed, 0 failed \(registered 3; partial run/, r.out);
});

test("a before hook that throws fails the run and names the hook and its error (uvu alone exits 0)", () => {
  const r = run("before-throws");
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /"setup fails": before hook threw: Error: broker did not start/);
  assert.match(r.last, /^nvedge-test: 0 passed, 3 failed/, r.out);
});

test("an after hook that throws fails the run, and the suites after it still run", () => {
  const r = run("after-throws");
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /"teardown fails": after hook threw: Error: cleanup exploded/);
  assert.match(r.last, /^nvedge-test: 2 passed, 1 failed/, r.out);
});

test("a file that registers zero tests and records no skip fails the run", () => {
  const r = run("zero-tests");
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /a\.test\.mjs: registers zero tests and recorded no skip/);
});

test("a suite that is never run fails the run", () => {
  const r = run("never-run");
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /"forgot run": 1 tests registered, never run/);
});

test("a missing tool fails a strict run (CI set) naming the tool", () => {
  const r = run("missing-tool");
  assert.is(r.code, 1, r.out);
  assert.match(r.out, /missing nvl-no-such-tool: the frobnicator cross-check/);
  assert.match(r.out, /NVEDGE_TEST_SKIP=nvl-no-such-tool/);
});

test("NVEDGE_TEST_SKIP=tool skips on purpose, and the summary line says so", () => {
  const r = run("skip-allowed", { NVEDGE_TEST_SKIP: "nvl-no-such-tool" });
  assert.is(r.code, 0, r.out);
  assert.match(r.last, /SKIPPED: nvl-no-such-tool \(NVEDGE_TEST_SKIP=nvl-no-such-tool\)/, r.out);
});

test("a file that fails to load fails the run; test.only left in a file fails the run", () => {
  const a = run("load-fails");
  assert.is(a.code, 1, a.out);
  assert.match(a.out, /failed to load: Error: syntax of the world is wrong/);
  const b = run("only-left");
  assert.is(b.code, 1, b.out);
  assert.match(b.out, /test\.only left in the file/);
});

test("the expected count: a run that registers fewer tests than the count file fails; as many passes", () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-count-"));
  try {
    writeFileSync(join(dir, "count"), "# comment\n4\n");
    const r = run("ok", {}, ["--expected-file", join(dir, "count")]);
    assert.is(r.code, 1, r.out);
    assert.match(r.out, /3 tests registered, below the 4 of .*count: tests vanished/);
    writeFileSync(join(dir, "count"), "3\n");
    const g = run("ok", {}, ["--expected-file", join(dir, "count")]);
    assert.is(g.code, 0, g.out);
    assert.match(g.last, /registered 3; expected ≥ 3/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("NVEDGE_TEST_JOBS: lanes of files at once give the same totals, problems and exit code as one lane", () => {
  const one = run("lanes", { NVEDGE_TEST_JOBS: "1" });
  assert.is(one.code, 1, one.out);
  assert.match(one.last, /^nvedge-test: 2 passed, 2 failed \(registered 3; partial run/, one.out);
  // 3 jobs: lane 0 (the serial files: none here) is left out, a.test and b.test each get a lane
  const par = run("lanes", { NVEDGE_TEST_JOBS: "3" });
  assert.is(par.code, 1, par.out);
  assert.match(par.out, /2 files in 2 lanes/);
  assert.match(par.out, /"lane b fails": after hook threw: Error: lane b cleanup exploded/);
  assert.match(par.out, /one is not two/);
  assert.is(par.last, one.last, par.out);
});

test.run();
