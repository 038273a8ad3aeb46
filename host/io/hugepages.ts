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

/**
 * Starts faulting in `ranges` ([offset, length] pairs) of `buf` on a thread
 * of the addon's (host/io/native prefault), top down, while the caller writes
 * the same memory bottom up (issue 15: a table image restored into fresh
 * memory; DataPlane.create's prefault option); returns the join, which says
 * the bytes it faulted in. Best effort: a kernel without
 * MADV_POPULATE_WRITE (before 5.14) or an old addon leaves the faults to the
 * writer, and the join then returns 0.
 */
export function prefaultPages(buf: ArrayBuffer, ranges: [number, number][]): () => number {
  const addon = loadAddon();
  if (typeof addon.prefault !== "function" || ranges.length === 0) return () => 0;
  const h = addon.prefault(buf, Float64Array.from(ranges.flat()));
  let joined = false;
  return () => {
    if (joined) return 0;
    joined = true;
    try { return addon.prefaultJoin(h); } catch { return 0; }
  };
}
