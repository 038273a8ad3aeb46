// `npm run firmware -- --arch arm64|x64 [--no-runtime] [--key FILE] [--out DIR]`
//
// Builds the signed device bundle firmware/out/nvedge-<version>-linux-<arch>.tar
// (…-noruntime.tar with --no-runtime). Its tree is an installed slot
// (firmware/install.mjs unpacks it into /opt/nvedge/a or b):
//
//   bin/nvedge               launcher: lib/nvedge.mjs on runtime/bin/node (or the system's node), through $NVEDGE_EMULATOR when set
//   bin/nvedge-install       firmware/install.mjs on the same Node, for the next update
//   lib/nvedge.mjs           esbuild bundle of the CLI (host/cli/main.ts), no node_modules tree
//   lib/io-worker.mjs        the packet I/O worker thread (host/io/worker.ts)
//   lib/broker-thread.mjs    the embedded broker's thread (host/broker/broker-thread.ts)
//   lib/install.mjs          the installer
//   lib/dataplane.wasm       the data plane core module
//   lib/component/           the data plane as a WebAssembly component (+ jco's bindings, used by --dataplane component)
//   lib/native/nvedge_afpacket.node  the AF_PACKET addon, compiled for the arch against the pinned Node's headers
//   lib/native/nvedge_tuntx.node  the tunnel super-frame TX path (encap TCP whole, Linux 6.17+), from the same build
//   lib/native/lmdb.abi<N>.node  lmdb's prebuilt binary for the arch and the pinned Node's ABI
//                            (lmdb.napi.node when lmdb ships none for that ABI)
//                            (--no-runtime: every ABI lmdb ships, and lmdb.napi.node)
//   runtime/bin/node         the pinned Node runtime for the arch (firmware/pins.json), unless --no-runtime
//   etc/nvedge/nvedge.json   the default configuration (installed to /etc/nvedge when that does not exist)
//   etc/systemd/…            every file under the checkout's etc/systemd/
//   keys/release.pub         the public key of the signer: the key the installed image trusts for the next bundle
//   manifest.json, manifest.sig  (firmware/manifest.mjs)
//
// The key: --key FILE, else $NVEDGE_FIRMWARE_KEY, else firmware/.keys/dev.key
// (made on first use, with a warning: a development key, not a release key).
// Pinned downloads (npm pack, integrity-checked) are cached in firmware/.cache.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, cpSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { FORMAT, MANIFEST, SIGNATURE, fileTable, signBytes } from "./manifest.mjs";
import { makeKeyPair, publicFromPrivate } from "./keys.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..");
const pins = JSON.parse(readFileSync(join(here, "pins.json"), "utf8"));
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const ARCHES = { x64: { gyp: "x64", cc: "gcc", triple: "x86_64-linux-gnu" }, arm64: { gyp: "arm64", cc: "aarch64-linux-gnu-gcc", triple: "aarch64-linux-gnu" } };

function fail(msg) {
  console.error(`firmware: ${msg}`);
  process.exit(1);
}

function parse(argv) {
  const o = { arch: undefined, runtime: true, key: process.env.NVEDGE_FIRMWARE_KEY, out: join(here, "out"), version: pkg.version };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => { const v = argv[++i]; if (v === undefined) fail(`${a} needs a value`); return v; };
    if (a === "--arch") o.arch = val();
    else if (a === "--no-runtime") o.runtime = false;
    else if (a === "--key") o.key = val();
    else if (a === "--out") o.out = val();
    else if (a === "--version") o.version = val();
    else if (a === "--help" || a === "-h") {
      console.log("usage: npm run firmware -- --arch arm64|x64 [--no-runtime] [--key FILE] [--out DIR] [--version V]");
      process.exit(0);
    } else fail(`unknown argument ${a} (usage: --arch arm64|x64 [--no-runtime] [--key FILE] [--out DIR] [--version V])`);
  }
  if (!o.arch) o.arch = process.arch === "arm64" ? "arm64" : "x64";
  if (!ARCHES[o.arch]) fail(`--arch ${o.arch}: expected arm64 or x64`);
  return o;
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", ...opts });
  if (r.error) fail(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(" ")} exited ${r.status}: ${(r.stderr || r.stdout || "").trim().split("\n").slice(-3).join(" | ")}`);
  return r.stdout;
}

/**
 * The pinned npm package, unpacked in <cache>/<name>-<version>/package (npm
 * pack + the pin's sha512 integrity, checked before anything is unpacked);
 * firmware/.cache unless `cache` is given. Throws, naming the pin, on a
 * download that fails or does not match. Exported for the data plane bench
 * (bench/dataplane.ts), which runs the wasm under the Node this bundle ships.
 */
export function fetchPinned(pin, version, cacheDir = join(here, ".cache")) {
  const cache = resolve(cacheDir); // npm pack runs in it: --pack-destination relative to it
  mkdirSync(cache, { recursive: true });
  const base = `${pin.package.replace(/^@/, "").replace("/", "-")}-${version}`;
  const dir = join(cache, base);
  if (existsSync(join(dir, "package", "package.json"))) return join(dir, "package");
  const tgz = join(cache, `${base}.tgz`);
  if (!existsSync(tgz)) {
    const r = spawnSync("npm", ["pack", `${pin.package}@${version}`, "--pack-destination", cache, "--silent"], { cwd: cache, encoding: "utf8" });
    if (r.error || r.status !== 0) throw new Error(`npm pack ${pin.package}@${version}: ${r.error?.message ?? (r.stderr || "").trim().split("\n").slice(-2).join(" | ")}`);
  }
  const got = `sha512-${createHash("sha512").update(readFileSync(tgz)).digest("base64")}`;
  if (got !== pin.integrity) {
    rmSync(tgz, { force: true });
    throw new Error(`${pin.package}@${version}: integrity ${got} is not the pinned ${pin.integrity} (firmware/pins.json)`);
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const t = spawnSync("tar", ["-xzf", tgz, "-C", dir], { encoding: "utf8" });
  if (t.error || t.status !== 0) throw new Error(`tar -xzf ${tgz}: ${t.error?.message ?? t.stderr.trim()}`);
  return join(dir, "package");
}

/** The pinned Node runtime for `arch` (pins.json `node`): its bin/node and version. */
export function pinnedNode(arch, cache) {
  const pin = pins.node[arch];
  if (!pin) throw new Error(`firmware/pins.json pins no Node runtime for ${arch}`);
  return { node: join(fetchPinned(pin, pins.node.version, cache), "bin", "node"), version: pins.node.version };
}

function pinned(pin, version) {
  try { return fetchPinned(pin, version); } catch (e) { return fail(e.message); }
}

/** node-gyp, as scripts/build.mjs finds it (the one npm ships with this node). */
function nodeGyp() {
  const p = join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js");
  return existsSync(p) ? [process.execPath, [p]] : ["node-gyp", []];
}

/** The addons host/io/native/binding.gyp builds, each shipped in lib/native. */
const ADDONS = ["nvedge_afpacket", "nvedge_tuntx"];

/**
 * host/io/native built for the arch against the pinned Node's headers, in a
 * copy (the checkout's own build stays); cached by the hash of its sources,
 * the arch and the Node version. Returns each addon's file by name.
 */
function buildAddon(arch, nodeDir) {
  const a = ARCHES[arch];
  const srcDir = join(root, "host", "io", "native");
  const sources = readdirSync(srcDir).filter((f) => f.endsWith(".c") || f.endsWith(".h") || f === "binding.gyp").sort();
  const h = createHash("sha256").update(`${arch} ${pins.node.version}\n`);
  for (const f of sources) h.update(`${f}\n`).update(readFileSync(join(srcDir, f)));
  // Every target of binding.gyp comes from one node-gyp run: the AF_PACKET
  // addon and the tunnel TX path (tuntx.c) that its workers load beside it.
  const key = h.digest("hex").slice(0, 16);
  const cached = Object.fromEntries(ADDONS.map((n) => [n, join(here, ".cache", `addon-${arch}-${key}-${n}.node`)]));
  if (ADDONS.every((n) => existsSync(cached[n]))) return cached;
  const cc = spawnSync(a.cc, ["--version"]);
  if (cc.status !== 0) fail(`${a.cc} is missing: bash scripts/system-deps.sh installs gcc-aarch64-linux-gnu`);
  const work = join(here, ".cache", `addon-${arch}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  for (const f of sources) copyFileSync(join(srcDir, f), join(work, f));
  const [cmd, pre] = nodeGyp();
  // CC/LINK: the cross compiler links too (the addon is C only, no g++ needed).
  const env = { ...process.env, CC: a.cc, LINK: a.cc, CXX: a.cc, AR: a.cc.replace(/gcc$/, "ar") };
  run(cmd, [...pre, "rebuild", "--loglevel=warn", `--arch=${a.gyp}`, `--nodedir=${nodeDir}`], { cwd: work, env });
  const want = arch === "arm64" ? /ARM aarch64/ : /x86-64/;
  for (const n of ADDONS) {
    const out = join(work, "build", "Release", `${n}.node`);
    const file = run("file", ["-b", out]).trim();
    if (!want.test(file)) fail(`the addon ${n} built for ${arch} is ${file}`);
    copyFileSync(out, cached[n]);
  }
  rmSync(work, { recursive: true, force: true });
  return cached;
}

async function bundleHost(stage, target) {
  const esbuild = await import("esbuild");
  const paths = join(root, "host", "paths.ts");
  // lmdb finds its native binary through node-gyp-build-optional-packages
  // (relative to its own package directory, which a bundle does not have):
  // in the bundle it is lib/native/lmdb.abi<N>.node, through host/paths.ts.
  const lmdbNative = {
    name: "lmdb-native",
    setup(b) {
      b.onResolve({ filter: /^node-gyp-build-optional-packages$/ }, () => ({ path: "lmdb-native", namespace: "nvedge" }));
      b.onLoad({ filter: /.*/, namespace: "nvedge" }, () => ({
        resolveDir: root,
        loader: "js",
        contents: `import { createRequire } from "node:module";
import { lmdbAddonPath } from ${JSON.stringify(paths)};
export default function load() { return createRequire(import.meta.url)(lmdbAddonPath()); }`,
      }));
    },
  };
  const common = {
    bundle: true, platform: "node", format: "esm", target, minify: false, legalComments: "none",
    define: { NVEDGE_BUNDLE: "true" },
    // lmdb's CommonJS build (one rollup'd file): bundled from its ES module
    // sources, getRange never returns (their circular imports evaluate in
    // another order in one file; found by test/firmware-qemu.test.ts).
    alias: { lmdb: join(root, "node_modules", "lmdb", "dist", "index.cjs") },
    // CommonJS dependencies (mqtt, aedes, lmdb) call require() for Node
    // built-ins, and lmdb's reads __filename.
    banner: { js: "import { createRequire as __nvedgeRequire } from 'node:module'; import { fileURLToPath as __nvedgePath } from 'node:url'; const require = __nvedgeRequire(import.meta.url); const __filename = __nvedgePath(import.meta.url);" },
    // msgpackr's native extension is optional (it falls back to JS); bun:ffi is lmdb's Bun-only path.
    external: ["msgpackr-extract", "bun:ffi"],
    plugins: [lmdbNative], logLevel: "warning",
  };
  await esbuild.build({
    ...common,
    stdin: { contents: `import { main } from "./host/cli/main.ts";
main(process.argv.slice(2)).then(
  (code) => { if (typeof code === "number") process.exitCode = code; },
  (err) => { console.error(\`nvedge: \${err?.message ?? err}\`); process.exitCode = 1; },
);`, resolveDir: root, sourcefile: "nvedge-cli.ts", loader: "ts" },
    outfile: join(stage, "lib", "nvedge.mjs"),
  });
  await esbuild.build({ ...common, entryPoints: [join(root, "host", "io", "worker.ts")], outfile: join(stage, "lib", "io-worker.mjs") });
  await esbuild.build({ ...common, entryPoints: [join(root, "host", "broker", "broker-thread.ts")], outfile: join(stage, "lib", "broker-thread.mjs") });
  await esbuild.build({ ...common, plugins: [], define: {}, entryPoints: [join(here, "install.mjs")], outfile: join(stage, "lib", "install.mjs") });
}

/**
 * V8 flags the launcher gives Node for every nvedge process (issue 15;
 * bin/nvedge.js's first line gives the same: test/launcher-flags.test.ts).
 * --max-semi-space-size=2: a young generation of 2 MiB semi-spaces. A
 * scavenge's pause is the copying of what survives it, and in the NVE much
 * of that is the records just stored (the memory store keeps each attach's
 * record: ~700 B promoted per request), so the pause grows with the space.
 * In the control bench's paced case (2,000 attaches/s, bench/README.md
 * "pace15") at 16 MiB (Node 20's default; Node 24's V8 sizes it from the
 * machine's memory: ~16 ms pauses on a 24 GB machine, "cp17") the NVE
 * scavenged 11-14 times per 5 s for 3.7-11.8 ms each (means per case),
 * every request arriving meanwhile held; at 2 MiB 94-104 times for 1.0-1.9
 * ms, at 1 MiB 179-212 times for 0.6-2.1 ms. 1 MiB cost the NVE ~19 µs more per attach at max over TCP
 * (82 against 63, the socket's reads filling the small space) and ~25 more
 * per paced request; 2 MiB 69 (64 against 60 on a Unix socket). The paced
 * p99 itself did not move measurably (idle A/B, 12 cases each: medians 9.8 ms
 * at 16 MiB, 8.7 at 2; up to 4 mark-compacts in a case against 2, bench/README.md
 * "Session 13: the lead's idle figures"): 2 MiB is kept for its shorter pauses. The bench
 * runs the NVE with these flags (bench/control.ts: the firmware's with
 * NVEDGE_BENCH_NVE_NODE=firmware, bin/nvedge.js's line otherwise).
 */
export const NODE_FLAGS = ["--max-semi-space-size=2"];

const LAUNCHER = (script, what) => `#!/bin/sh
# ${what} (nvedge firmware bundle): runs lib/${script} on the bundled Node
# (runtime/bin/node) or, in a --no-runtime bundle, on the system's node.
# NVEDGE_EMULATOR, when set, runs Node through it (e.g. an arm64 slot on x86:
# NVEDGE_EMULATOR='qemu-aarch64-static -L /usr/aarch64-linux-gnu').
slot=$(cd "$(dirname "$0")/.." && pwd -P) || exit 1
node="$slot/runtime/bin/node"
if [ ! -x "$node" ]; then
  node=$(command -v node) || { echo "nvedge: no Node.js runtime in $slot/runtime and no node on PATH" >&2; exit 1; }
fi
# shellcheck disable=SC2086  # NVEDGE_EMULATOR is a command and its arguments
exec $NVEDGE_EMULATOR "$node" ${NODE_FLAGS.join(" ")} "$slot/lib/${script}" "$@"
`;

function keyPair(keyFile) {
  let file = keyFile;
  if (!file) {
    file = join(here, ".keys", "dev.key");
    if (!existsSync(file)) {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
      const k = makeKeyPair();
      writeFileSync(file, k.privatePem, { mode: 0o600 });
      writeFileSync(join(dirname(file), "dev.pub"), k.publicPem);
    }
    console.error(`firmware: signing with the development key ${file} (firmware/keygen makes a release key; pass --key)`);
  }
  let privatePem;
  try { privatePem = readFileSync(file, "utf8"); } catch (e) { fail(`--key ${file}: ${e.message}`); }
  let publicPem;
  try { publicPem = publicFromPrivate(privatePem); } catch (e) { fail(`--key ${file}: not an Ed25519 private key (${e.message})`); }
  return { privatePem, publicPem };
}

export async function buildFirmware(o) {
  const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));
  const lmdbVersion = lock.packages?.["node_modules/lmdb"]?.version;
  if (lmdbVersion !== pins.lmdb.version) fail(`lmdb ${lmdbVersion} (package-lock.json) is not the pinned ${pins.lmdb.version}: update firmware/pins.json`);
  const key = keyPair(o.key);
  if (!existsSync(join(root, "build", "dataplane.wasm")) || !existsSync(join(root, "build", "component", "dataplane.js"))) {
    run(process.execPath, [join(root, "scripts", "build.mjs"), "--wasm"], { stdio: ["ignore", "inherit", "inherit"] });
  }
  const nodePkg = pinned(pins.node[o.arch], pins.node.version);
  const lmdbPkg = pinned(pins.lmdb[o.arch], pins.lmdb.version);

  const name = `nvedge-${o.version}-linux-${o.arch}${o.runtime ? "" : "-noruntime"}`;
  const stage = join(o.out, `${name}.stage`);
  rmSync(stage, { recursive: true, force: true });
  for (const d of ["bin", "lib/native", "lib/component", "etc/nvedge", "keys"]) mkdirSync(join(stage, d), { recursive: true });

  await bundleHost(stage, o.runtime ? `node${pins.node.version.split(".")[0]}` : "node20");
  copyFileSync(join(root, "build", "dataplane.wasm"), join(stage, "lib", "dataplane.wasm"));
  for (const f of readdirSync(join(root, "build", "component"))) copyFileSync(join(root, "build", "component", f), join(stage, "lib", "component", f));
  const addons = buildAddon(o.arch, nodePkg);
  for (const n of ADDONS) copyFileSync(addons[n], join(stage, "lib", "native", `${n}.node`));
  // lmdb's build for the pinned Node's ABI (host/paths.ts lmdbAddonPath), or
  // its N-API build when lmdb ships none for that ABI (lmdb 3.5.6 ships ABI
  // 115 and 127, not Node 24's 137; lmdb's own loader makes the same
  // choice); a --no-runtime bundle runs on whatever node the device has:
  // every ABI lmdb ships a build for, and its N-API build as the last resort.
  const abi = pins.node.abi;
  const lmdbBuilds = readdirSync(lmdbPkg).map((f) => /^node\.(abi\d+|napi)\.glibc\.node$/.exec(f)?.[1]).filter(Boolean);
  const wanted = !o.runtime ? lmdbBuilds : lmdbBuilds.includes(`abi${abi}`) ? [`abi${abi}`] : lmdbBuilds.filter((b) => b === "napi");
  if (wanted.length === 0) fail(`${pins.lmdb[o.arch].package}@${pins.lmdb.version} has no build for Node ABI ${abi} and no N-API build`);
  for (const b of wanted) copyFileSync(join(lmdbPkg, `node.${b}.glibc.node`), join(stage, "lib", "native", `lmdb.${b}.node`));
  if (o.runtime) {
    mkdirSync(join(stage, "runtime", "bin"), { recursive: true });
    copyFileSync(join(nodePkg, "bin", "node"), join(stage, "runtime", "bin", "node"));
    chmodSync(join(stage, "runtime", "bin", "node"), 0o755);
    copyFileSync(join(nodePkg, "LICENSE"), join(stage, "runtime", "LICENSE"));
  }
  writeFileSync(join(stage, "bin", "nvedge"), LAUNCHER("nvedge.mjs", "nvedge"), { mode: 0o755 });
  writeFileSync(join(stage, "bin", "nvedge-install"), LAUNCHER("install.mjs", "nvedge-install"), { mode: 0o755 });
  copyFileSync(join(here, "etc", "nvedge.json"), join(stage, "etc", "nvedge", "nvedge.json"));
  // The systemd units, whatever the checkout has (issue 13 writes them).
  if (existsSync(join(root, "etc", "systemd"))) cpSync(join(root, "etc", "systemd"), join(stage, "etc", "systemd"), { recursive: true });
  writeFileSync(join(stage, "keys", "release.pub"), key.publicPem);

  const manifest = {
    format: FORMAT, name: "nvedge", version: o.version, arch: o.arch,
    node: pins.node.version, runtime: o.runtime, lmdb: pins.lmdb.version,
    files: fileTable(stage),
  };
  const bytes = Buffer.from(JSON.stringify(manifest, null, 2) + "\n");
  writeFileSync(join(stage, MANIFEST), bytes);
  writeFileSync(join(stage, SIGNATURE), signBytes(bytes, key.privatePem) + "\n");

  const tarFile = join(o.out, `${name}.tar`);
  // Reproducible: sorted names, no owners, one mtime.
  run("tar", ["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-cf", tarFile, "-C", stage, "."]);
  rmSync(stage, { recursive: true, force: true });
  const total = Object.values(manifest.files).reduce((s, f) => s + f.size, 0);
  return { file: tarFile, bytes: statSync(tarFile).size, payload: total, manifest };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const o = parse(process.argv.slice(2));
  const r = await buildFirmware(o);
  console.log(JSON.stringify({ bundle: r.file, bytes: r.bytes, arch: o.arch, runtime: o.runtime, node: pins.node.version, files: Object.keys(r.manifest.files).length }));
}
