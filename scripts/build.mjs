// Builds the project: the AssemblyScript data plane (release and debug wasm),
// the TypeScript host, tests and benchmarks (esbuild, one output file per
// source file, ESM), and the native packet I/O addon when its build file exists.
// The wasm step also builds the data plane component (scripts/component.mjs)
// and regenerates the ABI's files for the host and C (scripts/abi.mjs).
// The firmware bundles are built by firmware/build.mjs (npm run firmware).
// Flags: --wasm, --host, --addon build only that part; none builds all;
// --optional: an addon that fails to build is a warning (npm's install script).
import { readdirSync, statSync, existsSync, mkdirSync, rmSync } from "node:fs";
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
  const asc = (await import("assemblyscript/asc")).default;
  mkdirSync(join(root, "build"), { recursive: true });
  for (const target of ["release", "debug"]) {
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
  const { buildComponent } = await import("./component.mjs");
  try { await buildComponent(); } catch (e) {
    console.error(`build: the data plane component failed: ${e.message}`);
    process.exit(1);
  }
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
  const r = spawnSync(cmd[0], cmd[1], { cwd: gypDir, stdio: ["ignore", "ignore", "inherit"] });
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
  let r = spawnSync(cmd[0], cmd[1], { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });
  if (r.status === 0) {
    // the multiarch include directory holds asm/types.h, which linux/bpf.h needs
    const arch = spawnSync("gcc", ["-print-multiarch"], { encoding: "utf8" }).stdout?.trim() || `${process.arch === "arm64" ? "aarch64" : "x86_64"}-linux-gnu`;
    r = spawnSync("clang", ["-O2", "-g", "-target", "bpf", `-I/usr/include/${arch}`, "-c", "xsk_redirect.bpf.c", "-o", join("build", "Release", "xsk_redirect.bpf.o")],
      { cwd: dir, stdio: ["ignore", "ignore", "inherit"] });
  }
  if (r.status !== 0) console.error(`build: the AF_XDP addon in ${dir} failed to build (exit ${r.status}); --io afxdp will be unavailable`);
}

if (all || args.has("--wasm")) await buildWasm();
if (all || args.has("--host")) await buildHost();
if (all || args.has("--addon")) { buildAddon(); buildAfXdp(); }
