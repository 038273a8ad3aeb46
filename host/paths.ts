// Where the runtime's files are: the one place that knows the two layouts.
//
// - A checkout: this file runs as dist/host/paths.js (esbuild, one file per
//   source), or inside dist/bundle/*.mjs (the same depth below the root); the
//   wasm is in build/, the addon in host/io/native/build/Release/, the packet
//   I/O worker's entry bundled in dist/bundle/, the broker thread's next to
//   its source in dist/host/.
// - A firmware bundle (firmware/build.mjs): every module is bundled into a few
//   files in <slot>/lib/, which defines NVEDGE_BUNDLE at bundle time; the wasm,
//   the component and the native addons sit in <slot>/lib/ beside them.
//
// Nothing else in host/ builds a path to a shipped file from its own
// import.meta.url (that only worked from a checkout).
import { fileURLToPath, pathToFileURL } from "node:url";
import { join } from "node:path";
import { existsSync } from "node:fs";

declare const NVEDGE_BUNDLE: boolean | undefined;

/** True in a firmware bundle, false in a checkout. */
export const inBundle: boolean = typeof NVEDGE_BUNDLE !== "undefined" && NVEDGE_BUNDLE === true;

/**
 * The checkout root, or the bundle's slot directory (the one holding lib/ and
 * bin/). In a bundle this module's code is inside <slot>/lib/*.mjs.
 */
export const root: string = fileURLToPath(new URL(inBundle ? "../" : "../../", import.meta.url));

/** The data plane's core module: dataplane.wasm or dataplane.debug.wasm. */
export function wasmPath(name: string): string {
  return inBundle ? join(root, "lib", name) : join(root, "build", name);
}

/** The data plane as a WebAssembly component and its jco transpile output (scripts/component.mjs). */
export function componentDir(): string {
  return inBundle ? join(root, "lib", "component") : join(root, "build", "component");
}

/** The AF_PACKET addon (host/io/native). */
export function addonPath(): string {
  return inBundle ? join(root, "lib", "native", "nvedge_afpacket.node") : join(root, "host", "io", "native", "build", "Release", "nvedge_afpacket.node");
}

/**
 * lmdb's native binary in a bundle (from a checkout, lmdb finds its own in
 * node_modules): the build for this Node's ABI, lmdb.abi<N>.node, as lmdb's
 * own loader prefers; lmdb.napi.node only when there is none (with an
 * earlier bundling of lmdb, its N-API build looped forever in getRange under
 * Node 22, found by test/firmware-qemu.test.ts). lmdb 3.5.6 ships no build
 * for Node 24's ABI 137, so the firmware's runtime (firmware/pins.json)
 * loads the N-API one; test/firmware-qemu.test.ts restarts the arm64
 * bundle from its LMDB store on it.
 */
export function lmdbAddonPath(): string {
  const abi = join(root, "lib", "native", `lmdb.abi${process.versions.modules}.node`);
  return existsSync(abi) ? abi : join(root, "lib", "native", "lmdb.napi.node");
}

/**
 * A worker thread's entry point: the packet I/O worker or the broker thread.
 * In a checkout the packet I/O worker is dist/bundle/io-worker.mjs, its module
 * graph in one file (scripts/build.mjs: each worker thread loads it anew, and
 * one file starts faster than one per source; issue 15), or its one-file-per-
 * source entry when the build made none.
 */
export function workerUrl(which: "io-worker" | "broker-thread"): URL {
  if (inBundle) return pathToFileURL(join(root, "lib", `${which}.mjs`));
  const bundled = join(root, "dist", "bundle", `${which}.mjs`);
  if (which === "io-worker" && existsSync(bundled)) return pathToFileURL(bundled);
  return pathToFileURL(join(root, "dist", "host", which === "io-worker" ? "io/worker.js" : "broker/broker-thread.js"));
}

/** The data plane's table image in the store's directory (host/control/dp-image.ts; issue 15). */
export const IMAGE_FILE = "dataplane.img";
