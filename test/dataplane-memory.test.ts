// Huge pages for the data plane's tables (host/dataplane/memory.ts, the
// addon's adviseHuge through host/io/hugepages.ts): advised at create, and bindings programmed after it
// land in huge pages when the kernel has THP.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { thpUsable, anonHugeBytes } from "../host/dataplane/memory.js";
import { loadAddon } from "../host/io/addon.js";
import { adviseHugePages, prefaultPages } from "../host/io/hugepages.js";
import { readFileSync } from "node:fs";
import { checkImage } from "../host/dataplane/image.js";
import { imageKeyOf } from "../host/dataplane/load.js";

/**
 * The resident bytes of each of this process's mappings of `bytes` (to 16 KiB;
 * /proc/self/smaps), by start address: an ArrayBuffer that large has a mapping
 * of its own. Not the process's RSS, which the rest of the process (GC
 * unmapping an earlier test's memory) moves meanwhile.
 */
function residentOfSize(bytes: number): Map<string, number> {
  const out = new Map<string, number>();
  let start = "", size = 0;
  for (const line of readFileSync("/proc/self/smaps", "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-[0-9a-f]+ /.exec(line);
    if (m) { start = m[1]; continue; }
    const kv = /^(Size|Rss):\s+(\d+) kB/.exec(line);
    if (!kv) continue;
    if (kv[1] === "Size") size = Number(kv[2]) * 1024;
    else if (Math.abs(size - bytes) <= 16384) out.set(start, Number(kv[2]) * 1024);
  }
  return out;
}

const PROFILE = { encap: "vxlan" as const, mtu: 1500 };
const usable = thpUsable();

test("create({adviseHuge}) advises the tables' memory; bindings then fault in huge pages", async () => {
  if (!usable) {
    // the option must then fail clearly rather than run silently without
    try {
      await DataPlane.create({ adviseHuge: adviseHugePages });
      assert.unreachable("created with huge pages while THP is off");
    } catch (e) {
      assert.match((e as Error).message, /transparent huge pages/);
    }
    return;
  }
  const before = anonHugeBytes();
  const dp = await DataPlane.create({ adviseHuge: adviseHugePages });
  const st = dp.stats();
  // the MAC (32 MiB) and IP (64 MiB) tables at the default size are inside the advised range
  assert.ok(st.hugePagesAdvised >= 96 * 1048576, `advised ${st.hugePagesAdvised} bytes`);
  dp.apply([{ op: "port", port: "a0" }, { op: "vn", vn: 100, vni: 5000, profile: PROFILE }, { op: "tag", port: "a0", tag: 10, vn: 100 }]);
  const ops = [];
  for (let i = 0; i < 20000; i++) {
    const b = i.toString(16).padStart(6, "0");
    ops.push({ op: "mac.local" as const, vn: 100, mac: `02:00:00:${b.slice(0, 2)}:${b.slice(2, 4)}:${b.slice(4)}`, port: "a0", active: true });
  }
  dp.apply(ops);
  const grown = anonHugeBytes() - before;
  // 20,000 bindings spread over every 2 MiB page of the 32 MiB MAC table
  assert.ok(grown >= 16 * 1048576, `only ${grown} bytes of huge pages after 20,000 bindings`);
  const plain = await DataPlane.create();
  assert.is(plain.stats().hugePagesAdvised, 0, "off unless asked for");
});

test("adviseHuge refuses a range outside the buffer and advises nothing in less than a 2 MiB page", () => {
  const a = loadAddon();
  const buf = new ArrayBuffer(1 << 16);
  assert.throws(() => a.adviseHuge(buf, 0, 1 << 20), /outside the buffer/);
  assert.throws(() => a.adviseHuge(buf, -1, 10), /outside the buffer/);
  assert.is(a.adviseHuge(buf, 0, buf.byteLength), 0);
});

test("prefault faults in the ranges on a thread of its own (resident once joined), keeps what the memory held, refuses a range outside the buffer", () => {
  const a = loadAddon();
  const MiB = 1 << 20;
  const SIZE = 64 * MiB + 3 * 4096; // large (a mapping of its own, not touched until written), of a size nothing else has
  const buf = new ArrayBuffer(SIZE);
  const u8 = new Uint8Array(buf);
  u8[40 * MiB + 5] = 7;
  const before = residentOfSize(SIZE);
  const bytes = a.prefaultJoin(a.prefault(buf, Float64Array.from([0, 8 * MiB, 40 * MiB, 8 * MiB])));
  const after = residentOfSize(SIZE);
  const grown = Math.max(0, ...[...after].map(([at, r]) => r - (before.get(at) ?? 0)));
  // the whole 4 KiB pages that cover both ranges (an ArrayBuffer is not page-aligned: one more page at each end at most)
  assert.ok(bytes >= 16 * MiB && bytes <= 16 * MiB + 4 * 4096, `the bytes of both ranges: ${bytes}`);
  assert.ok(grown >= 16 * MiB, `the buffer's mapping resident after the join: ${grown} bytes more (${JSON.stringify([...after])})`);
  assert.is(u8[40 * MiB + 5], 7, "what the memory held is kept");
  assert.is(u8[MiB], 0);
  assert.throws(() => a.prefault(buf, Float64Array.from([60 * MiB, 8 * MiB])), /outside the buffer/);
  assert.throws(() => a.prefault(buf, Float64Array.from([0])), /pairs/);
  const h = a.prefault(buf, Float64Array.from([]));
  assert.is(a.prefaultJoin(h), 0);
  assert.throws(() => a.prefaultJoin(h), /not joined yet/, "a handle is joined once");
});

test("an image names the memory its pages land in; a restore with prefault faults exactly that in ahead, joined before create resolves, and gives the same tables", async () => {
  const dp = await DataPlane.create({ macLog2: 16, ipLog2: 16 });
  dp.apply([{ op: "port", port: "a0" }, { op: "vn", vn: 100, vni: 5000, profile: PROFILE }, { op: "tag", port: "a0", tag: 10, vn: 100 },
    ...Array.from({ length: 3000 }, (_, i) => ({ op: "mac.local" as const, vn: 100, mac: `02:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`, port: "a0", active: true }))]);
  const key = { ...imageKeyOf({ macLog2: 16, ipLog2: 16 }), txnId: 1 };
  const img = checkImage({ bytes: dp.snapshot(key) }, key);
  const touched = img.meta.touched!;
  assert.ok(Array.isArray(touched) && touched.length > 0, "the image says where its pages land");
  // every non-zero 64 KiB page of a restored instance (what the restore wrote, or init() did) lies in a touched range
  const plain = await DataPlane.create({ macLog2: 16, ipLog2: 16, image: img });
  assert.is(plain.prefaulted, 0, "off unless asked for");
  const mem = new Uint8Array(plain.memory.buffer);
  const inside = (a: number) => touched.some(([o, n]) => o <= a && a + 65536 <= o + n);
  let pages = 0;
  for (let a = 0; a < mem.length; a += 65536) {
    if (mem.subarray(a, a + 65536).some((b) => b !== 0)) { pages++; assert.ok(inside(a), `page at ${a} is in a touched range`); }
  }
  assert.ok(pages > 10, `${pages} pages written`);
  let ranges: [number, number][] = [], joined = false;
  const got = await DataPlane.create({ macLog2: 16, ipLog2: 16, image: img,
    prefault: (m, r) => { ranges = r; const join = prefaultPages(m, r); return () => { joined = true; return join(); }; } });
  assert.equal(ranges, touched, "prefault is asked for the image's ranges");
  assert.ok(joined, "joined before create resolved");
  assert.is(got.prefaulted, touched.reduce((s, [, n]) => s + n, 0), "the thread faulted them all in");
  const tables = (d: DataPlane) => { const { fastPathFrames: _f, hugePagesAdvised: _h, ...t } = d.stats(); return t; };
  assert.equal(tables(got), tables(dp), "the same tables as without it");
  assert.ok(Buffer.from(got.memory.buffer).equals(Buffer.from(plain.memory.buffer)), "the same memory as a restore without it");
});

test.run();
