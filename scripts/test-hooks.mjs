// Module resolve hook of scripts/test.mjs: a test file's `import ... from "uvu"`
// gets test/support/uvu-guard.js (the guarded suites), every other importer
// (the guard itself, uvu/assert, the runner) the real uvu.
let guard, testDir;
export function initialize(data) {
  guard = data.guard;
  testDir = data.testDir;
}
export async function resolve(specifier, context, next) {
  if (specifier === "uvu" && context.parentURL && context.parentURL.startsWith(testDir) && context.parentURL !== guard)
    return { url: guard, shortCircuit: true };
  return next(specifier, context);
}
