// When the NVE writes and uses its table image (issue 15; host/control/dp-image.ts):
// written once the store and the data plane are quiet, keyed by the store's
// last transaction; not written while a change is stored or programmed; used
// at start only when the store is still at that transaction, the static
// configuration is the same and the file is whole, otherwise refused with a
// log line saying why, removed, and the tables rebuilt.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, existsSync, truncateSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { openLmdbStore } from "../host/store/lmdb.js";
import { MemoryStore } from "../host/store/memory.js";
import { parseConfig } from "../host/config/load.js";
import { ImageWriter, expectedKey, imagePath, startImage, type ImageWriterOptions } from "../host/control/dp-image.js";
import { imageKeyOf } from "../host/dataplane/load.js";
import * as F from "./support/frames.js";

const OPTS = { macLog2: 12, ipLog2: 12 };
const cfgOf = (f: F.Family, extra: Record<string, unknown> = {}) => parseConfig(JSON.stringify({ ...F.fixtureConfig(f), ...extra }), "test");

/** A store, a programmed data plane and a writer with short timers; `written` resolves with each image. */
async function setup(dir: string, extra: Partial<ImageWriterOptions> = {}) {
  const cfg = cfgOf(4);
  const raw = await openLmdbStore(join(dir, "store"));
  const dp = await DataPlane.create(OPTS);
  const lines: string[] = [];
  const written: { txnId: number }[] = [];
  let notify: (() => void) | undefined;
  const w = new ImageWriter({
    path: imagePath(dir), store: raw, log: (l) => lines.push(l), quietMs: 50, minIntervalMs: 0,
    key: () => ({ ...imageKeyOf(OPTS), config: "c" }), snapshot: async (k) => dp.snapshot(k),
    onWritten: (i) => { written.push(i); notify?.(); }, ...extra,
  });
  const store = w.wrapStore(raw);
  const programmer = w.wrapProgrammer({ apply: async (ops) => dp.apply(ops) });
  const next = () => new Promise<void>((r) => { notify = r; });
  return { cfg, raw, store, dp, programmer, w, lines, written, next };
}

test("written once quiet, at the store's last transaction id, and used by the next start; not while changes go on", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-dpimage-"));
  try {
    const s = await setup(dir);
    s.w.started(false);
    let got = s.next();
    await s.programmer.apply(F.fixtureOps(4));
    await s.store.transaction((w) => w.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 1 }));
    await got;
    assert.is(s.written.length, 1, "one image for the group of changes");
    assert.is(s.written[0].txnId, s.raw.lastTxnId!(), "keyed by the store's last transaction");
    // a change programmed and stored a little later (the IMA cache's order):
    // no image until both are done and quiet
    got = s.next();
    await s.programmer.apply([{ op: "mac.del", vn: 100, mac: F.locals(100).L1.mac }]);
    await new Promise((r) => setTimeout(r, 20));
    assert.is(s.written.length, 1, "not written between the apply and its store write");
    await s.store.transaction((w) => w.put("hvs", "hv-2", { hv: "hv-2", online: true, since: 2 }));
    await got;
    assert.is(s.written.length, 2);
    assert.is(s.written[1].txnId, s.raw.lastTxnId!());
    await s.w.close();
    assert.is(s.written.length, 2, "nothing changed since: no image at the stop");
    const key = { ...imageKeyOf(OPTS), config: "c", txnId: s.raw.lastTxnId!() };
    const lines: string[] = [];
    const img = startImage(imagePath(dir), key, (l) => lines.push(l));
    assert.ok(img, `used: ${lines.join("; ")}`);
    const b = await DataPlane.create({ ...OPTS, image: img });
    assert.equal(b.stats().macs, s.dp.stats().macs);
    await s.raw.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a clean stop writes the image of what changed since the last one", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-dpimage-"));
  try {
    const s = await setup(dir);
    s.w.started(true); // as after a start from an image: nothing to write
    await s.w.close();
    assert.not.ok(existsSync(imagePath(dir)), "no change, no image");
    const t = await setup(join(dir, "b"));
    t.w.started(true);
    await t.programmer.apply(F.fixtureOps(4));
    await t.store.transaction((w) => w.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 1 }));
    await t.w.close(); // before its quiet time ran out
    assert.is(t.written.length, 1, "written at the stop");
    assert.is(t.written[0].txnId, t.raw.lastTxnId!());
    await s.raw.close();
    await t.raw.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("an image dropped because an op came while it was taken (a packet I/O worker's) is not reported, and taken again once quiet", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-dpimage-"));
  try {
    let tries = 0;
    const late: { s?: Awaited<ReturnType<typeof setup>> } = {};
    const s = late.s = await setup(dir, {
      snapshot: async (k) => {
        if (tries++ === 0) {
          // an op arrives while the worker takes it: it drops the image
          await late.s!.programmer.apply([{ op: "mac.del", vn: 100, mac: F.locals(100).L1.mac }]);
          throw new Error("the tables changed while it was taken");
        }
        return late.s!.dp.snapshot(k);
      },
    });
    s.w.started(false);
    const got = s.next();
    await s.programmer.apply(F.fixtureOps(4));
    await got;
    assert.is(tries, 2, "taken again after the dropped one");
    assert.is(s.written.length, 1);
    assert.not.ok(s.lines.some((l) => /not taken/.test(l)), `no error logged: ${s.lines.join("; ")}`);
    const img = startImage(imagePath(dir), { ...imageKeyOf(OPTS), config: "c", txnId: s.raw.lastTxnId!() }, () => {});
    const b = await DataPlane.create({ ...OPTS, image: img });
    assert.equal(b.stats().macs, s.dp.stats().macs, "the image holds the op that came during the dropped one");
    await s.w.close();
    await s.raw.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("periodic: false: no image while running, however quiet; one at the clean stop", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-dpimage-"));
  try {
    const s = await setup(dir, { periodic: false });
    s.w.started(false);
    await s.programmer.apply(F.fixtureOps(4));
    await s.store.transaction((w) => w.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 1 }));
    await new Promise((r) => setTimeout(r, 300)); // six quiet times
    assert.is(s.written.length, 0, "nothing written while running");
    assert.not.ok(existsSync(imagePath(dir)));
    await s.w.close();
    assert.is(s.written.length, 1, "written at the stop");
    assert.is(s.written[0].txnId, s.raw.lastTxnId!());
    await s.raw.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("at start an image is refused, with the reason, and removed, when the store moved on, the configuration changed, or the file is cut", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-dpimage-"));
  try {
    const s = await setup(dir);
    s.w.started(false);
    const got = s.next();
    await s.programmer.apply(F.fixtureOps(4));
    await got;
    await s.w.close();
    const path = imagePath(dir);
    const keyNow = () => ({ ...imageKeyOf(OPTS), config: "c", txnId: s.raw.lastTxnId!() });
    const tryStart = (key: Record<string, string | number>) => {
      const lines: string[] = [];
      const img = startImage(path, key, (l) => lines.push(l));
      return { img, lines };
    };
    assert.ok(tryStart(keyNow()).img, "the image fits");
    let r = tryStart({ ...keyNow(), config: "other" });
    assert.is(r.img, undefined);
    assert.match(r.lines.join(), /image: .* refused \(the configuration's static state \(SHA-256\) differs.*rebuilding the tables from the store's records/);
    assert.not.ok(existsSync(path), "a refused image is removed");
    r = tryStart(keyNow());
    assert.is(r.img, undefined);
    assert.match(r.lines.join(), /image: none at .*: rebuilding/);

    // the store moved on after the image
    const u = await setup(join(dir, "u"));
    u.w.started(false);
    let g = u.next();
    await u.programmer.apply(F.fixtureOps(4));
    await g;
    await u.raw.transaction((w) => w.put("hvs", "hv-9", { hv: "hv-9", online: false, since: 3 }));
    const key = { ...imageKeyOf(OPTS), config: "c", txnId: u.raw.lastTxnId!() };
    let lines: string[] = [];
    assert.is(startImage(imagePath(join(dir, "u")), key, (l) => lines.push(l)), undefined);
    assert.match(lines.join(), /the store's last transaction id differs: the image has \d+, now \d+/);

    // a cut file (a crash while it was copied elsewhere, a full disk)
    g = u.next();
    await u.programmer.apply([{ op: "mac.del", vn: 100, mac: F.locals(100).L1.mac }]);
    await g;
    const p = imagePath(join(dir, "u"));
    truncateSync(p, statSync(p).size - 100);
    lines = [];
    assert.is(startImage(p, { ...key, txnId: u.raw.lastTxnId!() }, (l) => lines.push(l)), undefined);
    assert.match(lines.join(), /truncated or extended/);
    await u.w.close();
    await s.raw.close();
    await u.raw.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("no image for a store that keeps nothing on disk, or for the component loader; the configuration's static state is in the key", async () => {
  const mem = await MemoryStore.open();
  assert.is(expectedKey(mem, cfgOf(4), {}), undefined);
  const dir = mkdtempSync(join(tmpdir(), "nvl-dpimage-"));
  try {
    const st = await openLmdbStore(join(dir, "store"));
    assert.is(expectedKey(st, cfgOf(4), { loader: "component" }), undefined);
    const k4 = expectedKey(st, cfgOf(4), {})!, k6 = expectedKey(st, cfgOf(6), {})!;
    assert.is(k4.txnId, st.lastTxnId!());
    assert.is.not(k4.config, k6.config, "another underlay, another key");
    assert.is(expectedKey(st, cfgOf(4), {})!.config, k4.config, "the same file, the same key");
    await st.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
