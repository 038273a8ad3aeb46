// uvu as the test files see it under scripts/test.mjs (issue 17, "CI that
// cannot be fooled"). The runner's module hook resolves every `import ... from
// "uvu"` of a test file to this module, so no test file has to change.
//
// Why: uvu 0.5.6 runs a suite's `before` hooks inside a try whose `finally`
// returns, so an exception thrown there is discarded: the suite prints
// `(0 / N)`, and nothing fails. An exception thrown by an `after` hook escapes
// the runner and aborts every later suite. Here every hook is wrapped: its
// exception is recorded in the registry the runner reads (and fails on), a
// `before`/`before.each` exception is rethrown so no test runs on a half-made
// setup, an `after`/`after.each` exception is swallowed so later suites still
// run. Every suite also reports what it registered and what it ran, so the
// runner can fail a suite that ran fewer tests than it registered, one that was
// never run, and a file that registered none.
import * as real from "uvu";
import { registry, type SuiteRecord } from "./test-registry.js";

type Handler = (ctx: any) => unknown;
type Hook = (fn: Handler) => void;
interface RealTest {
  (name: string, fn: Handler): void;
  before: Hook & { each: Hook };
  after: Hook & { each: Hook };
  only: (name: string, fn: Handler) => void;
  skip: (name?: string, fn?: Handler) => void;
  run: () => void;
}

function guardedSuite(name = "", state: Record<string, unknown> = {}) {
  const t = (real.suite as unknown as (n: string, s: unknown) => RealTest)(name, state);
  const reg = registry();
  // uvu's `test` is one context reused by every file (run() resets it): a record per run
  let current: SuiteRecord | undefined;
  const rec = () => (current ??= reg.suite(name));
  let active: SuiteRecord | undefined; // the record of the run in progress (hooks fire after run() reset `current`)
  const hook = (kind: string, add: Hook, rethrow: boolean): Hook => (fn) =>
    add(async (ctx: any) => {
      try {
        await fn(ctx);
      } catch (e) {
        reg.hookError(active ?? rec(), kind, e);
        if (rethrow) throw e;
      }
    });
  const test = ((n: string, fn: Handler) => {
    rec().registered++;
    t(n, fn);
  }) as RealTest;
  test.before = Object.assign(hook("before", t.before, true), { each: hook("before.each", t.before.each, true) });
  test.after = Object.assign(hook("after", t.after, false), { each: hook("after.each", t.after.each, false) });
  test.only = (n, fn) => {
    rec().registered++;
    rec().only = true;
    t.only(n, fn);
  };
  test.skip = (n?: string, fn?: Handler) => {
    rec().registered++;
    rec().skipped++;
    t.skip(n, fn);
  };
  test.run = () => {
    t.run();
    // uvu.run() queued its runner last in the current file's group: wrap it to see the result
    const q = (globalThis as any).UVU_QUEUE[(globalThis as any).UVU_INDEX || 0] as Array<() => Promise<[unknown, number, number, number]>>;
    const inner = q[q.length - 1];
    const r0 = rec();
    current = undefined;
    q[q.length - 1] = async () => {
      active = r0;
      r0.running = true;
      const r = await inner().finally(() => { active = undefined; r0.running = false; });
      reg.ran(r0, { passed: r[1], skipped: r[2], total: r[3] });
      return r;
    };
  };
  return test;
}

export const suite = guardedSuite as unknown as typeof real.suite;
export const test = guardedSuite() as unknown as typeof real.test;
export const exec = real.exec;
