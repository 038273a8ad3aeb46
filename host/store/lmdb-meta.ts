// LMDB's two meta pages, read from data.mdb without LMDB (issue 15: `nvedge
// run` releases the packet I/O workers to forward from the table image once
// it knows the store's last transaction, and lmdb-js costs the main thread
// some 80 ms of CPU to load and open, on the same two cores the workers start
// on; the store is opened after the workers forward, and run.ts checks the
// image's whole key against the opened store all the same).
//
// The layout (LMDB's mdb.c, MDB_meta after the page header, whose size
// differs by build: hence the search for the magic): mm_magic u32, mm_version
// u32, mm_address, mm_mapsize, mm_dbs[2] (48 bytes each; FREE_DBI's md_pad,
// at +24, holds the page size), mm_last_pg u64 at +120, mm_txnid u64 at +128,
// and lmdb-js's boot_id i64 at +136 (the boot that wrote it).
// Plain LMDB opens at the meta page with the larger txnid. lmdb-js with
// overlappingSync (host/store/lmdb.ts opens so) also keeps the last flushed
// meta half a page into page 0, and opens at the newest of the three only
// when the current boot wrote it; after a reboot at the older snapshot
// (mdb_env_pick_meta, mdb_pick_meta). lmdbLastTxnId answers only in the first
// case, where all agree, and leaves the rest to LMDB itself.
import { closeSync, openSync, readFileSync, readSync, statSync } from "node:fs";

export const LMDB_MAGIC = 0xbeefc0de;

/** One meta page: the last page its transaction uses, that transaction's id, the boot that wrote it (lmdb-js; 0: none). */
export interface LmdbMeta { last: bigint; txn: bigint; boot: bigint }

/**
 * data.mdb's page size and its two meta pages; a string saying what is wrong
 * when the file is not an LMDB environment LMDB could open (the caller words
 * the error: host/store/lmdb.ts checkDataFile). `null` for an empty file
 * (created, never committed).
 */
export function readLmdbMeta(file: string): { pageSize: number; size: number; metas: [LmdbMeta, LmdbMeta]; flushed?: LmdbMeta } | string | null {
  const size = statSync(file).size;
  if (size === 0) return null;
  const fd = openSync(file, "r");
  try {
    const head = Buffer.alloc(Math.min(size, 256));
    readSync(fd, head, 0, head.length, 0);
    // The meta struct follows the page header (16 or 24 bytes by LMDB build).
    let m = -1;
    for (let o = 0; o + 4 <= Math.min(64, head.length); o += 4) if (head.readUInt32LE(o) === LMDB_MAGIC) { m = o; break; }
    if (m < 0) return `${file} has no LMDB header`;
    const pageSize = head.readUInt32LE(m + 24); // FREE_DBI's md_pad holds the page size
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return `${file} has an invalid page size ${pageSize}`;
    if (size < 2 * pageSize) return `${file} is truncated (${size} bytes, less than its two meta pages)`;
    const metas: LmdbMeta[] = [];
    const at = (b: Buffer, o: number): LmdbMeta => ({ last: b.readBigUInt64LE(o + 120), txn: b.readBigUInt64LE(o + 128), boot: b.readBigInt64LE(o + 136) });
    for (const page of [0, 1]) {
      const b = Buffer.alloc(m + 144);
      readSync(fd, b, 0, b.length, page * pageSize);
      if (b.readUInt32LE(m) !== LMDB_MAGIC) return `${file}: meta page ${page} is damaged`;
      metas.push(at(b, m));
    }
    // lmdb-js's flushed meta, half a page into page 0 (its magic is not written there)
    const f = Buffer.alloc(m + 144);
    readSync(fd, f, 0, f.length, pageSize / 2);
    const flushed = at(f, m);
    return { pageSize, size, metas: metas as [LmdbMeta, LmdbMeta], ...(flushed.txn > 0n ? { flushed } : {}) };
  } finally {
    closeSync(fd);
  }
}

/** The bytes data.mdb must hold for `meta`'s transaction: through its last page (a shorter file is truncated; LMDB would fault on it). */
export const bytesNeeded = (meta: LmdbMeta, pageSize: number): bigint => (meta.last + 1n) * BigInt(pageSize);

/** The meta page LMDB opens at: the one with the larger transaction id. */
export const newestMeta = (metas: [LmdbMeta, LmdbMeta]): LmdbMeta => (metas[0].txn >= metas[1].txn ? metas[0] : metas[1]);

/** This boot's id as lmdb-js reads it: strtoll(/proc/sys/kernel/random/boot_id, 16), its leading hex digits; 0n when unknown. */
export function lmdbBootId(): bigint {
  try {
    const hex = /^\s*([0-9a-fA-F]+)/.exec(readFileSync("/proc/sys/kernel/random/boot_id", "utf8"))?.[1];
    return hex ? BigInt.asIntN(64, BigInt(`0x${hex.slice(0, 16)}`)) : 0n;
  } catch {
    return 0n;
  }
}

/**
 * The id of the last transaction committed to the LMDB store in `dir`, as
 * its store's lastTxnId() gives it once opened; undefined when data.mdb is
 * missing, empty or not an environment LMDB could open, and when the newest
 * meta was written in another boot (lmdb-js may then open at an older
 * snapshot: only LMDB itself can say).
 */
export function lmdbLastTxnId(dir: string): number | undefined {
  let r: ReturnType<typeof readLmdbMeta>;
  try { r = readLmdbMeta(`${dir}/data.mdb`); } catch { return undefined; }
  if (r === null || typeof r === "string") return undefined;
  const newest = [r.metas[0], r.metas[1], ...(r.flushed ? [r.flushed] : [])].reduce((a, b) => (b.txn > a.txn ? b : a));
  const boot = lmdbBootId();
  if (boot === 0n || newest.boot !== boot) return undefined;
  if (BigInt(r.size) < bytesNeeded(newest, r.pageSize)) return undefined; // truncated: the ordinary open refuses it
  return Number(newest.txn);
}
