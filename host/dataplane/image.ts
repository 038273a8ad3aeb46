// The data plane's table image (issue 15, "Restart"): the tables of a
// programmed DataPlane as one file, so `nvedge run` forwards from it at once
// instead of programming a million bindings from the store's records again.
//
// An image holds what a fresh instance needs to be the same data plane: the
// module's linear memory (in CHUNK-byte pages, only those not all zero, so
// pages never touched stay unmapped: assembly/state.ts alloc), every mutable
// wasm global (exported for this by the loader: withGlobalExports), and the
// host's bookkeeping of the tables (Tables, L3State: ./tables.ts, ./l3.ts),
// serialised by V8 (node:v8, which keeps Maps, Sets, typed arrays and shared
// references). The frame slots, descriptors, output headers and counters are
// left out (a restarted NVE counts from zero, as after a rebuild).
//
// It is used only when it is what a rebuild would make: its key (the wasm
// build's SHA-256, the host table code's SHA-256, the layout, and what the
// caller adds: the store's last transaction id and the configuration's static
// ops) equals the expected one. Anything else (a missing, truncated, corrupt,
// other-version or other-key file) is refused with the reason, and the caller
// rebuilds from the records (docs/README.md "The table image").
//
// File format (version IMAGE_VERSION, little-endian; version 2: the
// bookkeeping property by property, see HostValue; version 3: the pages as
// runs of non-zero words, see encodePage):
//   0   8  magic "NVEIMAGE"
//   8   4  format version
//   12  4  CRC-32 (zlib) of bytes [16, end)
//   16  8  total length in bytes
//   24  4  M: length of the meta JSON
//   28  4  CRC-32 of the meta JSON (checked before its key is read)
//   32  M  meta JSON: { key, memBytes, chunk, chunks, globals: [name, type][], hostLen }
//   ..     globals: 8 bytes each (i32 and i64 as i64, f32 and f64 as f64), meta order
//   ..     host bookkeeping: hostLen bytes (v8.serialize of { object: { property: HostValue } })
//   ..     `chunks` page records, by page number, to the end of the file: u32 page
//          number (of CHUNK bytes), u32 body bytes B, then B bytes of runs: a u32
//          (zero words to skip in the low 16 bits, data words that follow in the
//          high 16) and those words. The tables are hash tables a third full:
//          at 100k VNICs / 1M addresses 98 of 256 MiB of pages hold anything,
//          29 MiB of it not zero, in some 513,000 runs; the file is 31 MiB, not
//          103, and a restart reads and checksums that, the module expanding it
//          (assembly/control.ts imageExpand: a JS call per run costs more than
//          the bytes saved).
import { crc32 } from "node:zlib";
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, rmSync, fstatSync, readSync, promises as fsp } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { serialize, deserialize } from "node:v8";
import { type Exports, SLOT_SIZE, MAX_BATCH, IN_DESC, OUT_DESC, MAX_OUT, HDR_SLOT, NUM_DROPS, MAX_PORTS, PORT_CTR, MAX_VNS, VN_CTR, TRACE_REC } from "./abi.js";
import { phase } from "../sys/phase.js";
import { inBundle, root } from "../paths.js";


export const IMAGE_VERSION = 3;
const MAGIC = "NVEIMAGE";
const HEAD = 32;
/** Memory is imaged in pages of this size: a page all zero is left out. */
export const CHUNK = 64 * 1024;

/** What an image must match to be used; every field compared as is. */
export type ImageKey = Record<string, string | number>;

/** A mutable global of the module (exported as `${GLOBAL_PREFIX}${index}`), and its wasm value type. */
export interface GlobalSpec { name: string; type: "i32" | "i64" | "f32" | "f64" }
export const GLOBAL_PREFIX = "image$g";

// ---------------------------------------------------------------- the module's globals

function uleb(b: Uint8Array, p: { i: number }): number {
  let r = 0, s = 0, x: number;
  do { x = b[p.i++]; r += (x & 0x7f) * 2 ** s; s += 7; } while (x & 0x80);
  return r;
}
function skipLeb(b: Uint8Array, p: { i: number }): void { while (b[p.i++] & 0x80); }
function ulebBytes(n: number): number[] {
  const out: number[] = [];
  do { let x = n % 128; n = Math.floor(n / 128); if (n) x |= 0x80; out.push(x); } while (n);
  return out;
}
const VALTYPE: Record<number, GlobalSpec["type"] | "v128" | "ref"> = { 0x7f: "i32", 0x7e: "i64", 0x7d: "f32", 0x7c: "f64", 0x7b: "v128", 0x70: "ref", 0x6f: "ref" };

/** Skips a constant expression (WebAssembly core spec §3.3.10) up to its `end`. */
function skipConstExpr(b: Uint8Array, p: { i: number }): void {
  for (;;) {
    const op = b[p.i++];
    if (op === 0x0b) return;
    if (op === 0x41 || op === 0x42 || op === 0x23 || op === 0xd2) skipLeb(b, p);
    else if (op === 0x43) p.i += 4;
    else if (op === 0x44) p.i += 8;
    else if (op === 0xd0) p.i += 1;
    else if (op === 0xfd) { skipLeb(b, p); p.i += 16; } // v128.const
    else if (op === 0x6a || op === 0x6b || op === 0x6c || op === 0x7c || op === 0x7d || op === 0x7e) continue; // extended-const
    else throw new Error(`a global's initialiser has opcode 0x${op.toString(16)}, which the image does not know`);
  }
}

/**
 * The module's bytes with every mutable global it defines exported as
 * `image$g<index>` (appended to its export section; nothing else changes),
 * so an image can read and restore them (WebAssembly JS API: an exported
 * mutable global is a WebAssembly.Global). A v128 global cannot cross to JS:
 * a module with a mutable one cannot be imaged (`globals` is then null).
 */
export function withGlobalExports(bytes: Uint8Array): { bytes: Uint8Array<ArrayBuffer>; globals: GlobalSpec[] | null } {
  const b = bytes;
  let importedGlobals = 0;
  const mutable: { index: number; type: string }[] = [];
  let exportAt = -1, exportEnd = -1, exportSizeAt = -1;
  const p = { i: 8 };
  while (p.i < b.length) {
    const id = b[p.i++];
    const sizeAt = p.i;
    const size = uleb(b, p);
    const start = p.i, end = p.i + size;
    if (id === 2) { // imports
      const q = { i: start };
      const n = uleb(b, q);
      for (let k = 0; k < n; k++) {
        q.i += uleb(b, q); q.i += uleb(b, q); // module, field
        const kind = b[q.i++];
        if (kind === 0) skipLeb(b, q);
        else if (kind === 1) { q.i++; const f = b[q.i++]; skipLeb(b, q); if (f & 1) skipLeb(b, q); }
        else if (kind === 2) { const f = b[q.i++]; skipLeb(b, q); if (f & 1) skipLeb(b, q); }
        else if (kind === 3) { q.i += 2; importedGlobals++; }
        else if (kind === 4) { q.i++; skipLeb(b, q); }
      }
    } else if (id === 6) { // globals
      const q = { i: start };
      const n = uleb(b, q);
      for (let k = 0; k < n; k++) {
        const t = VALTYPE[b[q.i++]] ?? "ref";
        const mut = b[q.i++];
        skipConstExpr(b, q);
        if (mut) mutable.push({ index: importedGlobals + k, type: t });
      }
    } else if (id === 7) { exportAt = start; exportEnd = end; exportSizeAt = sizeAt; }
    p.i = end;
  }
  if (exportAt < 0) throw new Error("the data plane module has no export section");
  const q = { i: exportAt };
  const n = uleb(b, q);
  const entries = b.subarray(q.i, exportEnd);

  const add: number[] = [];
  const enc = new TextEncoder();
  for (const g of mutable) {
    const name = enc.encode(`${GLOBAL_PREFIX}${g.index}`);
    add.push(...ulebBytes(name.length), ...name, 0x03, ...ulebBytes(g.index));
  }
  const content = new Uint8Array([...ulebBytes(n + mutable.length), ...entries, ...add]);
  const size = ulebBytes(content.length);
  const out = new Uint8Array(exportSizeAt + size.length + content.length + (b.length - exportEnd));
  out.set(b.subarray(0, exportSizeAt), 0);
  out.set(size, exportSizeAt);
  out.set(content, exportSizeAt + size.length);
  out.set(b.subarray(exportEnd), exportSizeAt + size.length + content.length);
  const ok = mutable.every((g) => g.type === "i32" || g.type === "i64" || g.type === "f32" || g.type === "f64");
  return { bytes: out, globals: ok ? mutable.map((g) => ({ name: `${GLOBAL_PREFIX}${g.index}`, type: g.type as GlobalSpec["type"]})) : null };
}

// ---------------------------------------------------------------- identity

const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

let hostHash: string | undefined;
/**
 * SHA-256 of the host code that keeps the tables' bookkeeping (this file,
 * dataplane.ts, tables.ts, l3.ts, as built): another build of it may lay
 * that bookkeeping out differently, so its images are not used. In a
 * checkout, the files in dist/host/dataplane/ whichever copy of them runs
 * (dist/host, or the bundles in dist/bundle that scripts/build.mjs makes from
 * the same sources in the same run): a test process and `nvedge run` must
 * agree on it.
 */
export function hostCodeHash(): string {
  if (hostHash) return hostHash;
  const h = createHash("sha256");
  const files = ["image.js", "dataplane.js", "tables.js", "l3.js"].map((f) => join(root, "dist", "host", "dataplane", f));
  // in a firmware bundle (firmware/build.mjs) they are all in the one file this code runs from
  for (const f of !inBundle && files.every((f) => existsSync(f)) ? files : [fileURLToPath(import.meta.url)]) h.update(readFileSync(f));
  return (hostHash = h.digest("hex"));
}

/** SHA-256 of a module's bytes, hex. */
export const wasmHash = (bytes: Uint8Array) => sha(bytes);

/** SHA-256 of a file's bytes, hex ("" when it cannot be read). */
export function fileHash(path: string): string {
  try { return sha(readFileSync(path)); } catch { return ""; }
}

// ---------------------------------------------------------------- snapshot and restore

/** Memory ranges left out of an image (frames, descriptors, counters, trace): [start, end) byte offsets. */
export type Ranges = [number, number][];

/** What encode/restore need of a DataPlane (passed by DataPlane.snapshot/create). */
export interface ImageSubject {
  memory: WebAssembly.Memory;
  instance: Record<string, unknown>;
  globals: GlobalSpec[];
  /** The host's bookkeeping objects by name: their own data properties are imaged, except `skip`. */
  host: Record<string, object>;
  skip: Set<string>;
  /** Left out of the image and zero after a restore. */
  transient: Ranges;
  /** [start, bytes): a transient area a restore stages the file's pages in for the module to expand (the frame slots). */
  stage: [number, number];
  /** What the image's user may want to know before restoring it (meta.info): e.g. the remote NVEs. */
  info?: Record<string, unknown>;
}

/** Counters the module keeps in globals: zero after a restore, as after a rebuild. */
const COUNTER_GLOBALS = ["consumed", "fastFrames", "puntCount", "puntLost", "puntTotal", "learnCount", "learnLost", "warmSink"];

/**
 * An instance as encodeImage/restoreImage see it: `globals` from the loader
 * (null: this module cannot be imaged), `host` the DataPlane's bookkeeping
 * objects (their references to the instance are not imaged).
 */
export function imageSubject(ex: Exports, globals: GlobalSpec[] | null, host: Record<string, object>, info?: Record<string, unknown>): ImageSubject {
  if (!globals) throw new ImageRefused("the data plane module has a mutable v128 global, which an image cannot hold");
  const r = (p: number, n: number): [number, number] => [p, p + n];
  return {
    memory: ex.memory, instance: ex as unknown as Record<string, unknown>, globals, host, info,
    skip: new Set(["ex", "u8", "dv", "host"]),
    stage: [ex.slotBasePtr(), SLOT_SIZE * MAX_BATCH],
    transient: [
      r(ex.slotBasePtr(), SLOT_SIZE * MAX_BATCH), r(ex.inDescPtr(), IN_DESC * MAX_BATCH), r(ex.outDescPtr(), OUT_DESC * MAX_OUT),
      r(ex.hdrBasePtr(), HDR_SLOT * MAX_OUT), r(ex.globalCtrPtr(), 64), r(ex.dropCtrPtr(), NUM_DROPS * 8),
      r(ex.portCtrPtr(), MAX_PORTS * PORT_CTR * 8), r(ex.vnCtrPtr(), MAX_VNS * VN_CTR * 8), r(ex.tracePtr(), MAX_BATCH * TRACE_REC),
    ],
  };
}

/**
 * One property of the host's bookkeeping as imaged: V8's serialisation of it,
 * or a Map of strings to numbers as its keys joined by NUL (UTF-8 bytes: V8
 * copies bytes as they are, a string it reads character by character) and
 * its values.
 * The latter is the VNIC -> policer map (tables.ts policerIdx: one entry per
 * VNIC, 100,000 at the issue's scale), which V8 (de)serialises entry by entry:
 * 0.4 s to read back under load, against one string split.
 */
export type HostValue = { v8: Uint8Array } | { keys: Uint8Array; values: Float64Array };

function encodeHostValue(v: unknown): HostValue {
  if (v instanceof Map && v.constructor === Map && v.size >= 64) {
    const keys: string[] = [];
    const values = new Float64Array(v.size);
    let i = 0;
    for (const [k, x] of v as Map<unknown, unknown>) {
      if (typeof k !== "string" || typeof x !== "number" || k.includes("\0")) return { v8: serialize(v) };
      keys.push(k);
      values[i++] = x;
    }
    return { keys: Buffer.from(keys.join("\0"), "utf8"), values };
  }
  return { v8: serialize(v) };
}

function decodeHostValue(h: HostValue): unknown {
  if (!("keys" in h)) return deserialize(h.v8);
  const ks = Buffer.from(h.keys.buffer, h.keys.byteOffset, h.keys.length).toString("utf8").split("\0");
  if (ks.length !== h.values.length) throw new ImageRefused("its bookkeeping does not add up: corrupt");
  const m = new Map<string, number>();
  for (let i = 0; i < ks.length; i++) m.set(ks[i], h.values[i]);
  return m;
}

/** A property at least this large (encoded) is decoded when first used, not at restore. */
const LAZY_BYTES = 16 * 1024;
const hostValueBytes = (h: HostValue) => ("keys" in h ? h.keys.length + h.values.byteLength : h.v8.length);

/**
 * `obj[k]` decoded from the image when first read or replaced when first
 * written, then a plain data property again: a data plane restored for
 * forwarding does not pay for bookkeeping that only programming uses (the
 * VNIC -> policer map: until the first op that binds a MAC).
 */
function lazyProperty(obj: object, k: string, make: () => unknown): void {
  const settle = (value: unknown) => Object.defineProperty(obj, k, { value, writable: true, enumerable: true, configurable: true });
  Object.defineProperty(obj, k, {
    enumerable: true, configurable: true,
    get() { const v = make(); settle(v); return v; },
    set(v: unknown) { settle(v); },
  });
}

function hostState(s: ImageSubject): Record<string, Record<string, HostValue>> {
  const out: Record<string, Record<string, HostValue>> = {};
  for (const [name, obj] of Object.entries(s.host)) {
    const o: Record<string, HostValue> = {};
    for (const [k, v] of Object.entries(obj)) if (!s.skip.has(k) && typeof v !== "function") o[k] = encodeHostValue(v);
    out[name] = o;
  }
  return out;
}

/**
 * The data plane as an image with `key` (synchronous: the instance cannot
 * change meanwhile, as it is programmed and run on this thread only).
 */
export function encodeImage(s: ImageSubject, key: ImageKey): Uint8Array {
  const enc = new ImageEncoder(s, key);
  while (!enc.step(Infinity));
  return enc.bytes();
}

/** Zero words a run keeps inside it rather than end (a run's header is one word). */
const GAP = 4;

/**
 * One page record of the file (format 3) into `rec` from the page's words
 * `w`: [page number, body bytes, runs...]; returns the words used (2: the
 * page holds only zeros, nothing to write).
 */
function encodePage(w: Int32Array, pg: number, rec: Int32Array): number {
  const n = w.length;
  let o = 2, i = 0;
  while (i < n) {
    let z = i;
    while (z < n && w[z] === 0) z++;
    if (z === n) break;
    let j = z;
    for (;;) {
      while (j < n && w[j] !== 0) j++;
      let k = j;
      while (k < n && k - j < GAP && w[k] === 0) k++;
      if (k < n && k - j < GAP) { j = k; continue; } // a short gap, then more data: the same run
      break;
    }
    rec[o++] = (z - i) | ((j - z) << 16);
    for (let q = z; q < j; q++) rec[o++] = w[q];
    i = j;
  }
  rec[0] = pg;
  rec[1] = 4 * (o - 2);
  return o;
}

/**
 * An image taken a slice at a time (issue 15: a packet I/O worker takes its
 * image between batches, forwarding in between, rather than stopping for the
 * whole table memory). The globals and the host's bookkeeping are taken when
 * it is made; the pages are scanned, then encoded, then copied and
 * checksummed, a few per step(). The caller must not change the tables until
 * it is done (a worker drops it when an op comes: host/io/worker.ts); what the
 * data plane changes itself as it forwards (counters, policer buckets) is
 * taken as it is when its page is encoded. The same bytes as encodeImage for
 * the same tables.
 */
export class ImageEncoder {
  private readonly mem: Uint8Array;
  private readonly pages: number;
  private readonly keep: number[] = [];
  private readonly globals: (number | bigint)[];
  private readonly host: Uint8Array;
  private readonly zero = Buffer.alloc(CHUNK);
  /** One page's words, copied out of memory with the transient ranges zeroed. */
  private readonly page = new Int32Array(CHUNK / 4);
  private readonly rec = new Int32Array(2 + 2 * (CHUNK / 4));
  private readonly parts: Uint8Array[] = [];
  private partBytes = 0;
  private scanned = 0;
  private encoded = 0;
  private copied = 0;
  private out: Uint8Array | undefined;
  private dv: DataView | undefined;
  private at = 0;
  private crc = 0;
  /** step() calls so far. */
  steps = 0;

  constructor(private readonly s: ImageSubject, private readonly key: ImageKey) {
    this.mem = new Uint8Array(s.memory.buffer);
    this.pages = this.mem.length / CHUNK;
    this.globals = s.globals.map((g) => (s.instance[g.name] as WebAssembly.Global).value as number | bigint);
    this.host = serialize(hostState(s));
  }

  /** About `budgetMs` of work (at least one page); true once the image is whole (bytes()). */
  step(budgetMs: number): boolean {
    this.steps++;
    const until = performance.now() + budgetMs;
    const { mem, s } = this;
    const mb = Buffer.from(mem.buffer, mem.byteOffset, mem.length);
    // a page is imaged unless all zero, or all inside the transient ranges
    while (this.scanned < this.pages) {
      const a = this.scanned * CHUNK, e = a + CHUNK;
      if (!s.transient.some(([x, y]) => x <= a && e <= y) && mb.compare(this.zero, 0, CHUNK, a, e) !== 0) this.keep.push(this.scanned);
      this.scanned++;
      if (performance.now() >= until) return false;
    }
    const page8 = new Uint8Array(this.page.buffer);
    while (this.encoded < this.keep.length) {
      const pg = this.keep[this.encoded++];
      page8.set(mem.subarray(pg * CHUNK, (pg + 1) * CHUNK));
      // the transient ranges inside a kept page are zero in the image
      for (const [x, y] of s.transient) {
        const a = Math.max(x, pg * CHUNK), e = Math.min(y, (pg + 1) * CHUNK);
        if (a < e) page8.fill(0, a - pg * CHUNK, e - pg * CHUNK);
      }
      const words = encodePage(this.page, pg, this.rec);
      if (words > 2) {
        this.parts.push(new Uint8Array(this.rec.buffer, 0, 4 * words).slice());
        this.partBytes += 4 * words;
      }
      if (performance.now() >= until) return false;
    }
    if (!this.out) this.layOut();
    const out = this.out!;
    while (this.copied < this.parts.length) {
      const part = this.parts[this.copied++];
      out.set(part, this.at);
      this.crc = crc32(part, this.crc);
      this.at += part.length;
      if (this.copied < this.parts.length && performance.now() >= until) return false;
    }
    this.dv!.setUint32(12, this.crc, true);
    return true;
  }

  /** The image, once step() returned true. */
  bytes(): Uint8Array {
    if (!this.out || this.copied < this.parts.length) throw new Error("the image is not taken yet");
    return this.out;
  }

  /** Everything before the pages, once the pages are encoded. */
  private layOut(): void {
    const { s, parts, host } = this;
    const memBytes = this.mem.length;
    const meta = new TextEncoder().encode(JSON.stringify({ key: this.key, info: s.info ?? {}, memBytes, chunk: CHUNK, chunks: parts.length, globals: s.globals.map((g) => [g.name, g.type]), hostLen: host.length,
      touched: touchedRanges(this.keep) }));
    const total = HEAD + meta.length + 8 * s.globals.length + host.length + this.partBytes;
    const out = new Uint8Array(total);
    const dv = new DataView(out.buffer);
    out.set(new TextEncoder().encode(MAGIC), 0);
    dv.setUint32(8, IMAGE_VERSION, true);
    dv.setBigUint64(16, BigInt(total), true);
    dv.setUint32(24, meta.length, true);
    dv.setUint32(28, crc32(meta), true);
    out.set(meta, HEAD);
    let at = HEAD + meta.length;
    s.globals.forEach((g, i) => {
      const v = this.globals[i];
      if (g.type === "i64") dv.setBigInt64(at, v as bigint, true);
      else if (g.type === "i32") dv.setBigInt64(at, BigInt(v as number), true);
      else dv.setFloat64(at, v as number, true);
      at += 8;
    });
    out.set(host, at);
    at += host.length;
    this.at = at;
    this.crc = crc32(out.subarray(16, at));
    this.out = out;
    this.dv = dv;
  }
}

/**
 * Where an image is read from: a file (read into the instance's own memory,
 * a stage at a time: no copy of the whole image, whose pages the process
 * would have to fault in as well) or bytes in memory.
 */
export type ImageSource = { path: string } | { bytes: Uint8Array } | { fd: number };

/** An image whose header and key were checked (checkImage); its body is checked as it is restored. */
export interface Image { source: ImageSource; size: number; meta: ImageMeta; crcHead: number; crc: number; bodyAt: number }
interface ImageMeta {
  key: ImageKey; info: Record<string, unknown>; memBytes: number; chunk: number; chunks: number; globals: [string, string][]; hostLen: number;
  /**
   * The memory the pages land in, as [offset, length] pairs (the imaged pages,
   * gaps under 2 MiB closed): what a restore faults in, so that it can be
   * faulted in ahead by another thread (DataPlane.create's prefault). Absent
   * in images written before it; a hint only (the pages are what counts).
   */
  touched?: [number, number][];
}

/** Imaged pages closer than this are one range of `touched` (a 2 MiB huge page is faulted in whole anyway). */
const TOUCH_GAP = 2 << 20;

/** The memory an image's pages land in (ImageMeta.touched) from its kept page numbers, ascending. */
function touchedRanges(pages: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const pg of pages) {
    const a = pg * CHUNK, last = out[out.length - 1];
    if (last && a - (last[0] + last[1]) < TOUCH_GAP) last[1] = a + CHUNK - last[0];
    else out.push([a, CHUNK]);
  }
  return out;
}

/** `touched` when it is well formed and inside `memBytes`, else none (it is only a hint). */
export function touchedOf(img: Image, memBytes: number): [number, number][] {
  const t = img.meta.touched;
  if (!Array.isArray(t)) return [];
  return t.every((r) => Array.isArray(r) && r.length === 2 && Number.isInteger(r[0]) && Number.isInteger(r[1]) && r[0] >= 0 && r[1] > 0 && r[0] + r[1] <= memBytes) ? t : [];
}

/** Why an image cannot be used, for the log line (the caller rebuilds). */
export class ImageRefused extends Error {}

/** Reads [pos, pos + into.length) of the source into `into`; false at a short read. */
type Reader = { size: number; read(into: Uint8Array, pos: number): boolean; close(): void };
function reader(src: ImageSource): Reader {
  if ("bytes" in src) {
    const b = src.bytes;
    return { size: b.length, read: (into, pos) => { if (pos + into.length > b.length) return false; into.set(b.subarray(pos, pos + into.length)); return true; }, close: () => {} };
  }
  // a descriptor the caller owns (several workers read one file by it: host/io/afpacket.ts stagger): positioned reads only, never closed here
  const own = !("fd" in src);
  const fd = "fd" in src ? src.fd : openSync(src.path, "r");
  return {
    size: fstatSync(fd).size,
    read: (into, pos) => {
      let off = 0;
      while (off < into.length) {
        const r = readSync(fd, into, off, into.length - off, pos + off);
        if (r === 0) return false;
        off += r;
      }
      return true;
    },
    close: () => { if (own) closeSync(fd); },
  };
}

/**
 * Checks an image's header (magic, version, length) and key without reading
 * its body; the body's CRC is checked by restoreImage as it reads it. Throws
 * ImageRefused with the reason when it does not fit `expect` (without
 * `expect`, the caller compares meta.key later: keyDifference).
 */
export function checkImage(source: ImageSource, expect?: ImageKey): Image {
  const r = reader(source);
  try {
    const head = new Uint8Array(Math.min(r.size, HEAD));
    r.read(head, 0);
    if (r.size < HEAD) throw new ImageRefused(`truncated: ${r.size} bytes, shorter than its header`);
    if (new TextDecoder().decode(head.subarray(0, 8)) !== MAGIC) throw new ImageRefused("not a table image (bad magic)");
    const dv = new DataView(head.buffer);
    const v = dv.getUint32(8, true);
    if (v !== IMAGE_VERSION) throw new ImageRefused(`format version ${v}, this build reads version ${IMAGE_VERSION}`);
    const total = Number(dv.getBigUint64(16, true));
    if (r.size !== total) throw new ImageRefused(`truncated or extended: ${r.size} bytes, its header says ${total}`);
    const ml = dv.getUint32(24, true);
    const mb = new Uint8Array(Math.min(ml, total - HEAD));
    r.read(mb, HEAD);
    if (crc32(mb) !== dv.getUint32(28, true)) throw new ImageRefused("checksum mismatch in its meta data: corrupt");
    let meta: ImageMeta;
    try { meta = JSON.parse(new TextDecoder().decode(mb)) as ImageMeta; } catch {
      throw new ImageRefused("its meta data is not JSON: corrupt");
    }
    if (typeof meta.key !== "object" || meta.key === null) throw new ImageRefused("its meta data has no key: corrupt");
    const differs = expect && keyDifference(meta.key, expect);
    if (differs) throw new ImageRefused(differs);
    const crcHead = crc32(mb, crc32(head.subarray(16)));
    return { source, size: total, meta, crcHead, crc: dv.getUint32(12, true), bodyAt: HEAD + ml };
  } finally {
    r.close();
  }
}

/** What differs between an image's key and the one expected, as a sentence; undefined when they are the same. */
export function keyDifference(have: ImageKey, expect: ImageKey): string | undefined {
  for (const k of new Set([...Object.keys(expect), ...Object.keys(have)])) {
    if (have[k] !== expect[k]) return `${KEY_TEXT[k] ?? k} differs: the image has ${JSON.stringify(have[k])}, now ${JSON.stringify(expect[k])}`;
  }
  return undefined;
}

const KEY_TEXT: Record<string, string> = {
  txnId: "the store's last transaction id", wasm: "the data plane module (SHA-256)", host: "the host's table code (SHA-256)",
  layout: "the table layout", storeSchema: "the store's schema version", config: "the configuration's static state (SHA-256)", configFile: "the configuration file (SHA-256)",
};

/**
 * Makes the fresh instance `s` (init() already called with the image's
 * layout) the imaged data plane: memory pages, globals, host bookkeeping.
 * The pages are read into the stage and expanded from there by the module,
 * the CRC computed as they come; the globals and bookkeeping are set only
 * once it matched. On a refusal
 * (ImageRefused) the instance holds part of the image: discard it.
 */
export function restoreImage(s: ImageSubject, img: Image): void {
  const { meta } = img;
  const mem0 = s.memory.buffer.byteLength;
  if (meta.memBytes < mem0) throw new ImageRefused(`its memory (${meta.memBytes} bytes) is smaller than a fresh instance's (${mem0})`);
  if (meta.chunk !== CHUNK) throw new ImageRefused(`pages of ${meta.chunk} bytes, this build uses ${CHUNK}`);
  const mine = s.globals.map((g) => `${g.name}:${g.type}`).join();
  if (meta.globals.map(([n, t]) => `${n}:${t}`).join() !== mine) throw new ImageRefused("the module's globals differ");
  const r = reader(img.source);
  try {
    if (r.size !== img.size) throw new ImageRefused(`changed since it was checked: ${r.size} bytes, was ${img.size}`);
    // globals and bookkeeping in one read
    const small = new Uint8Array(8 * s.globals.length + meta.hostLen);
    if (img.bodyAt + small.length > img.size || !r.read(small, img.bodyAt)) throw new ImageRefused("truncated");
    let crc = crc32(small, img.crcHead);
    const sdv = new DataView(small.buffer);
    if (meta.memBytes > mem0) s.memory.grow((meta.memBytes - mem0) / 65536);
    // The page records, read a stage at a time into a transient area and
    // expanded there by the module (assembly/control.ts imageExpand), the CRC
    // computed over the bytes as read. A record the module refuses (outside
    // its page: corrupt) stops the expansion; the rest is still read for the
    // CRC, so a damaged file is named by its checksum.
    const mem = new Uint8Array(s.memory.buffer);
    const [st, stLen] = s.stage;
    const expand = s.instance.imageExpand as (src: number, len: number, pageBytes: number) => number;
    let at = img.bodyAt + small.length, have = 0, broken = false;
    while (at < img.size) {
      const n = Math.min(stLen - have, img.size - at);
      const dst = mem.subarray(st + have, st + have + n);
      if (!r.read(dst, at)) throw new ImageRefused("truncated");
      crc = crc32(dst, crc);
      at += n;
      have += n;
      if (broken) { have = 0; continue; }
      const used = expand(st, have, CHUNK);
      // a record longer than the stage cannot be one this build wrote
      if (used < 0 || (used === 0 && have === stLen)) { broken = true; have = 0; continue; }
      mem.copyWithin(st, st + used, st + have);
      have -= used;
    }
    if (have !== 0) broken = true; // the file ends inside a record
    mem.fill(0, st, st + stLen);
    phase("image: pages read, CRC checked");
    if (crc !== img.crc) throw new ImageRefused(`checksum mismatch (CRC-32 ${crc.toString(16)}, header ${img.crc.toString(16)}): corrupt`);
    if (broken) throw new ImageRefused("its pages do not expand (a record reaches outside its page, or the file ends inside one): corrupt");
    at = 0;
    for (const g of s.globals) {
      const gl = s.instance[g.name] as WebAssembly.Global;
      if (g.type === "i64") gl.value = sdv.getBigInt64(at, true);
      else if (g.type === "i32") gl.value = Number(sdv.getBigInt64(at, true));
      else gl.value = sdv.getFloat64(at, true);
      at += 8;
    }
    const host = deserialize(small.subarray(at, at + meta.hostLen)) as Record<string, Record<string, HostValue>>;
    for (const [name, obj] of Object.entries(s.host)) {
      for (const [k, h] of Object.entries(host[name] ?? {})) {
        if (hostValueBytes(h) < LAZY_BYTES) (obj as Record<string, unknown>)[k] = decodeHostValue(h);
        else lazyProperty(obj, k, () => decodeHostValue(h));
      }
    }
    phase("image: bookkeeping restored");
  } finally {
    r.close();
  }
  for (const n of COUNTER_GLOBALS) {
    const g = s.instance[n] as WebAssembly.Global | undefined;
    if (g) g.value = typeof g.value === "bigint" ? 0n : 0;
  }
}

// ---------------------------------------------------------------- the file

/**
 * Writes an image so that a crash at any point leaves the previous image or
 * the new one, never a torn file under `path`: a temporary file, fsync'd,
 * renamed over the old one, and the directory fsync'd (the rename durable).
 */
export async function writeImageFile(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await fsp.open(tmp, "w", 0o600);
  try {
    let off = 0;
    while (off < bytes.length) off += (await fh.write(bytes, off, Math.min(bytes.length - off, 1 << 24))).bytesWritten;
    await fh.sync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, path);
  const d = await fsp.open(dirname(path), "r");
  try { await d.sync(); } finally { await d.close(); }
}

/** Removes an image (one that was refused: it is never right again). */
export function removeImageFile(path: string): void {
  rmSync(path, { force: true });
}
