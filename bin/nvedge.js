#!/usr/bin/env node
// The nvedge command: dispatches to host/cli (built into dist/ by `npm install`).
import { main } from "../dist/host/cli/main.js";
main(process.argv.slice(2)).then(
  (code) => { if (typeof code === "number") process.exitCode = code; },
  (err) => { console.error(`nvedge: ${err?.message ?? err}`); process.exitCode = 1; },
);
