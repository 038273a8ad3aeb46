// The firmware tests' shared setup (test/firmware*.test.ts): signing keys,
// bundles built once per test process (firmware/build.mjs, in a temporary
// directory removed at exit), the installer as a child process, a bundle
// unpacked / modified / packed again, and a snapshot of a directory tree to
// show that a refused install changed nothing.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

/** dist/test/support/x.js → the repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const BUILD = join(ROOT, "firmware", "build.mjs");
export const INSTALL = join(ROOT, "firmware", "install.mjs");
/** How a test runs an arm64 slot on this x86 machine (no binfmt_misc here). */
export const EMULATOR = "qemu-aarch64-static -L /usr/aarch64-linux-gnu";

let work: string | undefined;
/** One temporary directory per test process for keys and bundles (nvl- prefix), removed at exit. */
export function workDir(): string {
  if (!work) {
    work = mkdtempSync(join(tmpdir(), "nvl-fw-"));
    const w = work;
    process.once("exit", () => rmSync(w, { recursive: true, force: true }));
  }
  return work;
}

/** Why the arm64 bundle cannot be built or run here, or null (scripts/system-deps.sh installs both). */
export function crossMissing(): string | null {
  const has = (c: string) => spawnSync("sh", ["-c", `command -v ${c}`]).status === 0;
  const miss = ["aarch64-linux-gnu-gcc", "qemu-aarch64-static"].filter((c) => !has(c));
  if (!existsSync("/usr/aarch64-linux-gnu/lib")) miss.push("/usr/aarch64-linux-gnu (libc6-arm64-cross)");
  return miss.length ? `missing ${miss.join(", ")}` : null;
}

const keys = new Map<string, { key: string; pub: string }>();
/** An Ed25519 key pair made by firmware/keygen (once per name). */
export function keyPair(name: string): { key: string; pub: string } {
  let k = keys.get(name);
  if (!k) {
    const r = spawnSync(process.execPath, [join(ROOT, "firmware", "keygen.mjs"), "--out", join(workDir(), "keys"), "--name", name], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`keygen: ${r.stderr}`);
    k = JSON.parse(r.stdout) as { key: string; pub: string };
    keys.set(name, k);
  }
  return k;
}

const bundles = new Map<string, { file: string; bytes: number }>();
/** A bundle built by `npm run firmware` (once per set of arguments in a test process). */
export function bundle(o: { arch: "x64" | "arm64"; runtime: boolean; key: string; version: string }): { file: string; bytes: number } {
  const id = JSON.stringify(o);
  let b = bundles.get(id);
  if (!b) {
    const out = join(workDir(), "out");
    const args = [BUILD, "--arch", o.arch, "--key", keyPair(o.key).key, "--version", o.version, "--out", out, ...(o.runtime ? [] : ["--no-runtime"])];
    const r = spawnSync(process.execPath, args, { encoding: "utf8", timeout: 300_000 });
    if (r.status !== 0) throw new Error(`firmware build ${id} failed (${r.status}): ${r.stderr}`);
    const line = JSON.parse(r.stdout.trim().split("\n").pop()!) as { bundle: string; bytes: number };
    b = { file: line.bundle, bytes: line.bytes };
    bundles.set(id, b);
  }
  return b;
}

export interface Run { code: number; out: string; err: string }

/** firmware/install ARGS (bounded in time). */
export function install(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [INSTALL, ...args], { encoding: "utf8", timeout: 120_000, env: { ...process.env, ...env } });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** A bundle unpacked into a fresh directory, `mutate`d, and packed again as a new tar. */
export async function repack(tar: string, name: string, mutate: (dir: string) => void | Promise<void>): Promise<string> {
  const dir = join(workDir(), `repack-${name}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const x = spawnSync("tar", ["-xf", tar, "-C", dir]);
  if (x.status !== 0) throw new Error(`tar -xf ${tar}: ${x.stderr}`);
  await mutate(dir);
  const out = join(workDir(), `${name}.tar`);
  const c = spawnSync("tar", ["-cf", out, "-C", dir, "."]);
  if (c.status !== 0) throw new Error(`tar -cf ${out}: ${c.stderr}`);
  rmSync(dir, { recursive: true, force: true });
  return out;
}

/**
 * Rewrites an unpacked bundle's manifest (after `edit`) and signs it with the
 * key pair `keyName` (firmware/manifest.mjs, as firmware/build.mjs does): a
 * bundle that differs from a built one without another build.
 */
export async function resign(dir: string, keyName: string, edit: (m: Record<string, unknown>) => void = () => {}): Promise<void> {
  const M = await import(pathToFileURL(join(ROOT, "firmware", "manifest.mjs")).href);
  const m = JSON.parse(readFileSync(join(dir, M.MANIFEST), "utf8"));
  m.files = M.fileTable(dir);
  edit(m);
  const bytes = Buffer.from(JSON.stringify(m, null, 2) + "\n");
  writeFileSync(join(dir, M.MANIFEST), bytes);
  writeFileSync(join(dir, M.SIGNATURE), M.signBytes(bytes, readFileSync(keyPair(keyName).key, "utf8")) + "\n");
}

/** Every entry under dir: path, kind, mode, and content hash (files) or target (links); sorted. */
export function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name), r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out.push(`${r} -> ${readlinkSync(p)}`);
      else if (st.isDirectory()) { out.push(`${r}/ ${(st.mode & 0o7777).toString(8)}`); walk(p, r); }
      else out.push(`${r} ${(st.mode & 0o7777).toString(8)} ${createHash("sha256").update(readFileSync(p)).digest("hex")}`);
    }
  };
  walk(dir, "");
  return out;
}
