// Builds the project: the AssemblyScript data plane (release and debug wasm),
// the TypeScript host, tests and benchmarks (esbuild, one output file per
// source file, ESM), and the native packet I/O addon when its build file exists.
// The wasm step also builds the data plane component (scripts/component.mjs)
// and regenerates the ABI's files for the host and C (scripts/abi.mjs).
// The firmware bundles are built by firmware/build.mjs (npm run firmware).
// Flags: --wasm, --host, --addon build only that part; none builds all;
// --optional: an addon that fails to build is a warning (npm's install script).
// The wasm and the addons are rebuilt only when their inputs changed (a hash of
// their sources, the compilers' versions and this script, kept beside the
// output): `npm test` builds first, and an unchanged data plane and addons cost
// some 20 s of CPU to build again. --force (or NVEDGE_BUILD_FORCE=1) rebuilds all.
import { readdirSync, statSync, existsSync, mkdirSync, rmSync, readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = new Set(process.argv.slice(2));
const all = !args.has("--wasm") && !args.has("--host") && !args.has("--addon");
// --optional (the package's install script): a failed addon build is a
// warning, not a failed install; --io none and everything else still work.
const optional = args.has("--optional");
// The AssemblyScript compiler reads a "--wasm" from process.argv itself (to
// load a compiler build); hide our flag from it.
process.argv = process.argv.filter((a) => a !== "--wasm");
const force = args.has("--force") || process.env.NVEDGE_BUILD_FORCE === "1";

/** sha256 over `paths` (a directory: its files, recursively, without build/ and node_modules/) and `extra` strings. */
function inputsHash(paths, extra = []) {
  const h = createHash("sha256").update(`${process.version}\n${extra.join("\n")}\n`);
  const add = (p) => {
    if (!existsSync(p)) { h.update(`${p} absent\n`); return; }
    if (statSync(p).isDirectory()) {
      for (const n of readdirSync(p).sort()) if (n !== "build" && n !== "node_modules") add(join(p, n));
    } else h.update(`${p}\n`).update(readFileSync(p));
  };
  for (const p of paths) add(p);
  return h.digest("hex");
}
/** A package's version in node_modules (part of a step's inputs). */
const pkgVersion = (name) => { try { return `${name}@${JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version}`; } catch { return `${name}@none`; } };
/** Whether `outputs` exist and were built from inputs of this hash (its stamp). */
function upToDate(stamp, hash, outputs) {
  return !force && outputs.every((o) => existsSync(o)) && existsSync(stamp) && readFileSync(stamp, "utf8") === hash;
}

function walk(dir, out = []) {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === "node_modules" || name === "build") continue;
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith(".ts") && !p.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

async function buildWasm() {
  mkdirSync(join(root, "build"), { recursive: true });
  const stamp = join(root, "build", ".wasm-inputs");
  const hash = inputsHash(["assembly", "asconfig.json", "wit", "scripts/build.mjs", "scripts/component.mjs"].map((p) => join(root, p)),
    ["assemblyscript", "binaryen", "@bytecodealliance/jco"].map(pkgVersion));
  const outputs = ["dataplane.wasm", "dataplane.debug.wasm", "dataplane.d.ts", "component/dataplane.js", "component/dataplane.component.wasm"].map((f) => join(root, "build", f));
  const fresh = upToDate(stamp, hash, outputs);
  if (!fresh) rmSync(stamp, { force: true });
  const asc = (await import("assemblyscript/asc")).default;
  for (const target of fresh ? [] : ["release", "debug"]) {
    const { error, stderr } = await asc.main(
      ["--config", join(root, "asconfig.json"), "--target", target],
      { stdout: process.stdout, stderr: process.stderr },
    );
    if (error) {
      console.error(`build: assembly/ (${target}) failed: ${error.message}`);
      process.exit(1);
    }
    void stderr;
  }
  // The ABI's generated files (scripts/abi.mjs): the host's abi.ts and the
  // C headers, from assembly/ and the compiler's build/dataplane.d.ts. Kept
  // in git; CI (a clean clone) refuses a commit whose copies are stale rather
  // than rewriting them.
  const abi = await import("./abi.mjs");
  if (process.env.CI) {
    const stale = await abi.stale();
    if (stale.length) {
      console.error(`build: ${stale.join(", ")} are not what assembly/ makes: run node scripts/build.mjs and commit them`);
      process.exit(1);
    }
  } else {
    for (const p of await abi.write()) console.error(`build: regenerated ${p} from assembly/ (commit it)`);
  }
  // The same core as a WebAssembly component (wit/dataplane.wit) and its jco bindings.
  if (fresh) return;
  const { buildComponent } = await import("./component.mjs");
  try { await buildComponent(); } catch (e) {
    console.error(`build: the data plane component failed: ${e.message}`);
    process.exit(1);
  }
  writeFileSync(stamp, hash);
}

async function buildHost() {
  const esbuild = await import("esbuild");
  // A fresh dist/: a source file deleted or renamed must not leave its old
  // output behind (a removed test file would still run from dist/test).
  rmSync(join(root, "dist"), { recursive: true, force: true });
  const entryPoints = [...walk(join(root, "host")), ...walk(join(root, "test")), ...walk(join(root, "bench"))];
  await esbuild.build({
    entryPoints,
    outdir: join(root, "dist"),
    outbase: root,
    format: "esm",
    platform: "node",
    target: "node20",
    sourcemap: "inline",
    logLevel: "warning",
  });
  // The packet I/O worker's entry as one file (issue 15: process start to the
  // first forwarded frame): each worker thread loads its module graph anew,
  // and Node's ES module loader pays per module (resolve, read, link: some
  // 40 ms of each worker's start-up on this 2-core machine against one file of
  // the same code). Built from the same sources in the same run as dist/host,
  // so it is never older than them; host/paths.ts workerUrl prefers it.
  // node_modules stay outside (the worker imports none today).
  // Both bundles below: ESM for Node 20, npm packages left to node_modules.
  const bundled = { bundle: true, packages: "external", format: "esm", platform: "node", target: "node20", sourcemap: "linked", logLevel: "warning" };
  await esbuild.build({
    entryPoints: [join(root, "host", "io", "worker.ts")],
    outfile: join(root, "dist", "bundle", "io-worker.mjs"),
    ...bundled,
  });
  // The CLI for `nvedge run` (bin/nvedge.js), for the same reason: its
  // static imports and the packet I/O start in one file, ahead of the workers'
  // spawn; what it loads later, as it needs it (the store, the validator, the
  // control plane), in chunks of their own (code splitting keeps each dynamic
  // import lazy). Flat in dist/bundle/, two levels below the root as
  // dist/host/*.js are (host/paths.ts root).
  await esbuild.build({
    entryPoints: { main: join(root, "host", "cli", "main.ts") },
    outdir: join(root, "dist", "bundle"),
    outExtension: { ".js": ".mjs" },
    chunkNames: "chunk-[hash]",
    splitting: true,
    ...bundled,
  });
}

function buildAddon() {
  const gypDir = join(root, "host", "io", "native");
  if (!existsSync(join(gypDir, "binding.gyp"))) return;
  if (process.platform !== "linux") return; // AF_PACKET is Linux-only
  const npmGyp = [
    join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  ].find((p) => existsSync(p));
  // Use the headers installed with this node (no download: the build must work offline).
  const prefix = join(dirname(process.execPath), "..");
  const gypArgs = ["rebuild", "--loglevel=warn", ...(existsSync(join(prefix, "include", "node", "node_api.h")) ? [`--nodedir=${prefix}`] : [])];
  const cmd = npmGyp ? [process.execPath, [npmGyp, ...gypArgs]] : ["node-gyp", gypArgs];
  const stamp = join(gypDir, "build", ".inputs");
  // every source under host/io/native (the AF_XDP addon's too: shared headers may move between them)
  const hash = inputsHash([gypDir, join(root, "scripts", "build.mjs")], gypArgs);
  if (upToDate(stamp, hash, ["nvedge_afpacket.node", "nvedge_tuntx.node"].map((f) => join(gypDir, "build", "Release", f)))) return;
  const r = spawnSync(cmd[0], cmd[1], { cwd: gypDir, stdio: ["ignore", "ignore", "inherit"] });
  if (r.status === 0) writeFileSync(stamp, hash);
  if (r.status !== 0) {
    console.error(`build: the packet I/O addon in ${gypDir} failed to build (node-gyp exit ${r.status}); --io afpacket will be unavailable`);
    if (optional) return;
    process.exit(1);
  }
}

/**
 * The AF_XDP addon (`--io afxdp`, host/io/native/afxdp) and its XDP program,
 * always optional: it needs libbpf's headers and clang (scripts/system-deps.sh
 * installs them); without them `--io afxdp` says it is not built and
 * `--io afpacket` is unaffected.
 */
function buildAfXdp() {
  const dir = join(root, "host", "io", "native", "afxdp");
  if (process.platform !== "linux" || !existsSync(join(dir, "binding.gyp"))) return;
  const missing = [["/usr/include/bpf/libbpf.h", "libbpf-dev"], ["/usr/include/linux/if_xdp.h", "linux-libc-dev"]]
    .filter(([f]) => !existsSync(f)).map(([, pkg]) => pkg);
  if (spawnSync("clang", ["--version"], { stdio: "ignore" }).status !== 0) missing.push("clang");
  if (missing.length) {
    console.error(`build: --io afxdp not built (missing ${missing.join(", ")}; scripts/system-deps.sh installs them)`);
    return;
  }
  const npmGyp = join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js");
  const prefix = join(dirname(process.execPath), "..");
  const gypArgs = ["rebuild", "--loglevel=warn", ...(existsSync(join(prefix, "include", "node", "node_api.h")) ? [`--nodedir=${prefix}`] : [])];
  const cmd = existsSync(npmGyp) ? [process.execPath, [npmGyp, ...gypArgs]] : ["node-gyp", gypArgs];
  // every source under host/io/native (the shared ones it includes too)
  const stamp = join(dir, "build", ".inputs");
  const hash = inputsHash([join(root, "host", "io", "native"), join(root, "scripts", "build.mjs")],
    [...gypArgs, spawnSync("clang", ["--version"], { encoding: "utf8" }).stdout ?? ""]);
  if (upToDate(stamp, hash, [join(dir, "build", "Release", "xsk_redirect.bpf.o"), join(dir, "build", "Release", "nvedge_afxdp.node")])) return;
  let r = spawnSync(cmd[0], cmd[1], { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });
  if (r.status === 0) {
    // the multiarch include directory holds asm/types.h, which linux/bpf.h needs
    const arch = spawnSync("gcc", ["-print-multiarch"], { encoding: "utf8" }).stdout?.trim() || `${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux-gnu`;
    r = spawnSync("clang", ["-O2", "-g", "-target", "bpf", `-I/usr/include/${arch}`, "-c", "xsk_redirect.bpf.c", "-o", join("build", "Release", "xsk_redirect.bpf.o")],
      { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });
  }
  if (r.status !== 0) console.error(`build: the AF_XDP addon in ${dir} failed to build (exit ${r.status}); --io afxdp will be unavailable`);
  else writeFileSync(stamp, hash);
}

if (all || args.has("--wasm")) await buildWasm();
if (all || args.has("--host")) await buildHost();
if (all || args.has("--addon")) { buildAddon(); buildAfXdp(); }
