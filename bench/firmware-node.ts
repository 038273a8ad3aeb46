// The Node runtime the firmware bundle ships (firmware/pins.json), as the
// benches run it: fetched and integrity-checked by the firmware's own
// `pinnedNode` (firmware/build.mjs), so a bench runs the bytes the bundle
// ships, cached in build/bench/runtime, with the V8 flags the bundle's
// launcher gives Node (`NODE_FLAGS`). Used by the dataplane bench (the
// device's runtime beside this process's) and the control bench (the NVE on
// it, NVEDGE_BENCH_NVE_NODE=firmware).
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export interface FirmwareNode { node: string; version: string; flags: string[] }

let cached: FirmwareNode | undefined;

/** The firmware's Node for this machine's architecture; throws when it cannot be fetched or checked. */
export async function firmwareNode(): Promise<FirmwareNode> {
  if (!cached) {
    const root = fileURLToPath(new URL("../../", import.meta.url));
    const m = await import(pathToFileURL(join(root, "firmware", "build.mjs")).href) as {
      pinnedNode(arch: string, cache: string): { node: string; version: string }; NODE_FLAGS: string[];
    };
    cached = { ...m.pinnedNode(process.arch === "arm64" ? "arm64" : "x64", join(root, "build", "bench", "runtime")), flags: m.NODE_FLAGS };
  }
  return cached;
}
