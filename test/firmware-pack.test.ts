// The npm package (issue 12): `npm pack` holds what the CLI needs (package.json
// `files`; `prepack` builds it, run by `npm run build` before the tests, so
// the pack here skips scripts), installs into a fresh prefix (its install
// script builds the addon, optionally) and runs `nvedge pcap` on both data
// plane loaders from there; bin/nvedge.js without dist/ says so in one line.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePcap } from "../host/pcap/pcap.js";
import * as F from "./support/frames.js";
import { ROOT } from "./support/firmware.js";

test("npm pack: the package holds the built CLI, the wasm and the component, and no tests or caches", () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-pack-"));
  try {
    const r = spawnSync("npm", ["pack", "--ignore-scripts", "--pack-destination", dir, "--json"], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
    assert.is(r.status, 0, r.stderr);
    const files = (JSON.parse(r.stdout)[0].files as { path: string }[]).map((f) => f.path);
    for (const f of ["bin/nvedge.js", "dist/host/cli/main.js", "dist/host/paths.js", "dist/host/io/worker.js", "build/dataplane.wasm",
                     "build/component/dataplane.component.wasm", "build/component/dataplane.js", "host/io/native/afpacket.c",
                     "host/io/native/binding.gyp", "scripts/build.mjs", "wit/dataplane.wit"]) assert.ok(files.includes(f), `packs ${f}`);
    for (const f of files) assert.not.match(f, /^(dist\/test|dist\/bench|test|node_modules|firmware|assembly)\//, `does not pack ${f}`);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test("npm pack | npm install: the installed nvedge runs nvedge pcap, with the core module and with the component", () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-pack-"));
  try {
    const p = spawnSync("npm", ["pack", "--ignore-scripts", "--pack-destination", dir, "--json"], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
    assert.is(p.status, 0, p.stderr);
    const tgz = join(dir, JSON.parse(p.stdout)[0].filename as string);
    const prefix = join(dir, "inst");
    const i = spawnSync("npm", ["install", "--prefix", prefix, tgz, "--prefer-offline", "--no-audit", "--no-fund"], { encoding: "utf8", timeout: 300_000 });
    assert.is(i.status, 0, `npm install: ${i.stderr}`);
    const bin = join(prefix, "node_modules", ".bin", "nvedge");
    const cfg = join(dir, "nve.json");
    writeFileSync(cfg, JSON.stringify(F.fixtureConfig(4)));
    const l = F.locals(100), r = F.remotes(100);
    const frame = F.accessFrame(l.L1, r.R1);
    writePcap(join(dir, "in.pcap"), [{ frame, tsSec: 1, tsUsec: 0, origLen: frame.length }]);
    for (const loader of ["core", "component"]) {
      const out = join(dir, `out-${loader}`);
      const run = spawnSync(bin, ["pcap", "--config", cfg, "--in", `${F.ACC1}=${join(dir, "in.pcap")}`, "--out-dir", out, "--dataplane", loader], { encoding: "utf8", timeout: 60_000 });
      assert.is(run.status, 0, `${loader}: ${run.stderr}`);
      assert.ok(readdirSync(out).includes("uplink.pcap"), `${loader}: uplink.pcap written`);
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test("bin/nvedge.js without dist/: one line saying the host is not built, exit 1", () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-nodist-"));
  try {
    mkdirSync(join(dir, "bin"));
    copyFileSync(join(ROOT, "bin", "nvedge.js"), join(dir, "bin", "nvedge.js"));
    writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
    assert.ok(!existsSync(join(dir, "dist")));
    const r = spawnSync(process.execPath, [join(dir, "bin", "nvedge.js"), "--help"], { encoding: "utf8", timeout: 30_000 });
    assert.is(r.status, 1);
    assert.is(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, /^nvedge: .*\/dist\/host\/cli\/main\.js is missing: the host is not built \(run npm run build\)\n$/);
    assert.is(r.stdout, "");
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test.run();
