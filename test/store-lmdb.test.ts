// The LMDB store (issue 4): the shared conformance suite, plus what only a
// store on disk has: refusing a corrupt, newer or locked directory without
// touching it, the version 0 → 1 migration, and durability across processes.
import { suite } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, truncateSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { open } from "lmdb";
import { storeConformance } from "./support/store-conformance.js";
import { LmdbSchemaError, LmdbStore, StoreCorruptError, StoreLockedError, openLmdbStore } from "../host/store/lmdb.js";
import { writeV0 } from "../host/store/lmdb-migrations.js";
import { LOCK_FILE } from "../host/store/lmdb-lock.js";
import { STORE_SCHEMA_VERSION, StoreSchemaError, type VnicRecord } from "../host/store/store.js";

const tmp = () => mkdtempSync(join(tmpdir(), "nvedge-store-"));

storeConformance("lmdb", {
  fresh: async () => {
    const dir = tmp();
    return { open: (v?: number) => openLmdbStore(dir, { schemaVersion: v }), cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
  },
});

/** Every file of the directory with its hash: "untouched" means this is unchanged. lock.mdb is LMDB's reader table, not data. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir).sort()) {
    if (f === "lock.mdb") continue;
    out[f] = createHash("sha256").update(readFileSync(join(dir, f))).digest("hex");
  }
  return out;
}

async function expectError<E>(p: Promise<unknown>, cls: new (...a: never[]) => E): Promise<E> {
  try {
    const s = await p;
    await (s as LmdbStore).close();
  } catch (e) {
    assert.instance(e, cls, `expected ${cls.name}, got ${(e as Error).message}`);
    return e as E;
  }
  throw new assert.Assertion({ message: `expected ${cls.name}, the store opened` } as never);
}

const U1 = "0d6c8a8e-2f5b-4a8e-8d2e-5f1a4f0e9b01";
const rec: VnicRecord = { vnic: U1, hv: "hv-1", port: "eth2", state: "active", vns: [{ vn: 100, addrs: [{ mac: "02:00:5e:00:00:01", ips: ["10.0.0.1"] }] }] };

async function filled(): Promise<string> {
  const dir = tmp();
  const s = await openLmdbStore(dir);
  await s.transaction((tx) => {
    tx.put("vnics", U1, rec);
    tx.put("vaps", "eth2|100", { port: "eth2", vn: 100, tag: 10 });
    tx.put("vns", "100", { id: 100, vni: 5000, alias: "blue", profile: { encap: "vxlan", mtu: 1500 } });
    tx.put("remotes", "100|02:00:5e:00:00:02", { vn: 100, mac: "02:00:5e:00:00:02", nve: "nve-b", ip: "192.0.2.2", ips: ["10.0.0.2"], seq: 3 });
    tx.put("vteps", "100|nve-b", { vn: 100, nve: "nve-b", ip: "192.0.2.2" });
  });
  await s.close();
  return dir;
}

const e = suite("lmdb store: refusals and migration");

e("the catalog and the IMA's remote bindings persist with the rest (issue 4)", async () => {
  const dir = await filled();
  try {
    const s = await openLmdbStore(dir);
    assert.equal(s.get("vns", "100")?.vni, 5000);
    assert.equal(s.list("remotes"), [["100|02:00:5e:00:00:02", { vn: 100, mac: "02:00:5e:00:00:02", nve: "nve-b", ip: "192.0.2.2", ips: ["10.0.0.2"], seq: 3 }]]);
    assert.equal(s.get("vteps", "100|nve-b")?.ip, "192.0.2.2");
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

e("a second open of a store in use fails with a clear error naming the directory and the holder", async () => {
  const dir = await filled();
  const s = await openLmdbStore(dir);
  try {
    const before = snapshot(dir);
    const err = await expectError(openLmdbStore(dir), StoreLockedError);
    assert.match(err.message, dir);
    assert.match(err.message, `pid ${process.pid}`);
    assert.match(err.message, /another running NVE/);
    assert.equal(snapshot(dir), before);
    assert.equal(s.get("vnics", U1), rec, "the holder still works");
  } finally {
    await s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

e("another process holding the store: refused; once it is killed (SIGKILL, no cleanup) the store opens", async () => {
  const dir = await filled();
  const here = dirname(fileURLToPath(import.meta.url));
  const lmdbJs = join(here, "..", "host", "store", "lmdb.js");
  const child = spawn(process.execPath, ["--input-type=module", "-e",
    `import { openLmdbStore } from ${JSON.stringify(lmdbJs)}; await openLmdbStore(${JSON.stringify(dir)}); console.log("held"); setInterval(() => {}, 1000);`],
  { stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error("child did not open the store in 10 s")), 10_000);
      child.stdout!.on("data", (d) => { if (String(d).includes("held")) { clearTimeout(t); res(); } });
      child.on("exit", (c) => rej(new Error(`child exited ${c}`)));
    });
    const err = await expectError(openLmdbStore(dir), StoreLockedError);
    assert.match(err.message, `pid ${child.pid}`);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    assert.ok(existsSync(join(dir, "nvedge.lock")), "the killed holder left its pid file behind");
    const s = await openLmdbStore(dir);
    assert.equal(s.get("vnics", U1), rec);
    await s.close();
  } finally {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});

e("a store from a newer schema is refused and left untouched", async () => {
  const dir = await filled();
  try {
    const s = await openLmdbStore(dir, { schemaVersion: STORE_SCHEMA_VERSION + 1, migrations: { [STORE_SCHEMA_VERSION]: () => {} } });
    assert.is(s.schemaVersion, STORE_SCHEMA_VERSION + 1);
    await s.close();
    const before = snapshot(dir);
    const err = await expectError(openLmdbStore(dir), StoreSchemaError);
    assert.instance(err, LmdbSchemaError);
    assert.match(err.message, dir);
    assert.match(err.message, `version ${STORE_SCHEMA_VERSION + 1} is newer`);
    assert.match(err.message, /left untouched/);
    assert.equal(snapshot(dir), before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

e("corrupt stores are refused and left untouched: garbage, truncated, undecodable record, foreign LMDB, a file", async () => {
  const dirs: string[] = [];
  try {
    // garbage data.mdb
    const g = tmp(); dirs.push(g);
    writeFileSync(join(g, "data.mdb"), Buffer.alloc(65536, 0x5a));
    // truncated copy of a real store
    const t = await filled(); dirs.push(t);
    truncateSync(join(t, "data.mdb"), statSync(join(t, "data.mdb")).size - 4096);
    // a foreign LMDB environment
    const f = tmp(); dirs.push(f);
    const other = open({ path: f });
    other.putSync("hello", "world");
    await other.close();
    for (const dir of [g, t, f]) {
      const before = snapshot(dir);
      const err = await expectError(openLmdbStore(dir), StoreCorruptError);
      assert.match(err.message, dir);
      assert.match(err.message, /left untouched/);
      assert.equal(snapshot(dir), before, dir);
    }
    // an undecodable record: refused when read, with the collection and key
    const u = await filled(); dirs.push(u);
    const raw = open({ path: u, maxDbs: 32 });
    raw.openDB({ name: "vnics", encoding: "binary" }).putSync(U1, Buffer.from([0xc1, 0xc1, 0xc1]));
    await raw.close();
    const s = await openLmdbStore(u);
    try {
      assert.throws(() => s.list("vnics"), (x: Error) => x instanceof StoreCorruptError && x.message.includes(u) && x.message.includes("vnics"));
    } finally {
      await s.close();
    }
    // a file where the directory should be
    const file = join(tmp(), "store"); dirs.push(dirname(file));
    writeFileSync(file, "not a directory");
    const err = await expectError(openLmdbStore(file), StoreCorruptError);
    assert.match(err.message, /not a directory/);
    assert.is(readFileSync(file, "utf8"), "not a directory");
  } finally {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

e("a version 0 store (one database, `collection/key` records) is migrated to version 1 with every record", async () => {
  const dir = tmp();
  try {
    const r = open({ path: dir, maxDbs: 32 });
    writeV0(r, [
      ["vnics", U1, rec],
      ["vaps", "eth2|100", { port: "eth2", vn: 100, tag: 10 }],
      ["timers", `migration-hold|${U1}`, { kind: "migration-hold", subject: U1, due: 1234 }],
    ]);
    await r.close();
    const logs: string[] = [];
    const s = await openLmdbStore(dir, { log: (l) => logs.push(l) });
    assert.is(s.schemaVersion, 1);
    assert.equal(s.get("vnics", U1), rec);
    assert.equal(s.list("vaps"), [["eth2|100", { port: "eth2", vn: 100, tag: 10 }]]);
    assert.is(s.get("timers", `migration-hold|${U1}`)?.due, 1234);
    assert.match(logs.join("\n"), /from schema version 0 to 1/);
    await s.close();
    // The root database no longer holds version 0 records; reopening does not migrate again.
    const r2 = open({ path: dir, maxDbs: 32 });
    assert.not.ok([...r2.getKeys()].map(String).some((k) => k.includes("/")));
    await r2.close();
    logs.length = 0;
    const s2 = await openLmdbStore(dir, { log: (l) => logs.push(l) });
    assert.equal(s2.get("vnics", U1), rec);
    assert.equal(logs, []);
    await s2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

e("a migration that fails leaves the store at its old version, and a store with no path forward is refused", async () => {
  const dir = tmp();
  try {
    const r = open({ path: dir, maxDbs: 32 });
    writeV0(r, [["vnics", U1, rec]]);
    await r.close();
    // the store's files (lock files aside: each open takes and releases them), byte for byte
    const files = () => Object.fromEntries(Object.entries(snapshot(dir)).filter(([f]) => f !== LOCK_FILE));
    const before = files();
    await expectError(openLmdbStore(dir, { migrations: { 0: () => { throw new Error("step failed"); } } }), Error);
    assert.equal(files(), before, "the failed migration wrote nothing");
    const r2 = open({ path: dir, maxDbs: 32 });
    assert.is(r2.get("meta/schemaVersion"), 0);
    assert.equal(r2.get(`vnics/${U1}`), rec);
    await r2.close();
    const err = await expectError(openLmdbStore(dir, { migrations: {} }), StoreSchemaError);
    assert.match(err.message, /no migration path from version 0 to 1/);
    assert.equal(files(), before, "the refused open wrote nothing");
    const s = await openLmdbStore(dir);
    assert.equal(s.get("vnics", U1), rec);
    await s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

e("an acknowledged transaction is on disk: a new process reads it", async () => {
  const dir = tmp();
  try {
    const s = await openLmdbStore(dir);
    await s.transaction((tx) => { tx.put("vnics", U1, rec); tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 7 }); });
    await s.close();
    const here = dirname(fileURLToPath(import.meta.url));
    const lmdbJs = join(here, "..", "host", "store", "lmdb.js");
    const r = spawnSync(process.execPath, ["--input-type=module", "-e",
      `import { openLmdbStore } from ${JSON.stringify(lmdbJs)}; const s = await openLmdbStore(${JSON.stringify(dir)}); console.log(JSON.stringify([s.get("vnics", ${JSON.stringify(U1)}), s.get("hvs", "hv-1")])); await s.close();`],
    { encoding: "utf8", timeout: 20_000 });
    assert.is(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout), [rec, { hv: "hv-1", online: true, since: 7 }]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

e("commit() (pipelining): visible to reads at once, in call order; `durable` resolves once on disk", async () => {
  const dir = tmp();
  try {
    const s = await openLmdbStore(dir);
    const a = await s.commit((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 1 }));
    const b = await s.commit((tx) => { tx.put("hvs", "hv-1", { hv: "hv-1", online: false, since: 2 }); tx.put("vnics", U1, rec); return 42; });
    assert.is(b.result, 42);
    assert.equal(s.get("hvs", "hv-1"), { hv: "hv-1", online: false, since: 2 }, "the later commit wins before anything is flushed");
    assert.equal(s.list("vnics").map(([k]) => k), [U1]);
    await Promise.all([a.durable, b.durable]);
    await s.close();
    const s2 = await openLmdbStore(dir);
    assert.equal(s2.get("hvs", "hv-1"), { hv: "hv-1", online: false, since: 2 });
    assert.equal(s2.get("vnics", U1), rec);
    await s2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

e("nvedge run refuses a locked, newer or corrupt --store with one line naming the directory (exit 1), store untouched", async () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const bin = join(here, "..", "..", "bin", "nvedge.js");
  const work = tmp();
  const cfg = join(work, "nve.json");
  writeFileSync(cfg, JSON.stringify({
    nve: "nve-a", underlay: { port: "eth1", ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe", udpPort: 4789 },
    ports: [{ name: "eth2", hypervisors: ["hv-1"] }], vns: [], vnics: [], remotes: [],
  }));
  const locked = await filled();
  const newer = await filled();
  const corrupt = tmp();
  writeFileSync(join(corrupt, "data.mdb"), Buffer.alloc(8192, 0x33));
  const holder = await openLmdbStore(locked);
  try {
    const s = await openLmdbStore(newer, { schemaVersion: STORE_SCHEMA_VERSION + 1, migrations: { [STORE_SCHEMA_VERSION]: () => {} } });
    await s.close();
    for (const [dir, re] of [[locked, /in use by another running NVE/], [newer, /is newer than this nvedge/], [corrupt, /corrupt/]] as const) {
      const before = snapshot(dir);
      const r = spawnSync(process.execPath, [bin, "run", "--config", cfg, "--io", "none", "--store", dir, "--broker", "mqtt://127.0.0.1:1"],
        { encoding: "utf8", timeout: 20_000 });
      assert.is(r.status, 1, `${dir}: ${r.stderr}`);
      const lines = r.stderr.trim().split("\n");
      assert.is(lines.length, 1, r.stderr);
      assert.match(lines[0], dir);
      assert.match(lines[0], re);
      assert.equal(snapshot(dir), before, dir);
    }
  } finally {
    await holder.close();
    for (const d of [work, locked, newer, corrupt]) rmSync(d, { recursive: true, force: true });
  }
});

e("files 0600 and folders 0700 (issue 10): a new store is created so, an older one is tightened at open; the IMA's store too", async () => {
  const mode = (p: string) => statSync(p).mode & 0o777;
  const oldMask = process.umask(0o022); // an ordinary umask: what the store must not rely on
  const dir = tmp();
  try {
    const fresh = join(dir, "fresh", "store");
    const s = await openLmdbStore(fresh);
    await s.transaction((tx) => tx.put("vnics", U1, rec));
    assert.is(mode(fresh), 0o700);
    const files = readdirSync(fresh).sort();
    assert.ok(files.includes("data.mdb") && files.includes("lock.mdb"), files.join(" "));
    for (const f of files) assert.is(mode(join(fresh, f)), 0o600, `${f}: ${mode(join(fresh, f)).toString(8)}`);
    await s.close();
    assert.is(process.umask(0o022), 0o022, "the process umask is back");
    // a store left 0755/0644 by an older nvedge: tightened at open, its data intact
    chmodSync(fresh, 0o755);
    for (const f of readdirSync(fresh)) chmodSync(join(fresh, f), 0o644);
    const again = await openLmdbStore(fresh);
    assert.equal(again.get("vnics", U1), rec);
    assert.is(mode(fresh), 0o700);
    for (const f of readdirSync(fresh)) assert.is(mode(join(fresh, f)), 0o600, f);
    await again.close();
    const { openImaDb } = await import("../host/ima/db.js");
    const imaDir = join(dir, "ima");
    const db = openImaDb(imaDir);
    await db.markSeeded();
    assert.is(mode(imaDir), 0o700);
    for (const f of readdirSync(imaDir)) assert.is(mode(join(imaDir, f)), 0o600, f);
    await db.close();
  } finally {
    process.umask(oldMask);
    rmSync(dir, { recursive: true, force: true });
  }
});

// Commits on the calling thread (host/store/lmdb.ts header, issue 15): chosen
// while the pipelined commits' flush is measured under syncCommitMaxMs, each
// durable before commit() returns; the thresholds here (Infinity, 0) make the
// choice independent of this machine's disk.
e("commits move onto the calling thread once SYNC_PROBE flushes were under syncCommitMaxMs: each is in LMDB when commit() returns, durable in call order", async () => {
  const dir = tmp();
  try {
    const s = await openLmdbStore(dir, { syncCommitMaxMs: Infinity });
    assert.is(s.commitsOnThread, false, "a new store starts on the pipeline (its disk's flush is not known yet)");
    let before = s.lastTxnId();
    const first = s.commit((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 0 }));
    assert.is(s.lastTxnId(), before, "pipelined: nothing is committed to LMDB before the event turn ends");
    await (await first).durable;
    for (let i = 1; i < 16; i++) await (await s.commit((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: i }))).durable;
    assert.is(s.commitsOnThread, true, "16 timed flushes under the bound");
    before = s.lastTxnId();
    const c = s.commit((tx) => { tx.put("vnics", U1, rec); tx.put("hvs", "hv-1", { hv: "hv-1", online: false, since: 99 }); return 7; });
    assert.is(s.lastTxnId(), before + 1, "committed (one LMDB transaction for both collections) before commit() returned");
    const { result, durable } = await c;
    assert.is(result, 7);
    await durable;
    assert.equal(s.get("vnics", U1), rec);
    // a throwing callback still writes nothing
    before = s.lastTxnId();
    await expectError(s.commit((tx) => { tx.del("vnics", U1); throw new StoreCorruptError(dir, "test"); }), StoreCorruptError);
    assert.is(s.lastTxnId(), before);
    assert.equal(s.get("vnics", U1), rec);
    // transaction() takes the same path
    await s.transaction((tx) => tx.del("hvs", "hv-1"));
    assert.is(s.lastTxnId(), before + 1);
    await s.close();
    const s2 = await openLmdbStore(dir);
    assert.equal(s2.get("vnics", U1), rec);
    assert.is(s2.get("hvs", "hv-1"), undefined);
    await s2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

e("syncCommitMaxMs 0 keeps every commit pipelined; a commit on the thread slower than the bound puts commits back on the pipeline", async () => {
  const dir = tmp();
  try {
    const s = await openLmdbStore(dir, { syncCommitMaxMs: 0 });
    for (let i = 0; i < 20; i++) await (await s.commit((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: i }))).durable;
    assert.is(s.commitsOnThread, false);
    const before = s.lastTxnId();
    const p = s.commit((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 20 }));
    assert.is(s.lastTxnId(), before, "still pipelined");
    await (await p).durable;
    await s.close();
    const t = await openLmdbStore(dir, { syncCommitMaxMs: Infinity });
    for (let i = 0; i < 16; i++) await (await t.commit((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: i }))).durable;
    assert.is(t.commitsOnThread, true);
    // The bound lowered under the store (a disk that became slow): the next commit on the thread takes longer than 0 ms.
    (t as unknown as { syncCommitMaxMs: number }).syncCommitMaxMs = 0;
    await (await t.commit((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 100 }))).durable;
    assert.is(t.commitsOnThread, false, "back on the pipeline");
    const before2 = t.lastTxnId();
    const q = t.commit((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 101 }));
    assert.is(t.lastTxnId(), before2, "pipelined again");
    await (await q).durable;
    assert.equal(t.get("hvs", "hv-1"), { hv: "hv-1", online: true, since: 101 });
    await t.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

e("syncCommitMaxMs must be a number of milliseconds, 0 or more: refused before the directory is made", async () => {
  for (const bad of [-1, Number.NaN, "1", Number.NEGATIVE_INFINITY]) {
    const dir = join(tmp(), "store");
    try {
      const err = await expectError(openLmdbStore(dir, { syncCommitMaxMs: bad as number }), RangeError);
      assert.match(err.message, "syncCommitMaxMs");
      assert.is(existsSync(dir), false, `nothing made for ${String(bad)}`);
    } finally {
      rmSync(dirname(dir), { recursive: true, force: true });
    }
  }
});

e("commits on the thread survive SIGKILL: every commit acknowledged (durable) before the kill is in the store after it", async () => {
  const dir = tmp();
  const here = dirname(fileURLToPath(import.meta.url));
  const lmdbJs = join(here, "..", "host", "store", "lmdb.js");
  // The child commits one key after another, each acknowledged on stdout once durable, then keeps going until killed.
  const child = spawn(process.execPath, ["--input-type=module", "-e",
    `import { openLmdbStore } from ${JSON.stringify(lmdbJs)}; const s = await openLmdbStore(${JSON.stringify(dir)}, { syncCommitMaxMs: Infinity });
     for (let i = 0; ; i++) { const { durable } = await s.commit((tx) => { tx.put("timers", "t" + i, { i }); tx.put("meta", "last", i); }); await durable; process.stdout.write((s.commitsOnThread ? "T" : "P") + i + "\\n"); }`],
  { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const acked: string[] = [];
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error("child did not commit 200 times on the thread in 20 s")), 20_000);
      let buf = "";
      child.stdout!.on("data", (d) => {
        buf += String(d);
        const lines = buf.split("\n");
        buf = lines.pop()!;
        acked.push(...lines);
        if (acked.filter((l) => l.startsWith("T")).length >= 200) { clearTimeout(t); child.kill("SIGKILL"); res(); }
      });
      child.on("exit", (c, sig) => { if (sig !== "SIGKILL") rej(new Error(`child exited ${c}`)); });
    });
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once("exit", r)));
    const s = await openLmdbStore(dir);
    const last = Number(acked[acked.length - 1].slice(1));
    for (let i = 0; i <= last; i++) assert.equal(s.get("timers", `t${i}`), { i }, `acknowledged commit ${i}`);
    const stored = s.get("meta", "last") as unknown as number;
    assert.ok(stored >= last, `the store holds at least the last acknowledged commit: ${stored} vs ${last}`);
    assert.equal(s.list("timers").length, stored + 1, "each commit all or nothing: its key with its `last`");
    await s.close();
  } finally {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
});

e.run();
