// Huge-page advice for the data plane's memory, given by the packet I/O layer
// to DataPlane.create (its `adviseHuge` option): Node cannot madvise, the
// AF_PACKET addon does (host/io/native adviseHuge). Why huge pages:
// host/dataplane/memory.ts.
import { thpMode, thpUsable } from "../dataplane/memory.js";
import { loadAddon } from "./addon.js";

/**
 * Advises the whole of `buf` for huge pages; returns the bytes advised. A
 * clear error when the kernel has THP off or the addon is not built.
 */
export function adviseHugePages(buf: ArrayBuffer): number {
  if (!thpUsable()) {
    const mode = thpMode();
    throw new Error(`huge pages: transparent huge pages are ${mode === null ? "not available in this kernel" : "off (/sys/kernel/mm/transparent_hugepage/enabled is never)"}`);
  }
  return loadAddon().adviseHuge(buf, 0, buf.byteLength);
}
