#!/usr/bin/env -S node --max-semi-space-size=2
// The nvedge command: dispatches to host/cli (built into dist/ by `npm install`
// or `npm run build`). A firmware bundle has its own launcher (bin/nvedge in
// the bundle, firmware/build.mjs), not this file.
// The first line gives Node the V8 flags the firmware launcher gives it
// (firmware/build.mjs NODE_FLAGS, why there: the young generation's size,
// issue 15 "paced p99"; test/launcher-flags.test.ts keeps the two equal).
// V8 sizes its heap before any script runs, so they cannot be set from here;
// `env -S` (coreutils 8.30, BusyBox, the BSDs) splits them off the line when
// the file runs as the command (npm's bin link, a systemd unit's ExecStart).
// `node bin/nvedge.js` skips the line: give them yourself there.
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
