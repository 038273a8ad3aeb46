#!/usr/bin/env node
// The nvedge command: dispatches to host/cli (built into dist/ by `npm install`
// or `npm run build`). A firmware bundle has its own launcher (bin/nvedge in
// the bundle, firmware/build.mjs), not this file.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

// `nvedge run` from the CLI's bundle (scripts/build.mjs: its start-up is what
// issue 15 measures; one file loads faster than one per source) when the
// build made one; every other command from dist/host.
const bundled = new URL("../dist/bundle/main.mjs", import.meta.url);
const entry = process.argv[2] === "run" && existsSync(fileURLToPath(bundled)) ? bundled : new URL("../dist/host/cli/main.js", import.meta.url);
let main;
try {
  ({ main } = await import(entry.href));
} catch (err) {
  // Only the missing build gets the short answer; a broken build shows its error.
  if (err?.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes("dist/host/cli/main.js")) {
    console.error(`nvedge: ${decodeURIComponent(entry.pathname)} is missing: the host is not built (run npm run build)`);
  } else console.error(`nvedge: cannot load the CLI: ${err?.message ?? err}`);
  process.exit(1);
}
main(process.argv.slice(2)).then(
  (code) => { if (typeof code === "number") process.exitCode = code; },
  (err) => { console.error(`nvedge: ${err?.message ?? err}`); process.exitCode = 1; },
);
