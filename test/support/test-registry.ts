// What the test runner (scripts/test.mjs) checks after a run, filled in by the
// uvu guard (uvu-guard.ts) and by requireTool() (tools.ts). Kept on globalThis
// so the runner, a plain .mjs outside the build, reads the same object.

export interface SuiteRecord {
  file: string;
  name: string;
  registered: number;
  skipped: number;
  only: boolean;
  result?: { passed: number; skipped: number; total: number };
  hookErrors: string[];
  /** True while uvu runs it (the runner's watchdog names it). */
  running?: boolean;
}

export interface Registry {
  /** The test file being imported (set by the runner before each import). */
  file: string;
  suites: SuiteRecord[];
  /** Tools a file needed and was allowed to go without (NVEDGE_TEST_SKIP), per file. */
  skips: { file: string; tool: string; tests: string; kernel?: boolean }[];
  /** Tools a file needed, did not find, and was not allowed to skip. */
  missing: { file: string; tool: string; why: string }[];
  suite(name: string): SuiteRecord;
  hookError(s: SuiteRecord, kind: string, e: unknown): void;
  ran(s: SuiteRecord, r: SuiteRecord["result"]): void;
}

export function registry(): Registry {
  const g = globalThis as unknown as { __nvedgeTests?: Registry };
  g.__nvedgeTests ??= {
    file: "",
    suites: [],
    skips: [],
    missing: [],
    suite(name) {
      const s: SuiteRecord = { file: this.file, name, registered: 0, skipped: 0, only: false, hookErrors: [] };
      this.suites.push(s);
      return s;
    },
    hookError(s, kind, e) {
      const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
      s.hookErrors.push(`${kind} hook threw: ${msg}`);
      // say it now too: uvu itself would print nothing
      process.stderr.write(`\n  HOOK FAILED ${s.file} "${s.name}" ${kind}: ${msg}\n`);
    },
    ran(s, r) {
      s.result = r;
    },
  };
  return g.__nvedgeTests;
}
