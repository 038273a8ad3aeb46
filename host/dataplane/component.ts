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
// module; each batch is then one `frames.process(n)` call through the
// component's lifted export, which carries only integers.
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
 * memory is the core instance's, and the core's two exported globals are the
 * world's getters.
 */
export async function instantiateComponent(): Promise<Record<string, any>> {
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
  const { consumed, fastFrames } = c.frames;
  ex.consumed = { get value() { return consumed(); } };
  ex.fastFrames = { get value() { return fastFrames(); } };
  return ex;
}
