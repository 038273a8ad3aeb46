// One source for the data plane's memory ABI (issue 16): assembly/ holds the
// constants, the compiler declares the exports, and scripts/abi.mjs writes
// host/dataplane/abi.ts, host/io/native/abi.h and bench/native/wire.h from
// them. These tests fail when a generated file is stale, when the built module
// or the addon disagrees with them, or when a consumer keeps a copy of its own.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, readdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath, pathToFileURL } from "node:url";
import * as ABI from "../host/dataplane/abi.js";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { loadAddon } from "../host/io/addon.js";
import { onPath, requireTool } from "./support/tools.js";

const root = fileURLToPath(new URL("../../", import.meta.url));
type Const = { name: string; type: string; value: bigint; file: string };
type Exp = { kind: "function" | "global" | "memory"; name: string; params?: { name: string; type: string }[] };
interface Gen {
  ABI_SOURCES: { file: string }[]; WIRE_SOURCES: { file: string }[]; OUT: { ts: string; h: string; wire: string }; DTS: string;
  constants(sources: { file: string }[]): Const[];
  wasmExports(dts: string): Promise<Exp[]>;
  stale(): Promise<string[]>;
}
const gen = (): Promise<Gen> => import(pathToFileURL(join(root, "scripts", "abi.mjs")).href) as Promise<Gen>;
const src = (p: string) => readFileSync(join(root, p), "utf8");

test("the generated abi.ts, abi.h and wire.h are what scripts/abi.mjs makes from assembly/ and the compiler's declaration", async () => {
  const g = await gen();
  assert.equal(await g.stale(), [], "stale: run node scripts/build.mjs and commit the files");
});

test("abi.ts holds every ABI constant of assembly/ with its value", async () => {
  const g = await gen();
  const cs = g.constants(g.ABI_SOURCES);
  assert.ok(cs.length > 100, `only ${cs.length} constants`);
  const host = ABI as unknown as Record<string, number | bigint>;
  for (const c of cs) assert.is(BigInt(host[c.name]), c.value, `${c.file} ${c.name}`);
  // spot checks against assembly/abi.ts as written
  assert.is(ABI.IN_DESC, 8);
  assert.is(ABI.OUT_DESC, 16);
  assert.is(ABI.O_VN, 12);
});

test("the built module exports exactly what the Exports interface declares, with the same arity", async () => {
  const g = await gen();
  const declared = await g.wasmExports(src(g.DTS));
  const bytes = readFileSync(join(root, "build", "dataplane.wasm"));
  const mod = new WebAssembly.Module(bytes);
  const actual = WebAssembly.Module.exports(mod);
  const kind = { function: "function", global: "global", memory: "memory" } as const;
  assert.equal(actual.map((e) => `${e.kind} ${e.name}`).sort(), declared.map((e) => `${kind[e.kind]} ${e.name}`).sort());
  const inst = new WebAssembly.Instance(mod, {}).exports as Record<string, unknown>;
  for (const e of declared) {
    if (e.kind !== "function") continue;
    assert.is((inst[e.name] as (...a: number[]) => unknown).length, e.params!.length, `${e.name} arity`);
  }
  // and the interface in abi.ts names each of them
  const iface = /export interface Exports \{([\s\S]*?)\n\}/.exec(src(g.OUT.ts))![1];
  for (const e of declared) assert.ok(new RegExp(`\\b${e.name}[(:]`).test(iface), `Exports lacks ${e.name}`);
});

test("the module reports the constants abi.ts has (constants(which)), and DataPlane's layout is abi.ts's", async () => {
  const mod = new WebAssembly.Module(readFileSync(join(root, "build", "dataplane.wasm")));
  const ex = new WebAssembly.Instance(mod, {}).exports as unknown as ABI.Exports;
  ex.init(10, 10, 4, 64);
  ABI.REPORTED.forEach((v, i) => assert.is(ex.constants(i), v, `constants(${i})`));
  const dp = await DataPlane.create({ macLog2: 10, ipLog2: 10, tunLog2: 4, floodCap: 64 });
  const L = dp.layout;
  assert.equal([L.slotSize, L.headroom, L.maxBatch, L.hdrSlot, L.maxOut], [ABI.SLOT_SIZE, ABI.HEADROOM, ABI.MAX_BATCH, ABI.HDR_SLOT, ABI.MAX_OUT]);
  assert.equal(L.descFlags, { vnet: ABI.IF_VNET, gsoSeg: ABI.IF_GSO_SEG, gsoLast: ABI.IF_GSO_LAST, segShift: ABI.IF_SEG_SHIFT, gsoWhole: ABI.IF_GSO_WHOLE });
  assert.is(dp.dropNames.length, ABI.NUM_DROPS);
});

test("the AF_PACKET addon was compiled with this abi.h", () => {
  assert.is(loadAddon().abiHash, ABI.ABI_HASH);
});

if (requireTool("cc", () => onPath("cc"), "the C compiler's reading of abi.h and wire.h")) {
  test("C reads abi.h and wire.h as the same values", async () => {
    const g = await gen();
    const cs = [...g.constants(g.ABI_SOURCES), ...g.constants(g.WIRE_SOURCES)];
    const dir = mkdtempSync(join(tmpdir(), "nvl-abi-"));
    try {
      const c = ['#include <stdio.h>', '#include "abi.h"', '#include "wire.h"', "int main(void) {",
        ...cs.map((x) => `  printf("${x.name} %llu\\n", (unsigned long long)(${x.name}));`), "  return 0;", "}"].join("\n");
      writeFileSync(join(dir, "t.c"), c);
      const cc = spawnSync("cc", ["-Wall", "-Werror", "-I", join(root, "host/io/native"), "-I", join(root, "bench/native"), "-o", join(dir, "t"), join(dir, "t.c")], { encoding: "utf8", timeout: 60_000 });
      assert.is(cc.status, 0, cc.stderr);
      const run = spawnSync(join(dir, "t"), { encoding: "utf8", timeout: 10_000 });
      const got = new Map(run.stdout.trim().split("\n").map((l) => l.split(" ") as [string, string]));
      for (const x of cs) assert.is(BigInt(got.get(x.name)!), BigInt.asUintN(64, x.value), x.name);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("no consumer keeps its own copy: the C files include abi.h and define none of its names; no literal descriptor strides or offsets in the host", async () => {
  const g = await gen();
  const names = new Set([...g.constants(g.ABI_SOURCES), ...g.constants(g.WIRE_SOURCES)].map((c) => c.name));
  for (const f of ["host/io/native/afpacket.c", "host/io/native/afxdp/afxdp.c", "host/io/native/io_common.h", "bench/native/dpbench.c"]) {
    const text = src(f);
    assert.ok(text.includes('#include "abi.h"'), `${f} does not include abi.h`);
    for (const m of text.matchAll(/^\s*#define\s+(\w+)/gm)) assert.not.ok(names.has(m[1]), `${f} defines ${m[1]} itself`);
    for (const m of text.matchAll(/^\s*(?:enum\s*\{|static const \w+ )\s*(\w+)/gm)) assert.not.ok(names.has(m[1]), `${f} declares ${m[1]} itself`);
  }
  for (const f of ["host/io/native/afpacket.c", "host/io/native/afxdp/afxdp.c", "host/io/native/io_common.h"])
    assert.not.ok(/DescBase[^;\n]*\*\s*(8|16)\b/.test(src(f)), `${f}: a literal descriptor size`);
  // the TypeScript consumers: descriptor strides and field offsets come from abi.ts
  const ts = [...readdirSync(join(root, "host/dataplane")).filter((f) => f.endsWith(".ts") && f !== "abi.ts").map((f) => `host/dataplane/${f}`),
    "host/io/worker.ts", "bench/dataplane.ts", "bench/io.ts"];
  for (const f of ts) {
    const text = src(f);
    assert.not.ok(/DescBase[^;\n]*\*\s*(8|16)\b/.test(text), `${f}: a literal descriptor size`);
    assert.not.ok(/constants\(\d+\)/.test(text), `${f}: a constant by its index rather than by name`);
    assert.not.ok(/\[fn: string\]: any/.test(text), `${f}: an untyped export object`);
    assert.not.ok(/get(Uint16|Uint32)\(d \+ \d+, true\)|set(Uint16|Uint32)\(d \+ \d+,/.test(text), `${f}: a literal descriptor field offset`);
  }
});

test.run();
