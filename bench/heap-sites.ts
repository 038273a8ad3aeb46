// V8's sampling heap profile (HeapProfiler.stopSampling) summed per
// allocation site, for the benches that report bytes allocated per request
// (bench/control.ts: the core and the agents; bench/lone.ts).

interface HeapNode { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: HeapNode[] }

/**
 * The profile's bytes in all and by site, largest first. A native frame (Map,
 * Array.push) has no URL: it is charged to the JavaScript function that called
 * it, which is what the code can change.
 */
export function heapSites(head: unknown): { total: number; sites: [string, number][] } {
  const bySite = new Map<string, number>();
  let total = 0;
  const walk = (node: HeapNode, caller: string): void => {
    const f = node.callFrame;
    const site = f.url ? `${f.functionName || "(anonymous)"} ${f.url.replace(/^.*\/dist\//, "")}:${f.lineNumber + 1}` : `${f.functionName} <- ${caller}`;
    total += node.selfSize;
    if (node.selfSize) bySite.set(site, (bySite.get(site) ?? 0) + node.selfSize);
    for (const c of node.children) walk(c, f.url ? site : caller);
  };
  walk(head as HeapNode, "");
  return { total, sites: [...bySite].sort((a, b) => b[1] - a[1]) };
}
