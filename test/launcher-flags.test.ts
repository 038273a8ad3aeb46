// The V8 flags the nvedge command gives Node (issue 15 "paced p99": the
// young generation's size, bench/README.md "pace15"): bin/nvedge.js carries
// them on its first line (`#!/usr/bin/env -S node FLAGS`, as npm's bin link
// and a systemd unit run it), the firmware launcher in NODE_FLAGS
// (firmware/build.mjs); both must give the same, and the control bench reads
// them from that line to start the NVE as the command would (launcherFlags).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { launcherFlags } from "../bench/control.js";
import { ROOT } from "./support/firmware.js";

const BIN = join(ROOT, "bin", "nvedge.js");

test("bin/nvedge.js run as a command: Node gets the firmware launcher's flags before the script", async () => {
  const { NODE_FLAGS } = await import(pathToFileURL(join(ROOT, "firmware", "build.mjs")).href) as { NODE_FLAGS: string[] };
  assert.ok(NODE_FLAGS.some((f) => /^--max-semi-space-size=\d+$/.test(f)), NODE_FLAGS.join(" "));
  assert.equal(launcherFlags(readFileSync(BIN, "utf8")), NODE_FLAGS);
  // executed (not `node bin/nvedge.js`): env -S finds `node` on PATH, here a
  // recorder of its arguments in front of the real one
  const dir = mkdtempSync(join(tmpdir(), "nvl-launcher-"));
  try {
    const rec = join(dir, "argv.txt");
    writeFileSync(join(dir, "node"), `#!/bin/sh\nprintf '%s\\n' "$@" > "${rec}"\nexec "${process.execPath}" "$@"\n`, { mode: 0o755 });
    const r = spawnSync(BIN, ["--version"], { encoding: "utf8", timeout: 60_000, env: { ...process.env, PATH: `${dir}:${process.env.PATH}` } });
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /^nvedge \d/);
    assert.equal(readFileSync(rec, "utf8").trim().split("\n"), [...NODE_FLAGS, BIN, "--version"]);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test("launcherFlags: the flags of an `env -S node` line; none for a plain `env node` line or no #! line", () => {
  assert.equal(launcherFlags("#!/usr/bin/env -S node --max-semi-space-size=2 --stack-size=2000\nrest\n"), ["--max-semi-space-size=2", "--stack-size=2000"]);
  assert.equal(launcherFlags("#!/usr/bin/env -S node\n"), []);
  assert.equal(launcherFlags("#!/usr/bin/env node\n// --max-semi-space-size=1\n"), []);
  assert.equal(launcherFlags("// no launcher line --max-semi-space-size=1\n"), []);
  assert.equal(launcherFlags(""), []);
});

test.run();
