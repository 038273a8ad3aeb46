// The LMDB store's last transaction read from data.mdb's meta pages without
// LMDB (host/store/lmdb-meta.ts; issue 15: `nvedge run` releases its workers
// on the table image before it loads LMDB), and the store directory's lock
// taken first and handed to the store (LmdbStoreOptions.lock).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LMDB_MAGIC, lmdbBootId, lmdbLastTxnId, newestMeta, readLmdbMeta } from "../host/store/lmdb-meta.js";
import { openLmdbStore, StoreLockedError } from "../host/store/lmdb.js";
import { lockStoreDir } from "../host/store/lmdb-lock.js";

const tmp = () => mkdtempSync(join(tmpdir(), "nvedge-lmdb-meta-"));

test("lmdbLastTxnId: the store's lastTxnId(), after each commit and after it is closed and opened again", async () => {
  const dir = tmp();
  try {
    assert.is(lmdbLastTxnId(dir), undefined, "no data.mdb yet");
    let s = await openLmdbStore(dir);
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      await s.transaction((tx) => tx.put("hvs", `hv-${i}`, { hv: `hv-${i}`, online: true, since: i }));
      seen.push(s.lastTxnId());
      assert.is(lmdbLastTxnId(dir), s.lastTxnId(), `after commit ${i}`);
    }
    assert.ok(seen.every((t, i) => i === 0 || t > seen[i - 1]), `transaction ids grow: ${seen}`);
    await s.close();
    assert.is(lmdbLastTxnId(dir), seen[4], "closed");
    s = await openLmdbStore(dir);
    try {
      assert.is(s.lastTxnId(), seen[4], "opened again at the same transaction");
    } finally {
      await s.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("lmdbLastTxnId: undefined for a data.mdb LMDB could not open (empty, not LMDB, truncated)", async () => {
  const dir = tmp();
  try {
    writeFileSync(join(dir, "data.mdb"), "");
    assert.is(lmdbLastTxnId(dir), undefined, "empty");
    writeFileSync(join(dir, "data.mdb"), Buffer.alloc(16384, 0x5a));
    assert.is(lmdbLastTxnId(dir), undefined, "not LMDB");
    rmSync(join(dir, "data.mdb"));
    const s = await openLmdbStore(dir);
    await s.transaction((tx) => { for (let i = 0; i < 2000; i++) tx.put("hvs", `hv-${i}`, { hv: `hv-${i}`, online: true, since: i }); });
    await s.close();
    assert.type(lmdbLastTxnId(dir), "number");
    truncateSync(join(dir, "data.mdb"), statSync(join(dir, "data.mdb")).size - 8192);
    assert.is(lmdbLastTxnId(dir), undefined, "truncated below its last transaction's pages");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("lmdbLastTxnId: undefined when the newest meta was written in another boot (lmdb-js may open an older snapshot then)", async () => {
  const dir = tmp();
  try {
    const s = await openLmdbStore(dir);
    await s.transaction((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 1 }));
    await s.close();
    const file = join(dir, "data.mdb");
    const r = readLmdbMeta(file);
    assert.ok(r && typeof r !== "string");
    assert.is(newestMeta(r.metas).boot, lmdbBootId(), "this boot wrote it");
    assert.type(lmdbLastTxnId(dir), "number");
    // the boot id of every meta (both pages and the flushed copy) as another boot's
    const b = readFileSync(file);
    let m = 0;
    while (b.readUInt32LE(m) !== LMDB_MAGIC) m += 4;
    for (const o of [m, r.pageSize + m, r.pageSize / 2 + m]) b.writeBigInt64LE(lmdbBootId() + 1n, o + 136);
    writeFileSync(file, b);
    assert.is(lmdbLastTxnId(dir), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("openLmdbStore({ lock }): the lock taken first is the store's (another opener is refused; released at close)", async () => {
  const dir = tmp();
  try {
    const lock = await lockStoreDir(dir);
    const s = await openLmdbStore(dir, { lock });
    try {
      await openLmdbStore(dir).then((o) => o.close().then(() => assert.unreachable("a second opener got the store")), (e) => assert.instance(e, StoreLockedError));
    } finally {
      await s.close();
    }
    const again = await openLmdbStore(dir); // released with the store
    await again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
