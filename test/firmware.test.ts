// The firmware bundle and its installer (issue 12; firmware/build.mjs,
// firmware/install.mjs): x64 bundles built with `npm run firmware` and signed
// with keys from firmware/keygen, installed with --root into a plain folder
// (no systemd): A/B slots that alternate, refusals that change nothing (a
// tampered file, a wrong key, a truncated bundle: one line each), a failed
// health check switched back, --rollback, and /etc/nvedge and /var/lib/nvedge
// left alone. The bundles here are --no-runtime (the system's node) to stay
// small; test/firmware-qemu.test.ts runs a bundle with its own runtime.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, truncateSync, writeFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundle, install, keyPair, repack, resign, snapshot, ROOT } from "./support/firmware.js";

// One build; the second image is the first with another version, signed again
// with the same key (a build would give the same tree with another manifest).
const A = () => bundle({ arch: "x64", runtime: false, key: "k1", version: "1.0.0-a" });
let bFile: string | undefined;
const B = async () => ({ file: (bFile ??= await repack(A().file, "b", (d) => resign(d, "k1", (m) => { m.version = "1.0.0-b"; }))) });
// The health check the tests use: the new slot's launcher loads the bundled CLI.
const HEALTH = ["--health-cmd", `"$NVEDGE_SLOT/bin/nvedge" --help >/dev/null`, "--health-timeout", "30"];

function freshRoot(): string {
  const r = mkdtempSync(join(tmpdir(), "nvl-fwroot-"));
  return r;
}
const current = (root: string) => readlinkSync(join(root, "opt", "nvedge", "current"));
const version = (root: string, slot = "current") => JSON.parse(readFileSync(join(root, "opt", "nvedge", slot, "manifest.json"), "utf8")).version as string;
/** The active slot's CLI runs (its launcher, its bundle, its wasm). */
function runs(root: string): string {
  const r = spawnSync(join(root, "opt", "nvedge", "current", "bin", "nvedge"), ["--help"], { encoding: "utf8", timeout: 60_000 });
  assert.is(r.status, 0, `current/bin/nvedge --help: ${r.stderr}`);
  return r.stdout;
}
function oneLine(r: { code: number; err: string }, pattern: RegExp, label: string): void {
  assert.is(r.code, 1, `${label}: exit ${r.code} (${r.err})`);
  const lines = r.err.trim().split("\n");
  assert.is(lines.length, 1, `${label}: one line, got:\n${r.err}`);
  assert.match(lines[0], pattern, label);
  assert.not.match(r.err, /\n\s+at /, `${label}: no stack trace`);
}

const t = suite("firmware: bundle and A/B installer");

t("the bundle lists and signs every file; the first install verifies it, fills slot a, seeds /etc/nvedge and runs", () => {
  const a = A();
  const root = freshRoot();
  try {
    const r = install([a.file, "--root", root, "--pubkey", keyPair("k1").pub, ...HEALTH]);
    assert.is(r.code, 0, r.err);
    const line = JSON.parse(r.out);
    assert.is(line.installed, "1.0.0-a");
    assert.is(line.slot, "a");
    assert.is(current(root), "a");
    const slot = join(root, "opt", "nvedge", "a");
    const m = JSON.parse(readFileSync(join(slot, "manifest.json"), "utf8"));
    assert.is(m.arch, "x64");
    assert.is(m.runtime, false);
    for (const f of ["bin/nvedge", "lib/nvedge.mjs", "lib/io-worker.mjs", "lib/broker-thread.mjs", "lib/dataplane.wasm",
                     "lib/component/dataplane.component.wasm", "lib/native/nvedge_afpacket.node", "lib/native/nvedge_tuntx.node", "lib/native/lmdb.abi115.node", "lib/native/lmdb.abi127.node", "lib/native/lmdb.napi.node",
                     "etc/nvedge/nvedge.json", "keys/release.pub"]) {
      assert.ok(m.files[f], `manifest lists ${f}`);
      assert.is(statSync(join(slot, f)).size, m.files[f].size, `${f} size`);
    }
    assert.ok(!existsSync(join(slot, "runtime")), "--no-runtime: no runtime/");
    assert.ok(!Object.keys(m.files).some((f) => f.includes("node_modules")), "no node_modules tree");
    // The image carries the signer's key; the default config went to /etc/nvedge (it did not exist).
    assert.is(readFileSync(join(slot, "keys", "release.pub"), "utf8"), readFileSync(keyPair("k1").pub, "utf8"));
    assert.is(readFileSync(join(root, "etc", "nvedge", "nvedge.json"), "utf8"), readFileSync(join(ROOT, "firmware", "etc", "nvedge.json"), "utf8"));
    assert.match(runs(root), /usage: nvedge/);
    // The launcher gives Node the bundle's V8 flags (firmware/build.mjs NODE_FLAGS: the young generation's size, issue 15),
    // before the script: seen through NVEDGE_EMULATOR, which the launcher runs Node through
    const rec = join(root, "argv.txt"), emu = join(root, "emu.sh");
    writeFileSync(emu, `#!/bin/sh\nprintf '%s\\n' "$@" > "${rec}"\nexec "$@"\n`, { mode: 0o755 });
    const e = spawnSync(join(root, "opt", "nvedge", "current", "bin", "nvedge"), ["--help"], { encoding: "utf8", timeout: 60_000, env: { ...process.env, NVEDGE_EMULATOR: emu } });
    assert.is(e.status, 0, e.stderr);
    const argv = readFileSync(rec, "utf8").trim().split("\n");
    assert.equal(argv.slice(1, 3), ["--max-semi-space-size=2", join(slot, "lib", "nvedge.mjs")], argv.join(" "));
    // The bundle's systemd units (etc/systemd/) are installed, running the A/B launcher.
    for (const u of ["nvedge.service", "nvedge-agent@.service", "nvedge-ima.service"]) {
      assert.ok(m.files[`etc/systemd/${u}`], `manifest lists etc/systemd/${u}`);
      const unit = readFileSync(join(root, "etc", "systemd", "system", u), "utf8");
      assert.match(unit, /^ExecStart=\/opt\/nvedge\/current\/bin\/nvedge /m, `${u}: ${unit}`);
      assert.not.match(unit, /\/usr\/bin\/nvedge/, u);
    }
  } finally { rmSync(root, { recursive: true, force: true }); }
});

t("a second install goes to the other slot, a third back; /etc/nvedge and /var/lib/nvedge are left as they were", async () => {
  const root = freshRoot();
  try {
    assert.is(install([A().file, "--root", root, "--pubkey", keyPair("k1").pub, ...HEALTH]).code, 0);
    // The operator's config and the store: the installer must not touch them.
    writeFileSync(join(root, "etc", "nvedge", "nvedge.json"), '{"nve":"mine"}\n');
    mkdirSync(join(root, "var", "lib", "nvedge"), { recursive: true });
    writeFileSync(join(root, "var", "lib", "nvedge", "data.mdb"), "bindings");
    const keep = [...snapshot(join(root, "etc", "nvedge")), ...snapshot(join(root, "var"))];
    let r = install([(await B()).file, "--root", root, ...HEALTH]); // the installed image's key verifies it
    assert.is(r.code, 0, r.err);
    assert.is(JSON.parse(r.out).slot, "b");
    assert.is(JSON.parse(r.out).previous, "a");
    assert.is(current(root), "b");
    assert.is(version(root), "1.0.0-b");
    assert.is(version(root, "a"), "1.0.0-a", "the previous image stays in slot a");
    r = install([A().file, "--root", root, ...HEALTH]);
    assert.is(r.code, 0, r.err);
    assert.is(current(root), "a");
    assert.is(version(root), "1.0.0-a");
    assert.equal([...snapshot(join(root, "etc", "nvedge")), ...snapshot(join(root, "var"))], keep);
    runs(root);
  } finally { rmSync(root, { recursive: true, force: true }); }
});

t("refused with one line and nothing changed: a tampered file, a file added, a wrong key, a truncated bundle, no trusted key", async () => {
  const root = freshRoot();
  try {
    assert.is(install([A().file, "--root", root, "--pubkey", keyPair("k1").pub, ...HEALTH]).code, 0);
    const before = snapshot(root);
    const tampered = await repack((await B()).file, "tampered", (d) => appendFileSync(join(d, "lib", "nvedge.mjs"), "\n// changed\n"));
    oneLine(install([tampered, "--root", root, ...HEALTH]), /lib\/nvedge\.mjs is \d+ bytes, the manifest says \d+/, "tampered file");
    const sameSize = await repack((await B()).file, "same-size", (d) => {
      const f = join(d, "lib", "dataplane.wasm");
      const b = readFileSync(f);
      b[b.length - 1] ^= 0xff;
      writeFileSync(f, b);
    });
    oneLine(install([sameSize, "--root", root, ...HEALTH]), /lib\/dataplane\.wasm does not match its sha256/, "modified bytes");
    const added = await repack((await B()).file, "added", (d) => writeFileSync(join(d, "lib", "extra.mjs"), "evil()"));
    oneLine(install([added, "--root", root, ...HEALTH]), /lib\/extra\.mjs is not in the manifest/, "added file");
    const otherKey = await repack(A().file, "other-key", (d) => resign(d, "k2", (m) => { m.version = "1.0.0-evil"; }));
    oneLine(install([otherKey, "--root", root, ...HEALTH]), /signature of manifest\.json does not verify with the trusted key [0-9a-f]{16}/, "wrong key");
    const cut = join(root, "..", `${root.split("/").pop()}-cut.tar`);
    writeFileSync(cut, readFileSync((await B()).file).subarray(0, Math.floor(statSync((await B()).file).size / 2)));
    try {
      oneLine(install([cut, "--root", root, ...HEALTH]), /not a complete tar archive|is missing \(truncated bundle\)|bytes, the manifest says/, "truncated");
      truncateSync(cut, 0);
      oneLine(install([cut, "--root", root, ...HEALTH]), /no manifest\.json|not a complete tar archive/, "empty file");
    } finally { rmSync(cut, { force: true }); }
    oneLine(install([join(root, "nope.tar"), "--root", root, ...HEALTH]), /nope\.tar: no such file/, "missing bundle");
    assert.equal(snapshot(root), before, "nothing under --root changed");
    const empty = freshRoot();
    try {
      oneLine(install([A().file, "--root", empty, ...HEALTH]), /no trusted key: nothing is installed under .*; pass --pubkey FILE/, "first install without --pubkey");
      assert.equal(snapshot(empty), [], "nothing created");
    } finally { rmSync(empty, { recursive: true, force: true }); }
  } finally { rmSync(root, { recursive: true, force: true }); }
});

t("a failed health check switches back to the previous slot, which still runs; --rollback returns to the other slot", async () => {
  const root = freshRoot();
  try {
    assert.is(install([A().file, "--root", root, "--pubkey", keyPair("k1").pub, ...HEALTH]).code, 0);
    // The check sees the new slot (NVEDGE_SLOT) and fails.
    const r = install([(await B()).file, "--root", root, "--health-cmd", `test "$(basename "$NVEDGE_SLOT")" = a`, "--health-timeout", "1"]);
    oneLine(r, /slot b \(1\.0\.0-b\) failed its health check within 1s \(exit 1\); switched back to slot a \(1\.0\.0-a\)/, "health check");
    assert.is(current(root), "a");
    assert.is(version(root), "1.0.0-a");
    runs(root);
    // The restart command runs on each switch, for the slot switched to.
    const log = join(root, "restarts.log");
    const rb = install(["--rollback", "--root", root, "--restart-cmd", `echo "$NVEDGE_SLOT" >> ${log}`, ...HEALTH]);
    assert.is(rb.code, 0, rb.err);
    assert.is(current(root), "b");
    assert.is(version(root), "1.0.0-b");
    assert.equal(readFileSync(log, "utf8").trim().split("\n").map((l) => l.split("/").pop()), ["b"]);
    runs(root);
    const st = JSON.parse(install(["--status", "--root", root]).out);
    assert.equal([st.current, st.a.version, st.b.version], ["b", "1.0.0-a", "1.0.0-b"]);
    // Usage errors: exit 2.
    const u = install(["--rollback", A().file, "--root", root]);
    assert.is(u.code, 2);
    assert.match(u.err, /give a BUNDLE, --rollback or --status/);
  } finally { rmSync(root, { recursive: true, force: true }); }
});

t("firmware/build refuses a bad --arch and a key that is not Ed25519, with one line", () => {
  const bad = spawnSync(process.execPath, [join(ROOT, "firmware", "build.mjs"), "--arch", "mips"], { encoding: "utf8" });
  assert.is(bad.status, 1);
  assert.is(bad.stderr.trim(), "firmware: --arch mips: expected arm64 or x64");
  const dir = mkdtempSync(join(tmpdir(), "nvl-fwkey-"));
  try {
    const rsa = join(dir, "rsa.key");
    const g = spawnSync("openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", rsa]);
    if (g.status === 0) {
      const r = spawnSync(process.execPath, [join(ROOT, "firmware", "build.mjs"), "--arch", "x64", "--key", rsa, "--out", dir], { encoding: "utf8" });
      assert.is(r.status, 1);
      assert.match(r.stderr.trim(), /^firmware: --key .*rsa\.key: not an Ed25519 private key \(a rsa key, not ed25519\)$/);
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

t.run();
