// Builds the data plane as a WebAssembly component (wit/dataplane.wit) from
// the AssemblyScript core (build/dataplane.wasm, compiled with `--use abort=`
// so it imports nothing), and jco's JavaScript bindings for it:
//
//   build/component/dataplane.component.wasm   the component (what a vendor's component host embeds)
//   build/component/dataplane.js (+ *.core.wasm) `jco transpile --instantiation sync` output,
//                                              loaded by host/dataplane/component.ts
//
// Steps: (1) binaryen gives every core export its canonical ABI name
// (`nvedge:dataplane/<interface>@0.1.0#<function>`, read from the WIT file, so
// the world is the one list) and adds the two getters the world has for the
// core's exported globals (consumed, fastFrames); (2) jco componentEmbed puts
// the world in the module; (3) jco componentNew wraps it (the `jco embed` CLI
// crashed on this module, its JS API does not); (4) jco transpile.
// Usage: node scripts/component.mjs (run by scripts/build.mjs after the wasm).
import { readFileSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** setMacLocal -> set-mac-local */
const kebab = (s) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** { witName: "nvedge:dataplane/tables@0.1.0#set-port", ... } keyed by the kebab function name. */
function worldFunctions(wit) {
  const pkg = /package\s+([\w:-]+)@([\d.]+)\s*;/.exec(wit);
  if (!pkg) throw new Error("wit/dataplane.wit: no package line");
  const out = new Map();
  const ifaceRe = /interface\s+([\w-]+)\s*\{([\s\S]*?)\n\}/g;
  for (let m; (m = ifaceRe.exec(wit)); ) {
    for (const f of m[2].matchAll(/^\s*(%?[\w-]+)\s*:\s*func\b/gm)) {
      const name = f[1].replace(/^%/, "");
      out.set(name, `${pkg[1]}/${m[1]}@${pkg[2]}#${name}`);
    }
  }
  return out;
}

/**
 * jco 1.35's bindings test process.env.JCO_DEBUG in every lifted call, several
 * times (a getenv each: about 2 µs per call, half the cost of a 256-frame
 * batch in bench/component.ts); the bindings here log nothing. A jco whose
 * output no longer has this function fails the build here, to be looked at.
 */
function quietDebugLog(js) {
  const re = /const _debugLog = \(\.\.\.args\) => \{\n\s*if \(!globalThis\?\.process\?\.env\?\.JCO_DEBUG\) \{ return; \}\n\s*console\.debug\(\.\.\.args\);\n\s*\};/;
  if (!re.test(js)) throw new Error("jco's bindings have no _debugLog as scripts/component.mjs expects (another jco version?)");
  return js.replace(re, "const _debugLog = () => {}; // scripts/component.mjs quietDebugLog");
}

export async function buildComponent() {
  const binaryen = (await import("binaryen")).default;
  const { componentEmbed, componentNew, transpile } = await import("@bytecodealliance/jco");
  const wit = readFileSync(join(root, "wit", "dataplane.wit"), "utf8");
  const fns = worldFunctions(wit);

  const mod = binaryen.readBinary(new Uint8Array(readFileSync(join(root, "build", "dataplane.wasm"))));
  mod.setFeatures(binaryen.Features.All);
  const exports = [];
  for (let i = 0; i < mod.getNumExports(); i++) exports.push(binaryen.getExportInfo(mod.getExportByIndex(i)));
  for (const e of exports) mod.removeExport(e.name);
  const used = new Set();
  for (const e of exports) {
    if (e.kind === binaryen.ExternalMemory) { mod.addMemoryExport(e.value, "memory"); continue; }
    if (e.kind === binaryen.ExternalGlobal) {
      // Globals cannot cross a component boundary: a getter function each.
      const name = kebab(e.name);
      if (!fns.has(name)) continue; // warmSink: a sink for the prefetch pass's loads, not an interface
      const type = binaryen.getGlobalInfo(mod.getGlobal(e.value)).type;
      const getter = `__get_${e.name}`;
      mod.addFunction(getter, binaryen.none, type, [], mod.global.get(e.value, type));
      mod.addFunctionExport(getter, fns.get(name));
      used.add(name);
      continue;
    }
    const name = kebab(e.name);
    if (!fns.has(name)) throw new Error(`scripts/component.mjs: the core exports ${e.name}, which wit/dataplane.wit does not name (${name})`);
    mod.addFunctionExport(e.value, fns.get(name));
    used.add(name);
  }
  // process-batch: process(n) and the consumed global in one result (the
  // host's one call per batch; wit/dataplane.wit says how they are packed).
  const proc = exports.find((e) => e.name === "process" && e.kind === binaryen.ExternalFunction);
  const cons = exports.find((e) => e.name === "consumed" && e.kind === binaryen.ExternalGlobal);
  if (!proc || !cons) throw new Error("scripts/component.mjs: the core exports no process function or consumed global");
  const i32 = binaryen.i32;
  mod.addFunction("__process_batch", binaryen.createType([i32]), i32, [i32],
    mod.block(null, [
      mod.local.set(1, mod.call(proc.value, [mod.local.get(0, i32)], i32)),
      mod.return(mod.i32.or(mod.i32.shl(mod.global.get(cons.value, i32), mod.i32.const(16)), mod.local.get(1, i32))),
    ], i32));
  mod.addFunctionExport("__process_batch", fns.get("process-batch"));
  used.add("process-batch");
  const missing = [...fns.keys()].filter((n) => !used.has(n));
  if (missing.length) throw new Error(`scripts/component.mjs: wit/dataplane.wit names ${missing.join(", ")}, which the core does not export`);
  if (!mod.validate()) throw new Error("scripts/component.mjs: the renamed core module does not validate");
  const core = mod.emitBinary();
  mod.dispose();

  const embedded = await componentEmbed({ binary: core, witSource: wit, world: "dataplane" });
  const component = await componentNew(embedded);
  const out = join(root, "build", "component");
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "dataplane.component.wasm"), component);
  // sync instantiation: the host hands jco the core module and keeps the core
  // instance (host/dataplane/component.ts), no preview2 shims (the world imports nothing).
  const { files } = await transpile(component, { name: "dataplane", instantiation: "sync", noTypescript: true, quiet: true });
  for (const [name, bytes] of Object.entries(files)) {
    if (name.endsWith(".d.ts")) continue;
    if (name === "dataplane.js") { writeFileSync(join(out, name), quietDebugLog(Buffer.from(bytes).toString("utf8"))); continue; }
    mkdirSync(dirname(join(out, name)), { recursive: true });
    writeFileSync(join(out, name), bytes);
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const out = await buildComponent();
    console.error(`component: ${out}`);
  } catch (e) {
    console.error(`build: the data plane component failed: ${e.message}`);
    process.exit(1);
  }
}
