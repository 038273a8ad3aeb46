// Loading the data plane: the WebAssembly module (core, or the component
// through jco, ./component.ts), init(), the host's check that the module is
// the one its ABI was generated from (./abi.ts, scripts/abi.mjs), and the
// memory layout the host and the packet I/O addon write frames into.
import { readFileSync } from "node:fs";
import { wasmPath } from "../paths.js";
import { withGlobalExports, wasmHash, hostCodeHash, type GlobalSpec, type Image, type ImageKey } from "./image.js";
import { type Exports, REPORTED, SLOT_SIZE, HEADROOM, MAX_BATCH, HDR_SLOT, MAX_OUT, IF_VNET, IF_GSO_SEG, IF_GSO_LAST, IF_SEG_SHIFT, IF_GSO_WHOLE } from "./abi.js";
import { phase } from "../sys/phase.js";


export interface Layout {
  slotBase: number; slotSize: number; headroom: number; maxBatch: number;
  inDescBase: number; outDescBase: number; hdrBase: number; hdrSlot: number; maxOut: number;
  /** The in-desc flag bits (assembly/abi.ts IF_*), for a receiver that passes offload work on. */
  descFlags: { vnet: number; gsoSeg: number; gsoLast: number; segShift: number; gsoWhole: number };
}

export interface CreateOptions {
  macLog2?: number; ipLog2?: number; tunLog2?: number; floodCap?: number; debug?: boolean;
  /**
   * Back the tables with transparent huge pages: called once with the
   * module's memory after init() lays the tables out, returns the bytes it
   * advised (host/io/hugepages.ts adviseHugePages: madvise through the packet
   * I/O addon, Linux only; a clear error when impossible). Fewer TLB misses
   * per lookup in tables far larger than the TLB covers, at the cost of
   * memory faulted in 2 MiB at a time. On for `nvedge run` and the bench.
   */
  adviseHuge?: (memory: ArrayBuffer) => number;
  /**
   * With an image: start faulting in the memory its pages land in on another
   * thread ([offset, length] pairs; host/io/hugepages.ts prefaultPages),
   * returning the join, called once the image is restored (or refused).
   * Issue 15: the restore's page faults split over two cores.
   */
  prefault?: (memory: ArrayBuffer, ranges: [number, number][]) => () => number;
  /**
   * core: the AssemblyScript module as it is (default); component: the same
   * core wrapped as a WebAssembly component (wit/dataplane.wit) and run through
   * jco's bindings (./component.ts). The same tables, frames and results.
   */
  loader?: "core" | "component";
  /**
   * A checked table image (./image.ts checkImage) to start from instead of
   * empty tables (issue 15: restart without reprogramming); core loader only.
   */
  image?: Image;
  /** component only: each batch through jco's lifted export rather than the core function it lifts (./component.ts; for the bench). */
  liftedBatch?: boolean;
  /**
   * The monotonic clock in ms the data plane is given before each batch (the
   * policer's refills, gleaning's ages: assembly/pipeline/qos.ts). Default
   * performance.now(); tests inject their own.
   */
  clock?: () => number;
}

/** A compiled data plane module, its build's SHA-256 and its mutable globals (for the table image, ./image.ts). */
export interface LoadedModule { module: WebAssembly.Module; sha256: string; globals: GlobalSpec[] | null }
const modules = new Map<string, LoadedModule>();
export function wasmModule(debug: boolean): LoadedModule {
  const name = debug ? "dataplane.debug.wasm" : "dataplane.wasm";
  let m = modules.get(name);
  if (!m) {
    const path = wasmPath(name);
    let bytes: Buffer;
    try { bytes = readFileSync(path); } catch {
      throw new Error(`the data plane ${path} is missing: run npm run build`);
    }
    // every mutable global exported too, so an image can hold them (issue 15; ./image.ts)
    const g = withGlobalExports(new Uint8Array(bytes));
    m = { module: new WebAssembly.Module(g.bytes), sha256: wasmHash(bytes), globals: g.globals };
    phase("module compiled");
    modules.set(name, m);
  }
  return m;
}

const INIT_DEFAULTS = { macLog2: 21, ipLog2: 21, tunLog2: 16, floodCap: 1 << 20 };
const shas = new Map<string, string>();

/**
 * What an image of a data plane made with `o` is keyed by (./image.ts): the
 * module's build, the host's table code and the layout init() makes.
 */
export function imageKeyOf(o: CreateOptions): ImageKey {
  const name = o.debug ? "dataplane.debug.wasm" : "dataplane.wasm";
  let sha = modules.get(name)?.sha256 ?? shas.get(name);
  if (!sha) shas.set(name, (sha = wasmHash(readFileSync(wasmPath(name)))));
  const l = { ...INIT_DEFAULTS, ...Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) } as typeof INIT_DEFAULTS;
  return { wasm: sha, host: hostCodeHash(), layout: `mac ${l.macLog2}, ip ${l.ipLog2}, tunnels ${l.tunLog2}, flood ${l.floodCap}` };
}

/**
 * A new instance with its tables laid out (init) and, when asked, advised for
 * huge pages; `huge`: the bytes advised.
 */
export async function instantiate(o: CreateOptions): Promise<{ ex: Exports; huge: number }> {
  let ex: Exports;
  if (o.loader === "component") {
    if (o.debug) throw new Error("the data plane component is built from the release module only: no debug build");
    ex = (await (await import("./component.js")).instantiateComponent({ liftedBatch: o.liftedBatch })) as unknown as Exports;
  } else {
    ex = (await WebAssembly.instantiate(wasmModule(!!o.debug).module, {})).exports as unknown as Exports;
    phase("module instantiated");
  }
  if (o.image && o.loader === "component") throw new Error("a table image is for the core loader only");
  const d = INIT_DEFAULTS;
  ex.init(o.macLog2 ?? d.macLog2, o.ipLog2 ?? d.ipLog2, o.tunLog2 ?? d.tunLog2, o.floodCap ?? d.floodCap);
  // init() lays the tables out without touching them (assembly/state.ts
  // alloc): advised now, they are faulted in as huge pages as bindings land.
  const huge = o.adviseHuge ? o.adviseHuge(ex.memory.buffer) : 0;
  phase("tables laid out");
  return { ex, huge };
}

/**
 * The module's own values of the constants it reports (assembly/index.ts
 * constants()) against host/dataplane/abi.ts: a build/dataplane.wasm from
 * another revision of assembly/ than the host's is refused, not misread.
 */
export function checkAbi(ex: Exports): void {
  REPORTED.forEach((v, i) => {
    const got = ex.constants(i);
    if (got !== v) throw new Error(`the data plane module's constant ${i} is ${got}, the host's ABI (host/dataplane/abi.ts) says ${v}: rebuild (npm run build)`);
  });
}

/** Where frames and descriptors go in the instance's memory (assembly/abi.ts). */
export function layoutOf(ex: Exports): Layout {
  return {
    slotBase: ex.slotBasePtr(), slotSize: SLOT_SIZE, headroom: HEADROOM, maxBatch: MAX_BATCH,
    inDescBase: ex.inDescPtr(), outDescBase: ex.outDescPtr(), hdrBase: ex.hdrBasePtr(), hdrSlot: HDR_SLOT, maxOut: MAX_OUT,
    descFlags: { vnet: IF_VNET, gsoSeg: IF_GSO_SEG, gsoLast: IF_GSO_LAST, segShift: IF_SEG_SHIFT, gsoWhole: IF_GSO_WHOLE },
  };
}

/** The drop reasons by counter index (assembly/drops.ts, exported as UTF-16 text). */
export function dropNamesOf(ex: Exports): string[] {
  const p = ex.dropNamesPtr();
  const n = ex.dropNamesLen();
  return String.fromCharCode(...new Uint16Array(ex.memory.buffer, p, n)).split(",");
}
