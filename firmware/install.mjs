// firmware/install BUNDLE [--root DIR] [--pubkey FILE] [--health-cmd CMD] [--health-timeout S] [--restart-cmd CMD]
// firmware/install --rollback [--root DIR] [--health-cmd CMD] [--health-timeout S] [--restart-cmd CMD]
// firmware/install --status [--root DIR]
//
// A/B install of a signed bundle (firmware/build.mjs) under DIR (default /):
//
//   DIR/opt/nvedge/a, DIR/opt/nvedge/b   the two slots, each a whole bundle tree
//   DIR/opt/nvedge/current               a symlink to the active slot ("a" or "b")
//
// 1. Verify: unpack into DIR/opt/nvedge/.staging, check manifest.sig against
//    the trusted key (--pubkey FILE, else the key the active image carries in
//    keys/release.pub), then every file's size and sha256, and that no file is
//    unlisted. Any fault: one line on stderr, the staging removed, exit 1, and
//    nothing else under DIR has changed.
// 2. Replace the inactive slot with it; seed DIR/etc/nvedge from the bundle
//    only when it does not exist (DIR/etc/nvedge and DIR/var/lib/nvedge are
//    never modified); copy the bundle's systemd units to DIR/etc/systemd/system.
// 3. Switch `current` (an atomic rename of a new symlink), restart the service
//    (--restart-cmd; default `systemctl restart nvedge.service` when DIR is /
//    and systemd runs, else nothing), and run the health check until it
//    passes or --health-timeout S (default 60) runs out: --health-cmd CMD (sh
//    -c, with NVEDGE_ROOT and NVEDGE_SLOT set), default: systemd says
//    nvedge.service is active and GET /readyz on the configured metrics
//    address (default 127.0.0.1:9464) answers 200.
// 4. When the check fails, switch back to the previous slot and restart it.
//
// --rollback switches to the other slot (it must hold an image) the same way.
// Prints one JSON line on success. Exit 1 on refusal or failed check, 2 on bad usage.
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, openSync, closeSync, writeSync, unlinkSync, readdirSync, writeFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { FirmwareError, MANIFEST, verifyDir, keyId } from "./manifest.mjs";

const USAGE = "usage: firmware/install BUNDLE|--rollback|--status [--root DIR] [--pubkey FILE] [--health-cmd CMD] [--health-timeout S] [--restart-cmd CMD]";

class UsageError extends Error {}

function parse(argv) {
  const o = { root: "/", healthTimeout: 60, rollback: false, status: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { const v = argv[++i]; if (v === undefined) throw new UsageError(`${a} needs a value`); return v; };
    if (a === "--root") o.root = val();
    else if (a === "--pubkey") o.pubkey = val();
    else if (a === "--health-cmd") o.healthCmd = val();
    else if (a === "--health-timeout") {
      const v = val();
      o.healthTimeout = Number(v);
      if (!Number.isFinite(o.healthTimeout) || o.healthTimeout <= 0 || o.healthTimeout > 3600) throw new UsageError(`--health-timeout ${v}: seconds, more than 0 and at most 3600`);
    } else if (a === "--restart-cmd") o.restartCmd = val();
    else if (a === "--rollback") o.rollback = true;
    else if (a === "--status") o.status = true;
    else if (a === "--help" || a === "-h") { console.log(USAGE); process.exit(0); }
    else if (a.startsWith("-")) throw new UsageError(`unknown option ${a}`);
    else if (o.bundle === undefined) o.bundle = a;
    else throw new UsageError(`one bundle only (got ${o.bundle} and ${a})`);
  }
  const modes = [o.bundle !== undefined, o.rollback, o.status].filter(Boolean).length;
  if (modes !== 1) throw new UsageError("give a BUNDLE, --rollback or --status");
  o.root = resolve(o.root);
  return o;
}

const base = (o) => join(o.root, "opt", "nvedge");
const slotDir = (o, s) => join(base(o), s);

/** The active slot ("a" | "b") or undefined before the first install. */
function activeSlot(o) {
  try {
    const t = readlinkSync(join(base(o), "current"));
    return t === "a" || t === "b" ? t : undefined;
  } catch { return undefined; }
}

function slotManifest(o, s) {
  try { return JSON.parse(readFileSync(join(slotDir(o, s), MANIFEST), "utf8")); } catch { return undefined; }
}

/** Points `current` at slot s: a new symlink renamed over the old one (atomic). */
function switchTo(o, s) {
  const tmp = join(base(o), ".current.new");
  rmSync(tmp, { force: true });
  symlinkSync(s, tmp);
  renameSync(tmp, join(base(o), "current"));
}

function sh(cmd, o, slot, timeoutMs) {
  return spawnSync("/bin/sh", ["-c", cmd], {
    encoding: "utf8", timeout: Math.max(1, timeoutMs),
    env: { ...process.env, NVEDGE_ROOT: o.root, NVEDGE_SLOT: slotDir(o, slot) },
  });
}

const systemd = () => existsSync("/run/systemd/system");

function restart(o, slot) {
  const cmd = o.restartCmd ?? (o.root === "/" && systemd() ? "systemctl restart nvedge.service" : undefined);
  if (!cmd) return;
  const r = sh(cmd, o, slot, 60_000);
  if (r.status !== 0) throw new FirmwareError(`restart (${cmd}) failed: ${lastLine(r)}`);
}

const lastLine = (r) => (r.error?.message ?? `${r.stderr ?? ""}${r.stdout ?? ""}`.trim().split("\n").pop()) || `exit ${r.status}`;

/** The default check: systemd has the service active and /readyz answers 200. */
async function defaultHealth(o) {
  if (systemd()) {
    const r = spawnSync("systemctl", ["is-active", "--quiet", "nvedge.service"]);
    if (r.status !== 0) return { ok: false, why: "nvedge.service is not active" };
  }
  let listen = "127.0.0.1:9464";
  try { listen = JSON.parse(readFileSync(join(o.root, "etc", "nvedge", "nvedge.json"), "utf8")).metrics?.listen ?? listen; } catch { /* default */ }
  try {
    const res = await fetch(`http://${listen}/readyz`, { signal: AbortSignal.timeout(2000) });
    return res.status === 200 ? { ok: true } : { ok: false, why: `/readyz answered ${res.status}` };
  } catch (e) { return { ok: false, why: `/readyz on ${listen}: ${e.cause?.code ?? e.message}` }; }
}

/** Runs the health check until it passes or the timeout runs out; the time it took, or the last failure. */
async function healthy(o, slot) {
  const t0 = Date.now();
  const end = t0 + o.healthTimeout * 1000;
  let why = "not run";
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) return { ok: false, why, ms: Date.now() - t0 };
    if (o.healthCmd) {
      const r = sh(o.healthCmd, o, slot, left);
      if (r.status === 0) return { ok: true, ms: Date.now() - t0 };
      why = lastLine(r);
    } else {
      const r = await defaultHealth(o);
      if (r.ok) return { ok: true, ms: Date.now() - t0 };
      why = r.why;
    }
    await new Promise((res) => setTimeout(res, Math.min(500, Math.max(0, end - Date.now()))));
  }
}

/** Takes DIR/opt/nvedge/.lock (O_EXCL): two installs at once would race on the inactive slot. */
function lock(o) {
  const f = join(base(o), ".lock");
  let fd;
  try { fd = openSync(f, "wx"); } catch {
    let pid = NaN;
    try { pid = Number(readFileSync(f, "utf8")); } catch { /* gone */ }
    let alive = false;
    try { process.kill(pid, 0); alive = true; } catch { /* stale */ }
    if (alive) throw new FirmwareError(`another install (pid ${pid}) holds ${f}`);
    rmSync(f, { force: true });
    fd = openSync(f, "wx");
  }
  writeSync(fd, String(process.pid));
  closeSync(fd);
  return () => { try { unlinkSync(f); } catch { /* already gone */ } };
}

function trustedKey(o) {
  const file = o.pubkey ?? join(base(o), "current", "keys", "release.pub");
  try { return readFileSync(file, "utf8"); } catch {
    if (o.pubkey) throw new FirmwareError(`--pubkey ${o.pubkey}: cannot read it`);
    throw new FirmwareError(`no trusted key: nothing is installed under ${base(o)} yet; pass --pubkey FILE for a first install`);
  }
}

/** Unpacks and verifies the bundle into DIR/opt/nvedge/.staging; the manifest. */
function stage(o, key) {
  const name = basename(o.bundle);
  if (!existsSync(o.bundle)) throw new FirmwareError(`${o.bundle}: no such file`);
  const staging = join(base(o), ".staging");
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  const r = spawnSync("tar", ["-xf", resolve(o.bundle), "-C", staging, "--no-same-owner", "--no-same-permissions"], { encoding: "utf8" });
  if (r.status !== 0) throw new FirmwareError(`${name}: not a complete tar archive (truncated or damaged): ${lastLine(r)}`);
  const m = verifyDir(staging, key, name);
  const hostArch = process.arch === "arm64" ? "arm64" : process.arch === "x64" ? "x64" : process.arch;
  if (m.arch !== hostArch && !process.env.NVEDGE_EMULATOR) throw new FirmwareError(`${name}: built for ${m.arch}, this machine is ${hostArch} (set NVEDGE_EMULATOR to install it anyway)`);
  for (const [f, e] of Object.entries(m.files)) chmodSync(join(staging, f), e.mode === "0755" ? 0o755 : 0o644);
  return { staging, m };
}

/** Switches to `to`, restarts, checks; on failure switches back to `from` (when there is one). */
async function activate(o, to, from) {
  switchTo(o, to);
  let check;
  try {
    restart(o, to);
    check = await healthy(o, to);
  } catch (e) {
    check = { ok: false, why: e.message, ms: 0 };
  }
  if (check.ok) return check;
  if (from) {
    switchTo(o, from);
    try { restart(o, from); } catch (e) { throw new FirmwareError(`slot ${to} failed its health check (${check.why}); switched back to slot ${from}, whose restart failed too: ${e.message}`); }
    throw new FirmwareError(`slot ${to} (${slotManifest(o, to)?.version}) failed its health check within ${o.healthTimeout}s (${check.why}); switched back to slot ${from} (${slotManifest(o, from)?.version})`);
  }
  throw new FirmwareError(`slot ${to} (${slotManifest(o, to)?.version}) failed its health check within ${o.healthTimeout}s (${check.why}); no previous slot to switch back to`);
}

function seedConfig(o, slot) {
  const etc = join(o.root, "etc", "nvedge");
  const shipped = join(slotDir(o, slot), "etc", "nvedge");
  if (!existsSync(etc) && existsSync(shipped)) cpSync(shipped, etc, { recursive: true });
  const units = join(slotDir(o, slot), "etc", "systemd");
  if (existsSync(units)) {
    const dest = join(o.root, "etc", "systemd", "system");
    mkdirSync(dest, { recursive: true });
    for (const f of readdirSync(units, { recursive: true })) {
      const src = join(units, String(f));
      // The units (etc/systemd/, issue 13) name /usr/bin/nvedge, where a package
      // puts it; on a device the A/B launcher is /opt/nvedge/current/bin/nvedge.
      if (/\.(service|socket|timer|path|target)$/.test(String(f)))
        writeFileSync(join(dest, basename(String(f))), readFileSync(src, "utf8").replaceAll("/usr/bin/nvedge ", "/opt/nvedge/current/bin/nvedge "));
    }
    if (o.root === "/" && systemd()) spawnSync("systemctl", ["daemon-reload"]);
  }
}

async function main() {
  const o = parse(process.argv.slice(2));
  const cur = activeSlot(o);
  if (o.status) {
    const s = (x) => { const m = slotManifest(o, x); return m ? { version: m.version, arch: m.arch, runtime: m.runtime } : null; };
    console.log(JSON.stringify({ root: o.root, current: cur ?? null, a: s("a"), b: s("b") }));
    return 0;
  }
  if (o.rollback) {
    if (!cur) throw new FirmwareError(`nothing is installed under ${base(o)}`);
    const other = cur === "a" ? "b" : "a";
    if (!slotManifest(o, other)) throw new FirmwareError(`slot ${other} holds no image: nothing to roll back to`);
    const unlock = lock(o);
    try {
      const t0 = Date.now();
      const check = await activate(o, other, cur);
      console.log(JSON.stringify({ rolledBack: true, slot: other, version: slotManifest(o, other).version, from: cur, healthyMs: check.ms, ms: Date.now() - t0 }));
    } finally { unlock(); }
    return 0;
  }
  const key = trustedKey(o);
  mkdirSync(base(o), { recursive: true });
  const unlock = lock(o);
  const t0 = Date.now();
  try {
    let staged;
    try { staged = stage(o, key); } catch (e) {
      rmSync(join(base(o), ".staging"), { recursive: true, force: true });
      throw e;
    }
    const target = cur === "a" ? "b" : "a";
    rmSync(slotDir(o, target), { recursive: true, force: true });
    renameSync(staged.staging, slotDir(o, target));
    seedConfig(o, target);
    const check = await activate(o, target, cur);
    console.log(JSON.stringify({ installed: staged.m.version, arch: staged.m.arch, slot: target, previous: cur ?? null, keyId: keyId(key), healthyMs: check.ms, ms: Date.now() - t0 }));
  } finally { unlock(); }
  return 0;
}

main().then((code) => { process.exitCode = code; }, (e) => {
  if (e instanceof UsageError) { console.error(`install: ${e.message}\n${USAGE}`); process.exitCode = 2; return; }
  console.error(`install: ${e instanceof FirmwareError ? e.message : e?.message ?? e}`);
  process.exitCode = 1;
});
