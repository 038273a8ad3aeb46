// Packet I/O workers started from a table image before its key is known
// (issue 15: `nvedge run` starts them first, host/cli/run-early.ts): each
// restores the file itself and reports its key (or why it refused it), takes
// no frame until WorkerPool.go, and then forwards from the image's tables
// with no op applied (keep) or from empty tables (not kept). And a running
// worker takes its image a slice at a time between batches, dropped when an
// op comes meanwhile. Real frames on veth pairs in a test-created `nvl-`
// namespace. Needs root.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAfPacket, type WorkerPool } from "../host/io/afpacket.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { DataPlane } from "../host/dataplane/dataplane.js";
import { imageKeyOf } from "../host/dataplane/load.js";
import { checkImage, writeImageFile, fileHash, type ImageKey } from "../host/dataplane/image.js";
import { openLmdbStore } from "../host/store/lmdb.js";
import { STORE_SCHEMA } from "../host/control/dp-image.js";
import { earlyGo, type EarlyWorkers } from "../host/cli/run-early.js";
import { tunnelTapName } from "../host/io/tunnel-output.js";
import { requireRootAnd } from "./support/tools.js";
import { tmpNetns, injectFrames, capture, type Netns } from "./support/io-net.js";
import { ethernet, ipv4Packet, udp, ETH_IPV4, IPPROTO_UDP } from "./support/encoder.js";

const VM_MAC = "02:00:5e:00:00:01", REMOTE_MAC = "02:00:5e:00:00:02";
const UNDERLAY = { ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" };
const LAYOUT = { macLog2: 10, ipLog2: 10 };

const ops = (trunk: string, underlay: string): DpOp[] => [
  { op: "underlay", port: underlay, ...UNDERLAY, udpPort: 4789 },
  { op: "port", port: trunk },
  { op: "vn", vn: 100, vni: 5000, profile: { encap: "vxlan", mtu: 1500, portSecurity: true, arpSuppress: true } },
  { op: "tag", port: trunk, tag: 10, vn: 100 },
  { op: "mac.local", vn: 100, mac: VM_MAC, port: trunk, active: true },
  { op: "ip", vn: 100, ip: "10.0.0.1", mac: VM_MAC },
  { op: "mac.remote", vn: 100, mac: REMOTE_MAC, nve: "192.0.2.2" },
];

/** A tagged IPv4/UDP frame from the VM to the remote MAC. */
function probe(seq: number): Uint8Array {
  const payload = udp({ src: "10.0.0.1", dst: "10.0.0.2", srcPort: 1024 + seq, dstPort: 9, payload: new Uint8Array(18), checksum: "compute" });
  return ethernet({ dst: REMOTE_MAC, src: VM_MAC, tags: [{ vid: 10 }], type: ETH_IPV4, payload: ipv4Packet({ src: "10.0.0.1", dst: "10.0.0.2", protocol: IPPROTO_UDP, payload }) });
}

interface Lab { ns: Netns; hv: string; trunk: string; underlay: string; peer: string; dir: string; image: string; key: ImageKey }

/** A namespace with the trunk and underlay veths, and the image of a data plane programmed with ops() in a file. */
async function withLab(body: (l: Lab) => Promise<void>): Promise<void> {
  const ns = tmpNetns("ioi");
  const dir = mkdtempSync(join(tmpdir(), "nvl-io-image-"));
  try {
    const [hv, trunk] = ns.veth("t");
    const [underlay, peer] = ns.veth("u");
    const key = { ...imageKeyOf(LAYOUT), txnId: 42, config: "io-image" };
    const dp = await DataPlane.create(LAYOUT);
    dp.apply(ops(trunk, underlay));
    const image = join(dir, "dataplane.img");
    await writeImageFile(image, dp.snapshot(key));
    await body({ ns, hv, trunk, underlay, peer, dir, image, key });
  } finally {
    ns.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

const held = (l: Lab, workers: number, stagger = false) => startAfPacket({
  config: { underlay: { port: l.underlay, ...UNDERLAY, udpPort: 4789, genevePort: 6081 }, ports: [{ name: l.trunk, hypervisors: ["hv-1"] }] },
  workers, ring: { netns: l.ns.path, blockSize: 1 << 16, blockCount: 8, blockTimeoutMs: 1 }, idlePollMs: 20,
  dataplane: { ...LAYOUT, imagePath: l.image }, hold: true, stagger,
});

/** Tagged frames of `n` flows (UDP source ports) from the VM to the remote MAC: the fanout hash spreads them over the workers. */
const flows = (n: number, from = 100) => Array.from({ length: n }, (_, i) => probe(from + i));

/** The image of a data plane with no ops (nothing forwards from it), keyed otherwise than the lab's. */
async function otherImage(l: Lab): Promise<Uint8Array> {
  return (await DataPlane.create(LAYOUT)).snapshot({ ...l.key, txnId: 43 });
}

/** Frames counted by the pool's data planes, once `want` of them were received (bounded: 5 s). */
async function framesOnce(pool: WorkerPool, want: number): Promise<Record<string, number>> {
  for (const until = Date.now() + 5000; ;) {
    const f = (await pool.counters()).counters.frames as Record<string, number>;
    if (f.rx >= want || Date.now() > until) return f;
    await new Promise((r) => setTimeout(r, 20));
  }
}

if (requireRootAnd([], "the packet I/O workers started from a table image (network namespaces, CAP_NET_RAW)")) {
  test("held workers restore the image themselves, take no frame before go, then forward from its tables with no op applied", async () => {
    await withLab(async (l) => {
      const pool = await held(l, 2);
      try {
        assert.is(pool.images.length, 2);
        for (const r of pool.images) assert.equal(r && "key" in r ? r.key : r, l.key, "each worker reports the image's key");
        // a frame sent while held waits in the socket's ring: nothing leaves before go
        const early = await capture(l.ns, l.peer, 1, 1000, ["udp", "port", "4789"]);
        injectFrames(l.ns, l.hv, [probe(1)]);
        assert.is((await early.done).length, 0, "no frame forwarded while held");
        const cap = await capture(l.ns, l.peer, 2, 10_000, ["udp", "port", "4789"]);
        pool.go(true);
        injectFrames(l.ns, l.hv, [probe(2)]);
        const got = await cap.done;
        const c = await pool.counters();
        assert.is(got.length, 2, `the frame held in the ring and a new one, both encapsulated from the image's tables: ${JSON.stringify({ frames: c.counters.frames, io: c.io, perWorker: c.perWorker })}`);
        const f = await framesOnce(pool, 2);
        assert.is(f.forwarded, 2);
      } finally {
        await pool.stop();
      }
    });
  });

  test("go(false): empty tables (the frame is dropped) until the caller programs them; a corrupt file is refused by the worker with its reason", async () => {
    await withLab(async (l) => {
      const pool = await held(l, 1);
      try {
        pool.go(false);
        injectFrames(l.ns, l.hv, [probe(1)]);
        const f = await framesOnce(pool, 1);
        assert.equal([f.rx, f.forwarded, f.dropped], [1, 0, 1], "not forwarded: the image was not kept");
        const cap = await capture(l.ns, l.peer, 1, 10_000, ["udp", "port", "4789"]);
        await pool.apply(ops(l.trunk, l.underlay));
        injectFrames(l.ns, l.hv, [probe(2)]);
        assert.is((await cap.done).length, 1, "forwarded once programmed");
      } finally {
        await pool.stop();
      }
      const bytes = readFileSync(l.image);
      bytes[bytes.length - 100] ^= 0x40;
      writeFileSync(l.image, bytes);
      const bad = await held(l, 1);
      try {
        const r = bad.images[0];
        assert.ok(r && "refused" in r && /checksum mismatch/.test(r.refused), `refused for its checksum: ${JSON.stringify(r)}`);
        bad.go(false);
        injectFrames(l.ns, l.hv, [probe(3)]);
        const f = await framesOnce(bad, 1);
        assert.equal([f.rx, f.forwarded], [1, 0], "empty tables");
      } finally {
        await bad.stop();
      }
    });
  });

  test("stagger: worker 0 is up alone when the pool resolves; the others restore the same file by its descriptor even when it is replaced meanwhile, are told go, and forward from it", async () => {
    await withLab(async (l) => {
      const pool = await held(l, 2, true);
      try {
        assert.equal(pool.images[0] && "key" in pool.images[0] ? pool.images[0].key : pool.images[0], l.key, "worker 0 restored the image");
        assert.is(pool.images[1], undefined, "worker 1 is not up yet");
        // an image written meanwhile (the NVE's ImageWriter renames a new file over it): not what worker 1 restores
        await writeImageFile(l.image, await otherImage(l));
        pool.go(true);
        await pool.joined;
        assert.equal(pool.images[1] && "key" in pool.images[1] ? pool.images[1].key : pool.images[1], l.key, "worker 1 restored the file worker 0 read, not the one renamed over it");
        const cap = await capture(l.ns, l.peer, 32, 10_000, ["udp", "port", "4789"]);
        injectFrames(l.ns, l.hv, flows(32));
        const got = await cap.done;
        const c = await pool.counters();
        assert.is(got.length, 32, `every flow encapsulated, by either worker: ${JSON.stringify(c.perWorker)}`);
        assert.ok(c.perWorker.every((w) => w.rx > 0 && w.forwarded === w.rx), `both workers forward from the image's tables: ${JSON.stringify(c.perWorker)}`);
      } finally {
        await pool.stop();
      }
    });
  });

  test("stagger: a worker that joins with other tables than worker 0's kept image fails the pool; stopped before the others are up, every worker ends", async () => {
    await withLab(async (l) => {
      // made before the pool starts: worker 1 is spawned the moment the pool
      // resolves, and must find the file rewritten when it reads it (making
      // this image after that took long enough for it to read the old one)
      const other = await otherImage(l);
      const pool = await held(l, 2, true);
      try {
        // the same file rewritten in place (not renamed): worker 1 reads other bytes through the shared descriptor
        writeFileSync(l.image, other);
        pool.go(true);
        const joined = await pool.joined.then(() => "joined", (e: Error) => e.message);
        assert.match(joined, /packet I\/O worker 1 did not restore the table image worker 0 forwards from/);
        assert.match(await pool.closed.then(() => "closed", (e: Error) => e.message), /did not restore the table image/, "the pool failed: no forwarding from two different tables");
      } finally {
        await pool.stop();
      }
      // stopped at once: worker 1 was spawned when the pool resolved and is stopped while it starts
      const tap = tunnelTapName(process.pid, 1);
      const quick = await held(l, 2, true);
      await quick.stop();
      assert.match(await quick.joined.then(() => "joined", (e: Error) => e.message), /stopped before every one was up|joined/);
      assert.is(spawnSync("ip", ["-n", l.ns.name, "-o", "link", "show", "dev", tap]).status === 0, false, "worker 1's tap is not left behind");
    });
  });

  test("stagger, go(false): the late worker drops the image too and takes the ops the pool applied before it was up; both forward once programmed", async () => {
    await withLab(async (l) => {
      const pool = await held(l, 2, true);
      try {
        pool.go(false);
        // applied to both (worker 1 finds them queued behind go when it comes up), with the remote MAC
        // at another NVE than the image's: a worker that kept the image would send its flows to 192.0.2.2
        const moved = ops(l.trunk, l.underlay).map((o) => (o.op === "mac.remote" ? { ...o, nve: "192.0.2.3" } : o));
        const applied = pool.apply(moved);
        await pool.joined;
        await applied;
        const cap = await capture(l.ns, l.peer, 32, 10_000, ["udp", "port", "4789", "and", "dst", "host", "192.0.2.3"]);
        injectFrames(l.ns, l.hv, flows(32, 300));
        const got = await cap.done;
        const c = await pool.counters();
        assert.is(got.length, 32, `every flow encapsulated to the programmed NVE, none from the image's tables: ${JSON.stringify(c.perWorker)}`);
        assert.ok(c.perWorker.every((w) => w.rx > 0 && w.forwarded === w.rx), `both workers forward from the programmed tables: ${JSON.stringify(c.perWorker)}`);
      } finally {
        await pool.stop();
      }
    });
  });

  test("stopped while held (never told go): the worker closes its sockets and its tunnel TX tap too", async () => {
    await withLab(async (l) => {
      const tap = tunnelTapName(process.pid, 0);
      const tapUp = () => spawnSync("ip", ["-n", l.ns.name, "-o", "link", "show", "dev", tap], { encoding: "utf8" }).status === 0;
      const pool = await held(l, 1);
      let stopped = false;
      try {
        // underlay.tunnelGso defaults to auto: the worker opened its tap before `ready` (this kernel has it: test/io-tunnel-output)
        assert.ok(tapUp(), `the worker's tap ${tap} is open while held`);
        await pool.stop();
        stopped = true;
        assert.not.ok(tapUp(), `the tap ${tap} is gone once the held worker stopped`);
      } finally {
        if (!stopped) await pool.stop();
      }
    });
  });

  test("a running worker takes its image a slice at a time between batches, while it forwards, with the same tables as the data plane; an op applied meanwhile drops it", async () => {
    await withLab(async (l) => {
      // tables worth many slices: 2,000 more local MACs with an IP each
      const n = 2000;
      const mac = (k: number) => `02:66:00:00:${(k >> 8).toString(16).padStart(2, "0")}:${(k & 255).toString(16).padStart(2, "0")}`;
      const bulk: DpOp = { op: "local.bulk", port: l.trunk, vn: Array(n).fill(100), mac: Array.from({ length: n }, (_, k) => mac(k)), active: Array(n).fill(true),
        ipStart: Array.from({ length: n + 1 }, (_, k) => k), ips: Array.from({ length: n }, (_, k) => `10.9.${k >> 8}.${k & 255}`) };
      const all = [...ops(l.trunk, l.underlay), bulk];
      const pool = await startAfPacket({
        config: { underlay: { port: l.underlay, ...UNDERLAY, udpPort: 4789, genevePort: 6081 }, ports: [{ name: l.trunk, hypervisors: ["hv-1"] }] },
        workers: 1, ring: { netns: l.ns.path, blockSize: 1 << 16, blockCount: 8, blockTimeoutMs: 1 }, idlePollMs: 20,
        dataplane: { macLog2: 14, ipLog2: 14 }, ops: all, imageSliceMs: 0, // one page per slice
      });
      try {
        const key = { ...imageKeyOf({ macLog2: 14, ipLog2: 14 }), txnId: 7, config: "io-image" };
        const cap = await capture(l.ns, l.peer, 20, 8000, ["udp", "port", "4789"]);
        const taking = pool.snapshot(key);
        injectFrames(l.ns, l.hv, Array.from({ length: 20 }, (_, i) => probe(i)));
        const img = await taking;
        assert.ok(pool.imageSteps > 10, `taken in ${pool.imageSteps} slices`);
        assert.is((await cap.done).length, 20, "every frame forwarded, before, while or after the image was taken");
        // the same tables as the data plane it was taken from (forwarding state, such as ACL hit
        // counters and the clock, is taken as it was when its page was copied: not compared)
        const ref = await DataPlane.create({ macLog2: 14, ipLog2: 14 });
        ref.apply(all);
        const got = await DataPlane.create({ macLog2: 14, ipLog2: 14, image: checkImage({ bytes: img }, key) });
        const tables = (dp: DataPlane) => { const { fastPathFrames: _f, hugePagesAdvised: _h, ...t } = dp.stats(); return t; };
        assert.equal(tables(got), tables(ref), "the same table fill");
        for (const k of [0, 1, n - 1]) {
          const f = ethernet({ dst: REMOTE_MAC, src: mac(k), tags: [{ vid: 10 }], type: ETH_IPV4,
            payload: ipv4Packet({ src: `10.9.${k >> 8}.${k & 255}`, dst: "10.0.0.2", protocol: IPPROTO_UDP, payload: udp({ src: `10.9.${k >> 8}.${k & 255}`, dst: "10.0.0.2", srcPort: 5, dstPort: 9, payload: new Uint8Array(8), checksum: "compute" }) }) });
          const [x, y] = [got.trace(l.trunk, f), ref.trace(l.trunk, f)];
          assert.equal([x.drop, x.outputs.map((o) => Buffer.from(o.frame).toString("hex"))], [y.drop, y.outputs.map((o) => Buffer.from(o.frame).toString("hex"))], `MAC ${k} forwards the same`);
          assert.is(x.drop, undefined, `MAC ${k} forwards`);
        }
        // an op while it is taken: dropped (its pages would be from before and after the op), the next one taken.
        // The op is sent right after the image is asked for; under load the worker may take the whole image
        // before the op reaches it: then the image is whole and without the op (checked), and it is tried again.
        let dropped = 0;
        for (let k = 0; k < 8 && dropped === 0; k++) {
          const taking = pool.snapshot(key).then((b) => b, (e: Error) => e.message);
          const more: DpOp[] = [{ op: "mac.remote", vn: 100, mac: `02:00:5e:00:01:${k.toString(16).padStart(2, "0")}`, nve: "192.0.2.2" }];
          await pool.apply(more);
          const r = await taking;
          if (typeof r === "string") {
            assert.match(r, /the tables changed while it was taken/);
            dropped++;
          } else {
            const early = await DataPlane.create({ macLog2: 14, ipLog2: 14, image: checkImage({ bytes: r }, key) });
            assert.is(early.stats().macs, ref.stats().macs, "an image taken whole before the op came does not hold it");
          }
          ref.apply(more);
        }
        assert.is(dropped, 1, "an op that came while an image was taken dropped it (in one of 8 tries)");
        const after = await pool.snapshot({ ...key, txnId: 8 });
        const b = await DataPlane.create({ macLog2: 14, ipLog2: 14, image: checkImage({ bytes: after }, { ...key, txnId: 8 }) });
        assert.equal(b.stats().macs, ref.stats().macs, "the later image holds the ops");
      } finally {
        await pool.stop();
      }
    });
  });

  test("earlyGo: the held workers forward before the configuration is validated only when the image is keyed by this very file, the store's last transaction and this build", async () => {
    await withLab(async (l) => {
      // an image of the default layout (what nvedge run makes), keyed as nvedge run keys it
      const cfgFile = join(l.dir, "nve.json");
      writeFileSync(cfgFile, JSON.stringify({ nve: "nve-a", note: "any text: only its SHA-256 counts here" }));
      const store = await openLmdbStore(join(l.dir, "store"));
      try {
        await store.transaction((tx) => tx.put("hvs", "hv-1", { hv: "hv-1", online: true, since: 1 }));
        const dp = await DataPlane.create();
        dp.apply(ops(l.trunk, l.underlay));
        const key = { ...imageKeyOf({}), txnId: store.lastTxnId!(), storeSchema: STORE_SCHEMA, config: "static ops", configFile: fileHash(cfgFile) };
        await writeImageFile(l.image, dp.snapshot(key));
        const config = { underlay: { port: l.underlay, ...UNDERLAY, udpPort: 4789, genevePort: 6081 }, ports: [{ name: l.trunk, hypervisors: ["hv-1"] }] };
        const early = (): EarlyWorkers => ({ config, io: "afpacket", imagePath: l.image, pool: startAfPacket({
          config, workers: 1, ring: { netns: l.ns.path, blockSize: 1 << 16, blockCount: 8, blockTimeoutMs: 1 }, idlePollMs: 20,
          dataplane: { imagePath: l.image }, hold: true }) });
        const tries: [string, () => void | Promise<void>, boolean][] = [
          ["the same file, transaction and build", () => {}, true],
          ["the configuration file edited", () => writeFileSync(cfgFile, readFileSync(cfgFile, "utf8") + " "), false],
          ["the store moved on", () => store.transaction((tx) => tx.put("hvs", "hv-2", { hv: "hv-2", online: true, since: 2 })), false],
        ];
        for (const [what, change, go] of tries) {
          await change();
          const e = early();
          const pool = await e.pool;
          try {
            assert.is(await earlyGo({ early: e, storeDir: join(l.dir, "store"), configFile: cfgFile }), go, what);
            if (!go) pool.go(false); // what run.ts does once it has checked the whole key
            const cap = await capture(l.ns, l.peer, 1, go ? 10_000 : 1500, ["udp", "port", "4789"]);
            injectFrames(l.ns, l.hv, [probe(1)]);
            assert.is((await cap.done).length, go ? 1 : 0, `${what}: ${go ? "forwarded from the image" : "empty tables"}`);
          } finally {
            await pool.stop();
          }
        }
      } finally {
        await store.close();
      }
    });
  });
}

test.run();
