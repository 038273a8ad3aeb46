// The data plane loaded as a WebAssembly component (wit/dataplane.wit, built by
// scripts/component.mjs) through jco's transpiled bindings: `nvedge run
// --dataplane component`. DataPlane (dataplane.ts) sees the same export
// object as with the core module, so everything above it is unchanged.
//
// How frames reach the core's memory without a copy per frame: jco's
// `--instantiation sync` output takes the function that instantiates each core
// module (instantiateCore); ours keeps the core instance, whose exported
// memory is the component's linear memory. The host (and the AF_PACKET addon,
// straight from the kernel ring) writes frames into its slots as with the core
// module; each batch is then one `frames.process-batch(n)` call, integers
// only (see instantiateComponent for which function it enters).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { componentDir } from "../paths.js";

type Fn = (...a: number[]) => number;
type Iface = Record<string, Fn>;
interface ComponentExports { tables: Iface; frames: Iface; counters: Iface; trace: Iface }
type Instantiate = (
  getCoreModule: (name: string) => WebAssembly.Module,
  imports: Record<string, unknown>,
  instantiateCore: (m: WebAssembly.Module, imports?: WebAssembly.Imports) => WebAssembly.Instance,
) => ComponentExports;

let loaded: { instantiate: Instantiate; dir: string; modules: Map<string, WebAssembly.Module> } | undefined;

async function bindings() {
  if (loaded) return loaded;
  const dir = componentDir();
  let mod: { instantiate: Instantiate };
  try {
    mod = await import(pathToFileURL(join(dir, "dataplane.js")).href);
  } catch (e) {
    throw new Error(`the data plane component ${join(dir, "dataplane.js")} is missing or broken (${(e as Error).message}): run npm run build`);
  }
  loaded = { instantiate: mod.instantiate, dir, modules: new Map() };
  return loaded;
}

/**
 * A fresh component instance as the export object DataPlane expects: the
 * functions are the component's (camelCase, as the core names them), the
 * memory is the core instance's, and the core's exported globals are the
 * world's getters.
 */
export async function instantiateComponent(o: { liftedBatch?: boolean } = {}): Promise<Record<string, any>> {
  const b = await bindings();
  let core: WebAssembly.Instance | undefined;
  const c = b.instantiate(
    (name) => {
      let m = b.modules.get(name);
      if (!m) { m = new WebAssembly.Module(readFileSync(join(b.dir, name))); b.modules.set(name, m); }
      return m;
    },
    {},
    (m, imports) => (core = new WebAssembly.Instance(m, imports ?? {})),
  );
  if (!core) throw new Error("the data plane component did not instantiate its core module");
  const ex: Record<string, any> = { memory: (core.exports as { memory: WebAssembly.Memory }).memory };
  for (const iface of [c.tables, c.frames, c.counters, c.trace]) {
    for (const [name, fn] of Object.entries(iface)) ex[name] = fn;
  }
  // One call per batch: frames.process-batch returns the consumed count with
  // the output count (wit/dataplane.wit), read back as `consumed`.
  //
  // Which function that call enters: by default the core function that the
  // component's process-batch export lifts, called as the lifted export would
  // call it. Its signature is u32 -> u32, so the canonical ABI lift and lower
  // are the identity (no memory, no realloc, no post-return); what the lifted
  // export adds is the instance's trap rule, kept here (after a trap the
  // instance refuses every batch), and, in jco 1.35's bindings, the
  // bookkeeping of a component-model-async task per call: about 0.5 µs, 10 %
  // of a 256-frame batch (bench/component.ts). liftedBatch: true goes through
  // jco's lifted export instead (the bench measures both). Every other call
  // (tables, counters, trace) goes through jco's lifted exports.
  const { processBatch, fastFrames } = c.frames;
  const coreBatch = (core.exports as Record<string, (n: number) => number>)["nvedge:dataplane/frames@0.1.0#process-batch"];
  if (typeof coreBatch !== "function") throw new Error("the data plane component's core module has no frames.process-batch export");
  let consumed = 0;
  let trapped: Error | undefined;
  ex.process = o.liftedBatch
    ? (n: number) => {
      const r = processBatch(n);
      consumed = r >>> 16;
      return r & 0xffff;
    }
    : (n: number) => {
      if (trapped) throw new Error(`the data plane component trapped earlier (${trapped.message}): it takes no more batches`);
      let r: number;
      try { r = coreBatch(n); } catch (e) { trapped = e as Error; throw e; }
      consumed = r >>> 16;
      return r & 0xffff;
    };
  ex.consumed = { get value() { return consumed; } };
  ex.fastFrames = { get value() { return fastFrames(); } };
  // Read after every batch (host/io/worker.ts): the core's getter, called
  // directly as for the batch itself, not through a lifted export.
  const corePuntCount = (core.exports as Record<string, () => number>)["nvedge:dataplane/frames@0.1.0#punt-count"];
  if (typeof corePuntCount !== "function") throw new Error("the data plane component's core module has no frames.punt-count export");
  const { puntLost, puntTotal } = c.frames;
  ex.puntCount = { get value() { return corePuntCount(); } };
  ex.puntLost = { get value() { return puntLost(); } };
  ex.puntTotal = { get value() { return puntTotal(); } };
  // the learn area's count, read after every batch like punt-count (assembly/pipeline/glean.ts)
  const coreLearnCount = (core.exports as Record<string, () => number>)["nvedge:dataplane/frames@0.1.0#learn-count"];
  if (typeof coreLearnCount !== "function") throw new Error("the data plane component's core module has no frames.learn-count export");
  const { learnLost } = c.frames;
  ex.learnCount = { get value() { return coreLearnCount(); } };
  ex.learnLost = { get value() { return learnLost(); } };
  return ex;
}
