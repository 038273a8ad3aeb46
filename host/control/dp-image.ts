// When the NVE takes and uses its data plane's table image (issue 15,
// "Restart"; the image itself: host/dataplane/image.ts; docs/README.md "The
// table image").
//
// Used at start (startImage) only when it is what rebuilding from the records
// would make: its key holds the store's last transaction id, the data plane
// module's and the host table code's SHA-256, the table layout and the
// SHA-256 of the configuration's static ops. Otherwise it is refused with one
// log line saying why, removed, and the NVE rebuilds from the records as
// before.
//
// Written (ImageWriter) after a group of commits and at a clean stop, never
// per commit: once nothing touched the store or the data plane for quietMs
// (every store transaction durable, every programmer.apply done), and at most
// once per minIntervalMs. Quiet matters: some writers program first and store
// after (the IMA client's cache, 100 ms later; the gleaner), so an image taken
// between the two would hold a change the store at its transaction id does
// not. The image is taken at a transaction id read when all is quiet, and
// discarded if anything was stored or programmed while it was taken.
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { NveConfig } from "../config/types.js";
import { STORE_SCHEMA_VERSION, watchWrites, type Store } from "../store/store.js";
import type { DataPlaneProgrammer } from "../dataplane/ops.js";
import { existsSync, readFileSync } from "node:fs";
import { type Image, type ImageKey, checkImage, removeImageFile, writeImageFile, ImageRefused, keyDifference, fileHash } from "../dataplane/image.js";
import { imageKeyOf, type CreateOptions } from "../dataplane/load.js";
import { staticOps } from "./static.js";
import { VnCatalog } from "./catalog.js";
import { IMAGE_FILE } from "../paths.js";

export { IMAGE_FILE, ImageRefused, keyDifference };
export const imagePath = (storeDir: string) => join(storeDir, IMAGE_FILE);

/** SHA-256 of the configuration's static ops (what it programs before any record). */
export function staticHash(cfg: NveConfig): string {
  return createHash("sha256").update(JSON.stringify(staticOps(cfg, VnCatalog.fromConfig(structuredClone(cfg))))).digest("hex");
}

/**
 * The key an image must have now; undefined for a store that persists nothing
 * (no image). With `configFile` (the file `cfg` was read from), the key also
 * holds the file's SHA-256 (configFileKey), which lets a start that finds the
 * same file trust the image's static state before it has validated the file
 * (host/cli/run-early.ts earlyGo).
 */
export function expectedKey(store: Store, cfg: NveConfig, dp: CreateOptions, configFile?: string): ImageKey | undefined {
  if (!store.lastTxnId || dp.loader === "component") return undefined;
  return { ...imageKeyOf(dp), txnId: store.lastTxnId(), storeSchema: STORE_SCHEMA, config: staticHash(cfg), ...(configFile !== undefined ? { configFile: fileHash(configFile) } : {}) };
}

/**
 * The store's schema version, in the key: a start releases its workers on the
 * image before it opens the store (host/cli/run-early.ts earlyGo), and a store
 * this build upgrades at open moves on from the transaction the image has.
 */
export const STORE_SCHEMA = STORE_SCHEMA_VERSION;

/**
 * The configuration file's SHA-256 for an image of the data plane running
 * `cfg`: the file's, when the file gives the same static state as `cfg`
 * (parsed again: after a reload, or an edit not reloaded yet, it may not),
 * else "" (a start then checks the whole key after validating the file).
 */
export function configFileKey(configFile: string, cfg: NveConfig, parse: (text: string, file: string) => NveConfig): string {
  try {
    const bytes = readFileSync(configFile);
    return staticHash(parse(bytes.toString("utf8"), configFile)) === staticHash(cfg) ? createHash("sha256").update(bytes).digest("hex") : "";
  } catch {
    return "";
  }
}

/**
 * The image to start from, checked (format, CRC, key), or undefined: none,
 * or refused (logged with the reason and removed: it cannot become right).
 */
export function startImage(path: string, key: ImageKey | undefined, log: (l: string) => void): Image | undefined {
  if (!key) return undefined;
  if (!existsSync(path)) {
    log(`image: none at ${path}: rebuilding the tables from the store's records`);
    return undefined;
  }
  try {
    return checkImage({ path }, key);
  } catch (e) {
    refuseImage(path, e as Error, log);
    return undefined;
  }
}

/**
 * An image that could not be used (its header or key at start, or its body
 * as it was restored): logged with the reason and removed, as it cannot
 * become right; the caller rebuilds.
 */
export function refuseImage(path: string, e: Error, log: (l: string) => void): void {
  const why = e instanceof ImageRefused ? e.message : `cannot be used: ${e.message.split("\n")[0]}`;
  log(`image: ${path} refused (${why}): rebuilding the tables from the store's records`);
  try { removeImageFile(path); } catch { /* the next image replaces it */ }
}

export interface ImageWriterOptions {
  path: string;
  store: Store;
  /** The key of an image taken now, without txnId (read by the writer when quiet). */
  key: () => Omit<ImageKey, "txnId">;
  /** The data plane's image with `key` (DataPlane.snapshot, or a packet I/O worker's). */
  snapshot: (key: ImageKey) => Promise<Uint8Array>;
  log: (l: string) => void;
  /** Nothing stored or programmed for this long before an image is taken (default 1000 ms). */
  quietMs?: number;
  /** At most one image per this time while running (default 30 s; a clean stop writes regardless). */
  minIntervalMs?: number;
  /**
   * Images while running (default true); false writes one at a clean stop
   * only. A packet I/O worker takes its image a slice at a time between
   * batches (host/io/worker.ts), so it keeps forwarding meanwhile.
   */
  periodic?: boolean;
  /** Called with each image written (tests, the bench). */
  onWritten?: (info: { txnId: number; bytes: number; ms: number }) => void;
}

/**
 * Tracks the store's transactions and the data plane's applies (through the
 * store and programmer it wraps) and writes the image when due.
 */
export class ImageWriter {
  private inflight = 0;
  private gen = 0;
  private dirty = false;
  private lastActivity = 0;
  private lastWrite = -Infinity;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private writing: Promise<unknown> | undefined;
  private closed = false;
  private readonly quietMs: number;
  private readonly minIntervalMs: number;

  constructor(private readonly o: ImageWriterOptions) {
    this.quietMs = o.quietMs ?? 1000;
    this.minIntervalMs = o.minIntervalMs ?? 30_000;
  }

  /** The store, its transactions tracked (every write to it must go through this). */
  wrapStore(store: Store): Store {
    return watchWrites(store, () => { this.begin(); return () => this.end(); });
  }

  /** The programmer, its applies tracked. */
  wrapProgrammer(p: DataPlaneProgrammer): DataPlaneProgrammer {
    return {
      apply: async (ops) => {
        this.begin();
        try { await p.apply(ops); } finally { this.end(); }
      },
    };
  }

  private begin(): void {
    this.inflight++;
    this.gen++;
    this.dirty = true;
  }

  private end(): void {
    this.inflight--;
    this.gen++;
    this.lastActivity = performance.now();
    this.arm();
  }

  private arm(): void {
    if (this.closed || this.o.periodic === false || this.timer !== undefined || this.writing) return;
    const now = performance.now();
    const wait = Math.max(this.quietMs - (now - this.lastActivity), this.minIntervalMs - (now - this.lastWrite), 0);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.dirty) return;
      if (this.inflight > 0 || performance.now() - this.lastActivity < this.quietMs) return this.arm();
      this.writing = this.write("after commits").finally(() => { this.writing = undefined; if (this.dirty) this.arm(); });
    }, wait);
  }

  /**
   * Takes and writes an image if everything is quiet and stays so while it
   * is taken; false when something moved (a later try takes it).
   */
  private async write(why: string): Promise<boolean> {
    const store = this.o.store;
    if (this.inflight > 0) return false;
    const g0 = this.gen;
    const txnId = store.lastTxnId!();
    const t0 = performance.now();
    let bytes: Uint8Array;
    try {
      bytes = await this.o.snapshot({ ...this.o.key(), txnId });
    } catch (e) {
      // an op came while it was taken (a packet I/O worker drops it then): a later try takes it
      if (this.gen !== g0 || this.inflight > 0) return false;
      this.o.log(`image: not taken (${(e as Error).message})`);
      this.dirty = false; // the same would fail again: until the next change
      return false;
    }
    if (this.gen !== g0 || this.inflight > 0 || store.lastTxnId!() !== txnId) return false;
    try {
      await writeImageFile(this.o.path, bytes);
    } catch (e) {
      this.o.log(`image: ${this.o.path} not written (${(e as Error).message})`);
      return false;
    }
    const ms = performance.now() - t0;
    this.lastWrite = performance.now();
    if (this.gen === g0) this.dirty = false;
    this.o.log(`image: written ${why} at store transaction ${txnId} (${(bytes.length / 1048576).toFixed(1)} MiB, ${ms.toFixed(0)} ms)`);
    this.o.onWritten?.({ txnId, bytes: bytes.length, ms });
    return true;
  }

  /** The data plane was started from an image at the store's current transaction: nothing to write yet. */
  started(fromImage: boolean): void {
    this.dirty = !fromImage;
    if (this.dirty) this.arm();
  }

  /**
   * A clean stop (everything that writes is stopped): the image is written
   * if anything changed since the last one, then no more.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
    if (this.dirty) await this.write("at stop");
  }
}
