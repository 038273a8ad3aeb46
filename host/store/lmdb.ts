// The LMDB Store (issue 4): the NVE's state on disk behind the Store interface
// (store.ts), passing the same conformance suite as memory.ts.
//
// Layout: one LMDB environment per store directory, one named sub-database per
// collection (STYLE.md, lmdb-js usage), msgpack values, string keys. The `meta`
// database holds `schemaVersion`; an older store is upgraded by the migration
// table (lmdb-migrations.ts), one step N → N+1 per synchronous LMDB
// transaction that also writes N+1, so a crash mid-upgrade leaves version N
// intact. A newer, corrupt or foreign store is refused and left untouched.
//
// Writes: Store.transaction(fn) runs fn synchronously against an overlay of its
// own puts/deletes (reads fall through to LMDB), so a throwing fn writes
// nothing. The overlay is then queued as ONE lmdb-js batch: the writes of every
// collection go into the same LMDB transaction (all-or-nothing across
// collections, PROTOCOL.md §2). Until that transaction is committed the overlay
// stays visible to readers, so reads see transactions in call order exactly as
// the memory store does.
//
// Durability (PROTOCOL.md §2: the NVE answers only after the change is durable):
// the promise resolves only once lmdb-js reports the commit *flushed* (fsync'd).
// Options, and why:
// - noSync: false, noMetaSync: false: never skip the fsync of data or meta pages
//   (with them a crash of the machine may lose or corrupt acknowledged commits);
// - useWritemap: false: pages are written with pwrite, so a stray pointer cannot
//   scribble on the map and a crash cannot leave half-written pages visible;
// - overlappingSync: true (lmdb-js's default on POSIX): the fsync of commit N
//   runs after the write lock is released, overlapping commit N+1, so several
//   queued transactions share one flush (group commit). lmdb-js then resolves a
//   write at *commit*, not at flush; we therefore also wait for `flushed`;
// - commitDelay: 0, eventTurnBatching: true: commit as soon as the event turn
//   ends (lowest latency); batching comes from the overlapping flushes.
// Store.commit() is the pipelined form: it resolves once the change is queued and
// visible, with `durable` for the flush, so the NVE core can start the next
// request while this one is flushed and still answer each only when durable
// (host/control/core.ts request()); queued batches share one fsync.
//
// Where the flush is cheap, a commit runs on the calling thread instead
// (transactionSync: LMDB's own durable commit, data fsync'd before the meta
// page, written through its O_DSYNC descriptor), `durable` already resolved.
// lmdb-js's pipelined commit costs a lone request a libuv pool job and three
// wake-ups of the event loop (the commit visible, the flush, the job done:
// ~5 futex calls, ~4 epoll waits, ~3 context switches per commit: strace and
// perf stat, bench/README.md "Session 13: lmdb15"); with the NVE on one CPU
// (a DPU's core; the bench pins it) the write thread and the main thread take
// turns on it for every request. On a tmpfs store, pinned to one CPU, a lone
// commit on the main thread costs 50 µs of CPU against 75 µs pipelined, 0.4
// context switches against 3.3, and its p99 falls from 0.8-1.8 ms to 0.23 ms
// (a store-only loop at 2,000 commits/s, bench/README.md "Session 13:
// lmdb15"). It is chosen only (a) when no pipelined commit is outstanding
// (so commits stay durable in call order) and (b) while the flush is
// measured cheap: the pipelined path times each
// commit's flush (visible → flushed), and after SYNC_PROBE commits whose
// fastest flush took under `syncCommitMaxMs` the store commits on the main
// thread; a main-thread commit that takes longer than that (a real disk's
// fsync, 4-16 ms on the bench's virtio disk) puts it back on the pipeline,
// where the disk's fsync overlaps the next group's work (the durable ratio,
// bench/README.md "The disk's fsync and the durable attach ratio").
// A process crash (SIGKILL) loses nothing committed (the kernel holds the pages);
// a machine crash loses at most commits that were not yet flushed, and those
// were never acknowledged.
import { asBinary, open, type Database, type RootDatabase } from "lmdb";
import { existsSync, statSync } from "node:fs";
import { privateDir, withPrivateUmask } from "./private.js";
import { join } from "node:path";
import { constants as osConstants } from "node:os";
import {
  COLLECTIONS, STORE_SCHEMA_VERSION, StoreSchemaError,
  type CollectionName, type Collections, type Store, type StoreWriter,
} from "./store.js";
import { lockStoreDir, type StoreLock } from "./lmdb-lock.js";
import { bytesNeeded, readLmdbMeta, newestMeta } from "./lmdb-meta.js";
import { MIGRATIONS, detectLegacyVersion, type Migration } from "./lmdb-migrations.js";

export { StoreLockedError } from "./lmdb-lock.js";

/** A store directory that cannot be read as an nvedge store. Nothing in it was changed. */
export class StoreCorruptError extends Error {
  constructor(readonly dir: string, detail: string) {
    super(`${dir}: the store is corrupt or is not an nvedge store (${detail}); it was left untouched: ` +
      "restore it from a backup, or move it aside and start with an empty --store directory (agents then re-sync their state)");
  }
}

/** A store from a newer (or otherwise unknown) schema. Nothing in it was changed. */
export class LmdbSchemaError extends StoreSchemaError {
  constructor(readonly dir: string, found: unknown, expected: number, detail: string) {
    super(found, expected, dir);
    this.message = `${dir}: store schema version ${JSON.stringify(found)} ${detail} (this nvedge supports version ${expected}); ` +
      "it was left untouched: run the nvedge release that wrote it, or move it aside and start with an empty --store directory";
  }
}

export interface LmdbStoreOptions {
  /** The schema this code writes (tests open with other versions). */
  schemaVersion?: number;
  /** version N → the step to N+1 (tests pass their own). */
  migrations?: Record<number, Migration>;
  log?: (line: string) => void;
  /** The directory's lock, already taken (lockStoreDir: `nvedge run` takes it before the store is loaded, issue 15); the store releases it at close. */
  lock?: StoreLock;
  /**
   * A commit runs on the calling thread while the store's flush is measured
   * under this many milliseconds (see the header); 0: always pipelined.
   * Default SYNC_COMMIT_MAX_MS.
   */
  syncCommitMaxMs?: number;
}

/**
 * The default LmdbStoreOptions.syncCommitMaxMs: a commit on tmpfs takes 0.02-0.06 ms; a real
 * disk's fsync 4-16 ms on the bench's virtio disk in session 8 (the `store` bench's store.fsync
 * row), ~0.5-0.7 ms on it in session 13 (bench/README.md "Session 13: lmdb15"). The bound
 * sits between the two with a margin each way: at 0.5 a disk whose fastest fsync dips just
 * under it would move onto the thread, and its next commit (over the bound) back, one blocked
 * event loop per 17 commits.
 */
export const SYNC_COMMIT_MAX_MS = 0.25;
/** Pipelined commits whose fastest flush decides whether commits move to the calling thread. */
const SYNC_PROBE = 16;
const RESOLVED: Promise<void> = Promise.resolve();

/** LMDB's largest key (lmdb-js keys of the default 4 KiB pages), in UTF-8 bytes. */
const MAX_KEY_BYTES = 1978;
const DELETED = Symbol("deleted");
/** Writes not yet committed to LMDB: msgpack bytes (encoded at put: a copy, and the bytes LMDB stores) or DELETED. */
type Overlay = Map<CollectionName, Map<string, Buffer | typeof DELETED>>;

/**
 * Refuses a data.mdb that LMDB would misread or crash on: no LMDB magic in its
 * meta pages, or a file shorter than the pages its newest meta page refers to
 * (a truncated copy: reading past the end of a memory map kills the process
 * with SIGBUS instead of raising an error).
 */
function checkDataFile(dir: string, file: string): void {
  const r = readLmdbMeta(file);
  if (r === null) return; // created, never committed: LMDB initialises it
  if (typeof r === "string") throw new StoreCorruptError(dir, r);
  const need = bytesNeeded(newestMeta(r.metas), r.pageSize);
  if (BigInt(r.size) < need) throw new StoreCorruptError(dir, `${file} is truncated (${r.size} bytes, its last transaction needs ${need})`);
}

function wrapNative(dir: string, e: unknown): Error {
  const msg = (e as Error)?.message ?? String(e);
  if (e instanceof StoreCorruptError || e instanceof StoreSchemaError) return e;
  if (/MDB_(INVALID|CORRUPTED|PAGE_NOTFOUND|VERSION_MISMATCH|BAD_TXN|BAD_VALSIZE)|not an LMDB|corrupt/i.test(msg))
    return new StoreCorruptError(dir, msg);
  return new Error(`${dir}: cannot open the store: ${msg}`);
}

export class LmdbStore implements Store {
  private closed = false;
  private inflight: Overlay[] = [];
  /** Pipelined commits not yet durable (or failed). */
  private pipelined = 0;
  /** Commits run on the calling thread (see the header). */
  private onThread = false;
  /** The fastest flush of the pipelined commits timed since the last switch, and how many were timed. */
  private flushMinMs = Infinity;
  private flushTimed = 0;

  private constructor(
    readonly dir: string,
    readonly schemaVersion: number,
    private readonly root: RootDatabase,
    private readonly dbs: Map<CollectionName, Database>,
    private readonly lock: StoreLock,
    private readonly syncCommitMaxMs: number,
  ) {}

  /** Whether the next commit (with none outstanding) runs on the calling thread: see the header. */
  get commitsOnThread(): boolean {
    return this.onThread;
  }

  /** Opens (creating when new) the store in `dir`; see the errors above. */
  static async open(dir: string, opts: LmdbStoreOptions = {}): Promise<LmdbStore> {
    const want = opts.schemaVersion ?? STORE_SCHEMA_VERSION;
    const migrations = opts.migrations ?? MIGRATIONS;
    const syncCommitMaxMs = opts.syncCommitMaxMs ?? SYNC_COMMIT_MAX_MS;
    if (typeof syncCommitMaxMs !== "number" || Number.isNaN(syncCommitMaxMs) || syncCommitMaxMs < 0)
      throw new RangeError(`syncCommitMaxMs ${JSON.stringify(syncCommitMaxMs)}: a number of milliseconds, 0 or more (0: every commit pipelined)`);
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new StoreCorruptError(dir, "it is a file, not a directory");
    privateDir(dir); // 0700, its files 0600 (issue 10): every tenant's bindings are in it
    const lock = opts.lock ?? await lockStoreDir(dir);
    let root: RootDatabase | undefined;
    try {
      const dataFile = join(dir, "data.mdb");
      const isNew = !existsSync(dataFile) || statSync(dataFile).size === 0;
      if (!isNew) checkDataFile(dir, dataFile);
      try {
        // LMDB creates data.mdb and lock.mdb here: under umask 077 they are 0600.
        root = withPrivateUmask(() => open({
          path: dir, maxDbs: 32, encoding: "msgpack",
          noSync: false, noMetaSync: false, useWritemap: false, overlappingSync: true, commitDelay: 0, eventTurnBatching: true,
        }));
      } catch (e) {
        throw wrapNative(dir, e);
      }
      const r = root;
      const found = readVersion(dir, r);
      let version: number;
      if (found === undefined) {
        // A new environment: write the version with the collections.
        r.transactionSync(() => {
          for (const c of COLLECTIONS) r.openDB({ name: c });
          r.openDB({ name: "meta" }).put("schemaVersion", want);
        });
        version = want;
      } else {
        if (typeof found !== "number" || !Number.isInteger(found) || found < 0)
          throw new LmdbSchemaError(dir, found, want, "is not a version number");
        if (found > want) throw new LmdbSchemaError(dir, found, want, "is newer than this nvedge");
        for (let v = found; v < want; v++) {
          if (!migrations[v]) throw new LmdbSchemaError(dir, found, want, `has no migration path from version ${v} to ${v + 1}`);
        }
        for (let v = found; v < want; v++) {
          const step = migrations[v];
          // One step per synchronous transaction, with its version bump (crash-safe upgrade).
          r.transactionSync(() => {
            step({ root: r, db: (name) => r.openDB({ name }) });
            r.openDB({ name: "meta" }).put("schemaVersion", v + 1);
          });
          opts.log?.(`${dir}: store upgraded from schema version ${v} to ${v + 1}`);
        }
        version = want;
        if (found < want) await flushed(r);
      }
      // Collections added since the store was created are created empty here
      // (the version check above already accepted the store).
      const dbs = new Map<CollectionName, Database>();
      r.transactionSync(() => {
        for (const c of COLLECTIONS) dbs.set(c, r.openDB({ name: c }));
      });
      const store = new LmdbStore(dir, version, r, dbs, lock, syncCommitMaxMs);
      store.list("meta"); // every meta record must decode
      return store;
    } catch (e) {
      if (root) await root.close().catch(() => {});
      await lock.release();
      throw e;
    }
  }

  private db(c: CollectionName): Database {
    if (this.closed) throw new Error(`${this.dir}: store is closed`);
    const d = this.dbs.get(c);
    if (!d) throw new Error(`unknown collection "${c}"`);
    return d;
  }

  private read(c: CollectionName, key: string): unknown {
    for (let i = this.inflight.length - 1; i >= 0; i--) {
      const m = this.inflight[i].get(c);
      if (m && m.has(key)) {
        const v = m.get(key)!;
        return v === DELETED ? undefined : this.decode(c, v);
      }
    }
    try {
      return this.db(c).get(key); // decoded afresh: already a copy
    } catch (e) {
      throw this.decodeError(c, key, e);
    }
  }

  private decode(c: CollectionName, bytes: Buffer): unknown {
    return (this.db(c) as unknown as { encoder: { decode(b: Buffer): unknown } }).encoder.decode(bytes);
  }

  private encode(c: CollectionName, v: unknown): Buffer {
    // A copy of the encoder's (reused) output buffer.
    return Buffer.from((this.db(c) as unknown as { encoder: { encode(v: unknown): Uint8Array } }).encoder.encode(v));
  }

  private decodeError(c: CollectionName, key: string, e: unknown): Error {
    if (this.closed || /unknown collection/.test((e as Error).message)) return e as Error;
    return new StoreCorruptError(this.dir, `collection ${c}, key ${JSON.stringify(key)}: ${(e as Error).message}`);
  }

  private range(c: CollectionName, prefix: string): [string, unknown][] {
    const out: [string, unknown][] = [];
    let key = "";
    try {
      for (const e of this.db(c).getRange(prefix ? { start: prefix } : {})) {
        key = String(e.key);
        if (!key.startsWith(prefix)) break;
        out.push([key, e.value]);
      }
    } catch (e) {
      throw this.decodeError(c, key, e);
    }
    if (this.inflight.length) {
      const merged = new Map(out);
      for (const o of this.inflight)
        for (const [k, v] of o.get(c) ?? []) if (k.startsWith(prefix)) v === DELETED ? merged.delete(k) : merged.set(k, this.decode(c, v));
      return sortByKey([...merged]);
    }
    return sortByKey(out);
  }

  get<C extends CollectionName>(c: C, key: string): Collections[C] | undefined {
    return this.read(c, key) as Collections[C] | undefined;
  }

  list<C extends CollectionName>(c: C, prefix = ""): [string, Collections[C]][] {
    return this.range(c, prefix) as [string, Collections[C]][];
  }

  async transaction<T>(fn: (tx: StoreWriter) => T): Promise<T> {
    const { result, durable } = await this.commit(fn);
    await durable;
    return result;
  }

  /** Store.commit: queued and visible now (the overlay), `durable` once flushed; see the header. */
  async commit<T>(fn: (tx: StoreWriter) => T): Promise<{ result: T; durable: Promise<void> }> {
    const pending: Overlay = new Map();
    const store = this;
    const tx: StoreWriter = {
      get(c, key) {
        const p = pending.get(c)?.get(key);
        if (p === DELETED) return undefined;
        return p !== undefined ? store.decode(c, p) as never : store.get(c, key);
      },
      list(c, prefix = "") {
        const merged = new Map(store.range(c, prefix));
        for (const [k, v] of pending.get(c) ?? []) if (k.startsWith(prefix)) v === DELETED ? merged.delete(k) : merged.set(k, store.decode(c, v));
        return sortByKey([...merged]) as never;
      },
      put(c, key, value) {
        store.db(c);
        if (typeof key !== "string" || key === "") throw new Error(`bad key ${JSON.stringify(key)}`);
        if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new Error(`key of ${Buffer.byteLength(key)} bytes in ${c}: LMDB keys are at most ${MAX_KEY_BYTES}`);
        if (value === undefined) throw new Error("put of undefined: use del");
        if (!pending.has(c)) pending.set(c, new Map());
        pending.get(c)!.set(key, store.encode(c, value));
      },
      del(c, key) {
        store.db(c);
        if (!pending.has(c)) pending.set(c, new Map());
        pending.get(c)!.set(key, DELETED);
      },
    };
    const result = fn(tx); // throws → the overlay is dropped, nothing queued
    if (result instanceof Promise) throw new Error("transaction callbacks must be synchronous");
    if (pending.size === 0) return { result, durable: RESOLVED };
    if (this.onThread && this.pipelined === 0) return { result, durable: this.commitOnThread(pending) };
    this.inflight.push(pending);
    let committed: Promise<unknown>;
    let flush: Promise<unknown>;
    try {
      // One batch = one LMDB transaction for every collection touched.
      committed = this.root.batch(() => {
        for (const [c, m] of pending) {
          const d = this.db(c);
          // Each write's own promise rejects too when the commit fails (ENOSPC, EIO): the
          // batch's promise reports it; unhandled, they would crash the process first.
          for (const [k, v] of m) void (v === DELETED ? d.remove(k) : d.put(k, asBinary(v))).catch(() => {});
        }
      });
      // Taken now: the flush of the commit that will hold this batch (or a later one).
      flush = flushed(this.root);
      flush.catch(() => {}); // awaited below once committed; a failed commit reports instead
    } catch (e) {
      this.inflight.splice(this.inflight.indexOf(pending), 1);
      throw e;
    }
    this.pipelined++;
    const done = committed.finally(() => this.inflight.splice(this.inflight.indexOf(pending), 1));
    // Timed (visible → flushed) only while deciding whether to commit on the thread.
    const flushedAfter = this.syncCommitMaxMs > 0 && !this.onThread
      ? () => { const t = performance.now(); return flush.then(() => this.flushTook(performance.now() - t)); }
      : () => flush;
    const durable = done.then(flushedAfter).then(() => { this.pipelined--; }, async (e: Error & { commitError?: Promise<unknown> }) => {
      this.pipelined--;
      // lmdb-js rejects with "Commit failed (see commitError for details)": the cause (e.g. ENOSPC) is in commitError
      const cause = e.commitError ? await e.commitError.then(() => e, (x: unknown) => x as Error) : e;
      throw this.commitFailed(cause);
    });
    durable.catch(() => {}); // the caller awaits it; never an unhandled rejection here
    return { result, durable };
  }

  /**
   * A commit on the calling thread (see the header): LMDB's synchronous,
   * durable commit, nothing outstanding before it. Returns `durable`: resolved,
   * or rejected as a pipelined commit's is when LMDB refuses (ENOSPC, EIO).
   */
  private commitOnThread(pending: Overlay): Promise<void> {
    const t = performance.now();
    try {
      this.root.transactionSync(() => {
        for (const [c, m] of pending) {
          const d = this.db(c);
          for (const [k, v] of m) v === DELETED ? d.removeSync(k) : d.putSync(k, asBinary(v));
        }
      });
    } catch (e) {
      const failed = Promise.reject(this.commitFailed(e as Error));
      failed.catch(() => {}); // as a pipelined commit's: the caller awaits it
      return failed;
    }
    if (performance.now() - t > this.syncCommitMaxMs) this.switchTo(false); // a real disk's fsync: back to the pipeline
    return RESOLVED;
  }

  /** A pipelined commit's flush took `ms`: after SYNC_PROBE of them, commits move onto the thread if the fastest took under syncCommitMaxMs. */
  private flushTook(ms: number): void {
    if (ms < this.flushMinMs) this.flushMinMs = ms;
    if (++this.flushTimed >= SYNC_PROBE && !this.onThread) this.switchTo(this.flushMinMs < this.syncCommitMaxMs);
  }

  private switchTo(onThread: boolean): void {
    this.onThread = onThread;
    this.flushMinMs = Infinity;
    this.flushTimed = 0;
  }

  private commitFailed(cause: Error): Error {
    return Object.assign(new Error(`${this.dir}: the store could not commit a transaction: ${cause?.message ?? cause}`), { code: errnoName(cause) });
  }

  /** Bytes the environment uses on disk (data.mdb). */
  diskBytes(): number {
    return statSync(join(this.dir, "data.mdb")).size;
  }

  lastTxnId(): number {
    return (this.root.getStats() as { lastTxnId: number }).lastTxnId;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await flushed(this.root).catch(() => {});
    this.closed = true;
    await this.root.close();
    await this.lock.release();
  }
}

/** The errno name of a native error (lmdb-js gives the number as `code`: 28 → "ENOSPC"), else its code. */
function errnoName(e: unknown): unknown {
  const code = (e as { code?: unknown })?.code;
  if (typeof code !== "number") return code;
  return Object.entries(osConstants.errno).find(([, n]) => n === code)?.[0] ?? code;
}

function flushed(root: RootDatabase): Promise<unknown> {
  return new Promise((resolve, reject) => (root.flushed as PromiseLike<unknown>).then(resolve, reject));
}

/** Keys in UTF-16 code unit order (the Store contract); LMDB returns UTF-8 byte order, equal for all but astral characters. */
function sortByKey<V>(rows: [string, V][]): [string, V][] {
  for (let i = 1; i < rows.length; i++) {
    if (rows[i - 1][0] > rows[i][0]) return rows.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }
  return rows;
}

/** The stored schema version, without creating anything; undefined for a new (empty) environment. */
function readVersion(dir: string, root: RootDatabase): unknown {
  let names: string[];
  try {
    names = [...root.getKeys()].map(String);
  } catch (e) {
    throw wrapNative(dir, e);
  }
  if (names.includes("meta")) {
    let v: unknown;
    try {
      v = root.openDB({ name: "meta", create: false } as { name: string }).get("schemaVersion");
    } catch (e) {
      throw new StoreCorruptError(dir, `meta: ${(e as Error).message}`);
    }
    if (v === undefined) throw new StoreCorruptError(dir, "its meta database has no schema version");
    return v;
  }
  const legacy = detectLegacyVersion(root, names);
  if (legacy !== undefined) return legacy;
  if (names.length === 0) return undefined;
  throw new StoreCorruptError(dir, `an LMDB environment nvedge did not write (databases: ${names.slice(0, 5).join(", ")})`);
}

/** Opens the NVE's store in `dir` (INTERFACES.md `nvedge run --store DIR`). */
export function openLmdbStore(dir: string, opts: LmdbStoreOptions = {}): Promise<LmdbStore> {
  return LmdbStore.open(dir, opts);
}
