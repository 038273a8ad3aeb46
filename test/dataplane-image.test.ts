// The data plane's table image (issue 15, host/dataplane/image.ts): a data
// plane restored from an image forwards every fixture frame exactly as the
// one it was taken from, keeps programming the same way after (the host's
// bookkeeping came with it), counts from zero; and an image that is
// corrupt, truncated, of another format version, or keyed otherwise (another
// store transaction, module, layout) is refused with its reason.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync, existsSync, readFileSync } from "node:fs";
import { crc32 } from "node:zlib";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { imageKeyOf } from "../host/dataplane/load.js";
import { wasmPath } from "../host/paths.js";
import {
  checkImage, ImageRefused, IMAGE_VERSION, writeImageFile, withGlobalExports, GLOBAL_PREFIX, type ImageKey,
} from "../host/dataplane/image.js";
import type { DpOp } from "../host/dataplane/ops.js";
import * as F from "./support/frames.js";
import { eqBytes } from "./support/dp-fixture.js";

const OPTS = { macLog2: 12, ipLog2: 12 };
const keyOf = (txnId: number): ImageKey => ({ ...imageKeyOf(OPTS), txnId, config: "c0ffee" });

/** Every kind of frame the fixture forwards or drops, in each VN: encap, hairpin, flood, unknown, inactive, decap. */
function frames(f: F.Family): { port: string; frame: Uint8Array; label: string }[] {
  const out: { port: string; frame: Uint8Array; label: string }[] = [];
  for (const v of F.VNS) {
    const l = F.locals(v.id), r = F.remotes(v.id);
    const add = (port: string, frame: Uint8Array, label: string) => out.push({ port, frame, label: `VN ${v.id} ${label}` });
    add(F.ACC1, F.accessFrame(l.L1, r.R1, { family: f }), "to R1");
    add(F.ACC1, F.accessFrame(l.L1, r.R2, { family: f }), "to R2");
    add(F.ACC1, F.accessFrame(l.L1, l.L2, { family: f }), "hairpin");
    add(F.ACC1, F.accessFrame(l.L1, F.BROADCAST, { family: f }), "flood");
    add(F.ACC1, F.accessFrame(l.L1, { ...r.R1, mac: F.unknownMac(v.id) }, { family: f }), "unknown unicast");
    add(F.ACC1, F.accessFrame(l.L3, r.R1, { family: f }), "from an Associated VNIC");
    add(F.UPLINK, F.fromRemote(F.REMOTES[0], f, v.id, F.innerFrame(r.R1, l.L1, { family: f })), "decap to L1");
    add(F.UPLINK, F.fromRemote(F.REMOTES[1], f, v.id, F.innerFrame(r.R2, l.L2, { family: f })), "decap to L2");
  }
  return out;
}

/** Both data planes give the same outputs, byte for byte, and count the same drops, for every frame. */
function sameForwarding(a: DataPlane, b: DataPlane, f: F.Family, what: string): void {
  for (const x of frames(f)) {
    const sa = F.send(a, x.port, x.frame), sb = F.send(b, x.port, x.frame);
    assert.equal(sb.outs.map((o) => o.port), sa.outs.map((o) => o.port), `${what}: ${x.label}: output ports`);
    sa.outs.forEach((o, i) => eqBytes(sb.outs[i].frame, o.frame, `${what}: ${x.label}: output ${i}`));
    assert.equal(sb.drops, sa.drops, `${what}: ${x.label}: drops`);
  }
}

const shape = (dp: DataPlane) => { const { fastPathFrames: _f, hugePagesAdvised: _h, ...s } = dp.stats(); return s; };

for (const f of [4, 6] as const) {
  test(`IPv${f} underlay: a data plane restored from an image forwards as the original, and programs on the same way`, async () => {
    const a = await DataPlane.create(OPTS);
    a.apply(F.fixtureOps(f));
    const img = a.snapshot(keyOf(7));
    const b = await DataPlane.create({ ...OPTS, image: checkImage({ bytes: img }, keyOf(7)) });
    assert.equal(shape(b), shape(a), "table fill, VNs, remotes, tunnels");
    assert.ok(shape(b).macs > 0 && shape(b).ips > 0, "the restored tables hold the fixture's bindings");
    sameForwarding(a, b, f, "restored");
    // the host's bookkeeping came along: later ops (a VN deleted, a remote
    // leaving a flood list, a binding moved, a VN added) act the same on both
    const more: DpOp[] = [
      { op: "vn.del", vn: 300 },
      { op: "flood.leave", vn: 100, nve: F.remoteIp(F.REMOTES[1], f) },
      { op: "mac.remote", vn: 200, mac: F.locals(200).L2.mac, nve: F.remoteIp(F.REMOTES[1], f) },
      { op: "vn", vn: 300, vni: 7001, profile: F.vn(300).profile },
      { op: "tag", port: F.ACC1, tag: 12, vn: 300 },
    ];
    a.apply(structuredClone(more));
    b.apply(structuredClone(more));
    assert.equal(shape(b), shape(a), "after more ops");
    sameForwarding(a, b, f, "after more ops");
  });
}

test("the VNIC -> policer map (thousands of VNICs) comes back whole, decoded only when an op needs it, and later VNICs get the same indices", async () => {
  const n = 3000, vn = F.VNS[0].id;
  const macOf = (k: number) => `02:77:${[k >> 16, (k >> 8) & 255, k & 255, 1].map((b) => b.toString(16).padStart(2, "0")).join(":")}`;
  const vnicOf = (k: number) => `00000000-0000-4000-8000-${k.toString(16).padStart(12, "0")}`;
  const bulk = (from: number, to: number): DpOp => {
    const ks = Array.from({ length: to - from }, (_, i) => from + i);
    return { op: "local.bulk", port: F.ACC1, vn: ks.map(() => vn), mac: ks.map(macOf), active: ks.map(() => true), ipStart: [...ks.map(() => 0), 0], ips: [], vnic: ks.map(vnicOf) };
  };
  const a = await DataPlane.create(OPTS);
  a.apply([...F.fixtureOps(4), bulk(0, n)]);
  const b = await DataPlane.create({ ...OPTS, image: checkImage({ bytes: a.snapshot(keyOf(5)) }, keyOf(5)) });
  const tb = (b as unknown as { t: { policerIdx: Map<string, number> } }).t;
  assert.ok(Object.getOwnPropertyDescriptor(tb, "policerIdx")?.get, "not decoded by the restore");
  sameForwarding(a, b, 4, "restored");
  // a VNIC seen before keeps its index, a new one gets the next: the same on both
  for (const dp of [a, b]) dp.apply([bulk(n - 5, n + 5)]);
  const ta = (a as unknown as { t: { policerIdx: Map<string, number> } }).t;
  assert.is(Object.getOwnPropertyDescriptor(tb, "policerIdx")?.get, undefined, "a plain property again once used");
  assert.is(tb.policerIdx.size, n + 5);
  assert.equal([...tb.policerIdx], [...ta.policerIdx], "every VNIC with the same index, in the same order");
});

test("a restored data plane counts from zero, as a rebuilt one does", async () => {
  const a = await DataPlane.create(OPTS);
  a.apply(F.fixtureOps(4));
  for (const x of frames(4)) F.send(a, x.port, x.frame);
  assert.ok(a.counters().frames.rx > 0);
  const b = await DataPlane.create({ ...OPTS, image: checkImage({ bytes: a.snapshot(keyOf(1)) }, keyOf(1)) });
  const c = b.counters();
  assert.equal(c.frames, { rx: 0, forwarded: 0, outputs: 0, dropped: 0 });
  assert.ok(Object.values(c.drops).every((n) => n === 0), "no drop counted");
  assert.is(b.stats().fastPathFrames, 0);
});

test("an image whose key differs is refused, naming what differs", async () => {
  const a = await DataPlane.create(OPTS);
  a.apply(F.fixtureOps(4));
  const img = a.snapshot(keyOf(7));
  assert.throws(() => checkImage({ bytes: img }, keyOf(8)), (e: Error) => e instanceof ImageRefused && /store's last transaction id differs: the image has 7, now 8/.test(e.message));
  assert.throws(() => checkImage({ bytes: img }, { ...keyOf(7), config: "other" }), /static state/);
  assert.throws(() => checkImage({ bytes: img }, { ...keyOf(7), wasm: "0".repeat(64) }), /data plane module/);
  assert.throws(() => checkImage({ bytes: img }, { ...imageKeyOf({ macLog2: 13, ipLog2: 12 }), txnId: 7, config: "c0ffee" }), /layout differs/);
  const { config: _c, ...noConfig } = keyOf(7);
  assert.throws(() => checkImage({ bytes: img }, noConfig), /static state/, "a key field the caller no longer gives");
});

/** Why an image is refused, by the header check or as it is restored into a fresh instance; "" when it is used. */
async function refusal(b: Uint8Array, key: ImageKey): Promise<string> {
  try {
    await DataPlane.create({ ...OPTS, image: checkImage({ bytes: b }, key) });
    return "";
  } catch (e) {
    assert.ok(e instanceof ImageRefused, `refused as an ImageRefused, not ${(e as Error).stack}`);
    return (e as Error).message;
  }
}

test("a corrupt, truncated, extended, foreign or other-version image is refused with its reason", async () => {
  const a = await DataPlane.create(OPTS);
  a.apply(F.fixtureOps(4));
  const img = a.snapshot(keyOf(3));
  assert.is(await refusal(img, keyOf(3)), "", "the good one is used");
  const refused = async (b: Uint8Array, re: RegExp, label: string) => {
    const why = await refusal(b, keyOf(3));
    assert.match(why, re, `${label}: ${why || "used"}`);
  };
  for (const at of [13, 30, img.length >> 1, img.length - 1]) {
    const b = img.slice();
    b[at] ^= 0x10;
    await refused(b, /checksum mismatch|not JSON/, `a bit flipped at ${at}`);
  }
  await refused(img.subarray(0, img.length - 4096), /truncated or extended: \d+ bytes, its header says \d+/, "cut short");
  await refused(img.subarray(0, 10), /truncated: 10 bytes/, "cut inside the header");
  await refused(new Uint8Array(0), /truncated: 0 bytes/, "empty");
  const longer = new Uint8Array(img.length + 1);
  longer.set(img);
  await refused(longer, /truncated or extended/, "a byte more");
  const v2 = img.slice();
  new DataView(v2.buffer).setUint32(8, IMAGE_VERSION + 1, true);
  await refused(v2, new RegExp(`format version ${IMAGE_VERSION + 1}, this build reads version ${IMAGE_VERSION}`), "another format version");
  const foreign = img.slice();
  foreign.set(new TextEncoder().encode("SQLite f"), 0);
  await refused(foreign, /bad magic/, "another file");
});

/** Where an image's page records start (format 3: after the header, meta, globals and bookkeeping). */
function recordsAt(img: Uint8Array): number {
  const dv = new DataView(img.buffer, img.byteOffset, img.length);
  const ml = dv.getUint32(24, true);
  const meta = JSON.parse(new TextDecoder().decode(img.subarray(32, 32 + ml))) as { globals: unknown[]; hostLen: number };
  return 32 + ml + 8 * meta.globals.length + meta.hostLen;
}

/** `img` with its length and CRC made right again (what a buggy writer, not a damaged disk, would give). */
function resealed(img: Uint8Array): Uint8Array {
  const b = img.slice();
  const dv = new DataView(b.buffer);
  dv.setBigUint64(16, BigInt(b.length), true);
  dv.setUint32(12, crc32(b.subarray(16)), true);
  return b;
}

test("format 3: the pages are runs of non-zero words; restored, the memory is the original's byte for byte", async () => {
  const a = await DataPlane.create(OPTS);
  a.apply(F.fixtureOps(6));
  const img = a.snapshot(keyOf(9));
  const ml = new DataView(img.buffer, img.byteOffset).getUint32(24, true);
  const meta = JSON.parse(new TextDecoder().decode(img.subarray(32, 32 + ml))) as { chunks: number; chunk: number };
  // fewer bytes than the pages they stand for: most of a hash table is empty slots
  assert.ok(img.length - recordsAt(img) < (meta.chunks * meta.chunk) / 2, `${img.length - recordsAt(img)} bytes of records for ${meta.chunks} pages`);
  const b = await DataPlane.create({ ...OPTS, image: checkImage({ bytes: img }, keyOf(9)) });
  // nothing forwarded yet: no counter, slot or trace differs from a fresh instance's zeros
  assert.is(b.memory.buffer.byteLength, a.memory.buffer.byteLength, "the same memory size");
  assert.is(Buffer.compare(Buffer.from(b.memory.buffer), Buffer.from(a.memory.buffer)), 0, "the same memory");
});

test("format 3: a page record that reaches outside its page or the memory, or a file that ends inside one, is refused even when its CRC is right", async () => {
  const a = await DataPlane.create(OPTS);
  a.apply(F.fixtureOps(4));
  const img = a.snapshot(keyOf(3));
  const at = recordsAt(img);
  const why = async (b: Uint8Array) => refusal(b, keyOf(3));
  assert.is(await why(resealed(img)), "", "resealed as it was: used");
  const pageOut = img.slice();
  new DataView(pageOut.buffer).setUint32(at, 0x7fffffff, true); // the first record's page number
  assert.match(await why(resealed(pageOut)), /its pages do not expand/, "a page outside the memory");
  const runOut = img.slice();
  new DataView(runOut.buffer).setUint32(at + 8, 0x4000 | (0x4000 << 16), true); // its first run: skip a whole page, then a page of words
  assert.match(await why(resealed(runOut)), /its pages do not expand/, "a run past its page's end");
  const bodyOut = img.slice();
  new DataView(bodyOut.buffer).setUint32(at + 4, 0x40000000, true); // its body longer than the file
  assert.match(await why(resealed(bodyOut)), /its pages do not expand/, "a body longer than the rest of the file");
  assert.match(await why(resealed(img.subarray(0, img.length - 2))), /its pages do not expand/, "the file ends inside the last record");
});

test("image files: written whole through a temporary file and restored from the file", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-image-"));
  try {
    const p = join(dir, "dataplane.img");
    const a = await DataPlane.create(OPTS);
    a.apply(F.fixtureOps(6));
    const img = a.snapshot(keyOf(11));
    writeFileSync(`${p}.tmp`, "a torn write of an earlier run");
    await writeImageFile(p, img);
    assert.not.ok(existsSync(`${p}.tmp`), "the temporary file became the image");
    assert.equal(Buffer.compare(readFileSync(p), Buffer.from(img)), 0);
    const b = await DataPlane.create({ ...OPTS, image: checkImage({ path: p }, keyOf(11)) });
    sameForwarding(a, b, 6, "from the file");
    // a file that changes between the check and the restore is refused too
    const h = checkImage({ path: p }, keyOf(11));
    writeFileSync(p, img.subarray(0, img.length - 1));
    await DataPlane.create({ ...OPTS, image: h }).then(() => assert.unreachable("used"), (e: Error) => assert.match(e.message, /changed since it was checked/));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the loader exports every mutable global of the module, and nothing else changes", () => {
  const bytes = new Uint8Array(readFileSync(wasmPath("dataplane.wasm")));
  const { bytes: out, globals } = withGlobalExports(bytes);
  assert.ok(globals && globals.length > 10, `mutable globals found: ${globals?.length}`);
  const names = (m: WebAssembly.Module) => WebAssembly.Module.exports(m).map((e) => e.name);
  const before = names(new WebAssembly.Module(bytes));
  const after = names(new WebAssembly.Module(out));
  assert.equal(after.slice(0, before.length), before, "the module's own exports first, unchanged");
  assert.equal(after.slice(before.length), globals!.map((g) => g.name), "then one per mutable global");
  assert.ok(globals!.every((g) => g.name.startsWith(GLOBAL_PREFIX)));
});

test.run();
