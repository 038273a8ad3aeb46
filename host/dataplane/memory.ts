// Transparent huge pages for the data plane's memory. The MAC and IP tables
// are 32 and 64 MiB (2^21 slots each, sized for 1,000,000 bindings): a
// lookup lands on a random 4 KiB page, and the TLB covers a few MiB of them,
// so nearly every lookup also walks the page tables. With 2 MiB pages the
// same tables need 48 TLB entries. Node cannot madvise, so the packet I/O
// addon does it (host/io/hugepages.ts, passed into DataPlane.create as its
// adviseHuge option: the data plane does not reach up into io/).
import { readFileSync } from "node:fs";

/** The kernel's THP mode ("always", "madvise" or "never"), or null when it has none. */
export function thpMode(): string | null {
  try {
    const m = /\[(\w+)\]/.exec(readFileSync("/sys/kernel/mm/transparent_hugepage/enabled", "utf8"));
    return m ? m[1] : null;
  } catch {
    return null;
  }
}

/** True when madvise(MADV_HUGEPAGE) gets huge pages here (THP mode "always" or "madvise"). */
export function thpUsable(): boolean {
  const mode = thpMode();
  return mode === "always" || mode === "madvise";
}

/** This process's anonymous memory backed by huge pages, in bytes (/proc/self/smaps_rollup). */
export function anonHugeBytes(): number {
  try {
    const m = /AnonHugePages:\s+(\d+) kB/.exec(readFileSync("/proc/self/smaps_rollup", "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
