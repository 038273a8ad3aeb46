// End to end through startAfPacket: real frames on veth pairs in a
// test-created `nvl-` namespace, the data plane running in worker threads.
//   access: a frame tagged 10 in on the trunk veth -> VXLAN out of the underlay veth
//   underlay: VXLAN in -> the frame tagged 10 out of the trunk veth
//   programming: apply() reaches every worker; a bad op is refused by all
// Expected frames come from the independent encoder (test/support/encoder.ts).
// Needs root (network namespaces, CAP_NET_RAW).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { startAfPacket, type WorkerPool } from "../host/io/afpacket.js";
import type { DpOp } from "../host/dataplane/ops.js";
import { DataPlaneError } from "../host/dataplane/dataplane.js";
import { requireRootAnd } from "./support/tools.js";
import { tmpNetns, injectFrames, capture, type Netns } from "./support/io-net.js";
import { ethernet, ipv4Packet, udp, overlayFrame, bytesDiff, ETH_IPV4, IPPROTO_UDP } from "./support/encoder.js";

const VM_MAC = "02:00:5e:00:00:01", REMOTE_MAC = "02:00:5e:00:00:02";
const UNDERLAY = { ip: "192.0.2.1", mac: "02:00:00:00:01:01", gatewayMac: "02:00:00:00:01:fe" };
const REMOTE_NVE = "192.0.2.2";

function ops(trunk: string, underlay: string): DpOp[] {
  return [
    { op: "underlay", port: underlay, ...UNDERLAY, udpPort: 4789 },
    { op: "port", port: trunk },
    { op: "vn", vn: 100, vni: 5000, profile: { encap: "vxlan", mtu: 1500, portSecurity: true, arpSuppress: true } },
    { op: "tag", port: trunk, tag: 10, vn: 100 },
    { op: "mac.local", vn: 100, mac: VM_MAC, port: trunk, active: true },
    { op: "ip", vn: 100, ip: "10.0.0.1", mac: VM_MAC },
    { op: "mac.remote", vn: 100, mac: REMOTE_MAC, nve: REMOTE_NVE },
    { op: "flood.join", vn: 100, nve: REMOTE_NVE },
  ];
}

/** An untagged IPv4/UDP frame between the VM and the remote MAC; `seq` goes in the source port. */
function inner(seq: number, fromVm = true): Uint8Array {
  const [src, dst] = fromVm ? ["10.0.0.1", "10.0.0.2"] : ["10.0.0.2", "10.0.0.1"];
  const payload = udp({ src, dst, srcPort: 1024 + seq, dstPort: 9, payload: new Uint8Array(18), checksum: "compute" });
  return ethernet({ dst: fromVm ? REMOTE_MAC : VM_MAC, src: fromVm ? VM_MAC : REMOTE_MAC, type: ETH_IPV4,
    payload: ipv4Packet({ src, dst, protocol: IPPROTO_UDP, payload }) });
}
const tagged = (f: Uint8Array, vid: number) => ethernet({ dst: macOf(f, 0), src: macOf(f, 6), tags: [{ vid }], type: ETH_IPV4, payload: f.subarray(14) });
const macOf = (f: Uint8Array, o: number) => [...f.subarray(o, o + 6)].map((b) => b.toString(16).padStart(2, "0")).join(":");

interface Lab { ns: Netns; hv: string; trunk: string; underlay: string; peer: string; pool?: WorkerPool }

async function withLab(workers: number, body: (l: Lab) => Promise<void>, ring: { blockTimeoutMs?: number } = {}): Promise<void> {
  const ns = tmpNetns("iop");
  const l: Lab = { ns, hv: "", trunk: "", underlay: "", peer: "" };
  try {
    [l.hv, l.trunk] = ns.veth("t");
    [l.underlay, l.peer] = ns.veth("u");
    const config = { underlay: { port: l.underlay, ...UNDERLAY, udpPort: 4789, genevePort: 6081 }, ports: [{ name: l.trunk, hypervisors: ["hv-1"] }] };
    l.pool = await startAfPacket({ config, workers, ring: { netns: ns.path, blockSize: 1 << 16, blockCount: 8, ...ring },
      dataplane: { macLog2: 10, ipLog2: 10 }, ops: ops(l.trunk, l.underlay), idlePollMs: 20 });
    await body(l);
  } finally {
    await l.pool?.stop();
    ns.remove();
  }
}

if (requireRootAnd([], "the packet I/O worker pool tests (network namespaces, CAP_NET_RAW)")) {
  test("a frame tagged 10 on the trunk leaves the underlay VXLAN-encapsulated (1 worker)", async () => {
    await withLab(1, async (l) => {
      const cap = await capture(l.ns, l.peer, 1, 4000);
      const f = inner(1);
      injectFrames(l.ns, l.hv, [tagged(f, 10)]);
      const [got] = await cap.done;
      assert.ok(got, "a frame reached the underlay peer");
      // The UDP source port is the encapsulator's flow hash (49152..65535): take it from the frame.
      const entropy = (got[34] << 8) | got[35];
      assert.ok(entropy >= 49152, `source port ${entropy} in the ephemeral range`);
      const want = overlayFrame({ srcMac: UNDERLAY.mac, dstMac: UNDERLAY.gatewayMac, src: UNDERLAY.ip, dst: REMOTE_NVE },
        { kind: "vxlan", vni: 5000, entropy }, f);
      assert.is(bytesDiff(got, want), "");
      const c = await l.pool!.counters();
      const frames = c.counters.frames as Record<string, number>;
      assert.is(frames.rx, 1);
      assert.is(frames.forwarded, 1);
      assert.is(c.io[l.trunk].rxFrames, 1);
      assert.is(c.io[l.underlay].txFrames, 1);
    });
  });

  test("VXLAN in on the underlay leaves the trunk tagged 10; 2 workers share the load and lose nothing", async () => {
    await withLab(2, async (l) => {
      const total = 64;
      const cap = await capture(l.ns, l.hv, total, 6000);
      const frames = [...Array(total).keys()].map((i) => overlayFrame(
        { srcMac: UNDERLAY.gatewayMac, dstMac: UNDERLAY.mac, src: REMOTE_NVE, dst: UNDERLAY.ip },
        { kind: "vxlan", vni: 5000, entropy: 49152 + i * 97 }, inner(i, false)));
      injectFrames(l.ns, l.peer, frames);
      const got = await cap.done;
      assert.is(got.length, total);
      // Fanout keeps a flow on one worker but not the order across flows: compare as sets.
      const key = (f: Uint8Array) => Buffer.from(f).toString("hex");
      const want = [...Array(total).keys()].map((i) => key(tagged(inner(i, false), 10))).sort();
      assert.equal(got.map(key).sort(), want);
      const c = await l.pool!.counters();
      const fr = c.counters.frames as Record<string, number>;
      assert.is(fr.rx, total);
      assert.is(fr.forwarded, total);
      assert.is(c.io[l.underlay].rxFrames, total);
      assert.is(c.io[l.trunk].txFrames, total);
      assert.is(c.perWorker.length, 2);
      assert.ok(c.perWorker.every((w) => w.rx > 0), `both workers got frames: ${JSON.stringify(c.perWorker)}`);
    });
  });

  test("apply() reaches every worker; a bad op is refused and changes nothing", async () => {
    await withLab(2, async (l) => {
      let err: Error | undefined;
      try {
        await l.pool!.apply([{ op: "tag.del", port: l.trunk, tag: 10 }, { op: "vn", vn: 0, vni: 1, profile: { encap: "vxlan", mtu: 1500 } }]);
      } catch (e) { err = e as Error; }
      assert.ok(err, "the bad op was refused");
      assert.match(err!.message, /^op 1\b/); // the DataPlane's message, naming the op at fault
      assert.instance(err, DataPlaneError);
      assert.is((err as DataPlaneError).index, 1);
      // Nothing changed: tag 10 still forwards, in whichever worker the flows land.
      let cap = await capture(l.ns, l.peer, 16, 4000);
      injectFrames(l.ns, l.hv, [...Array(16).keys()].map((i) => tagged(inner(i), 10)));
      assert.is((await cap.done).length, 16);
      // Now remove the VAP: once apply() resolves, no worker forwards tag 10 any more.
      await l.pool!.apply([{ op: "tag.del", port: l.trunk, tag: 10 }]);
      cap = await capture(l.ns, l.peer, 1, 1500);
      injectFrames(l.ns, l.hv, [...Array(16).keys()].map((i) => tagged(inner(100 + i), 10)));
      assert.is((await cap.done).length, 0);
      const c = await l.pool!.counters();
      assert.is((c.counters.drops as Record<string, number>)["unknown-vid"], 16);
    });
  });

  test("a batch whose floods overflow the output area is finished in a further call, nothing lost", async () => {
    // 200 remote VTEPs on the VN's flood list: a broadcast makes 200 copies,
    // so any batch of 41 or more makes more outputs than the 8192 the area
    // holds. The ring hands each frame over as it comes (TPACKET_V2): the 200
    // come in however many batches the worker's timing gives, not in one
    // block held by a timer as with V3; a worker busy sending a few batches'
    // thousands of copies finds the rest waiting together.
    const remotes = [...Array(200).keys()].map((i) => `192.0.2.${10 + i}`);
    await withLab(1, async (l) => {
      await l.pool!.apply(remotes.map((nve) => ({ op: "flood.join", vn: 100, nve }) as DpOp));
      const total = 200;
      const frames = [...Array(total).keys()].map((i) => {
        const f = inner(i);
        f.fill(0xff, 0, 6); // broadcast
        return tagged(f, 10);
      });
      const rx = () => JSON.parse(l.ns.run("ip", ["-s", "-j", "link", "show", l.peer]))[0].stats64.rx.packets as number;
      const before = rx();
      // One remote's copies, to check every input was processed once (not
      // the first ones twice): their inner UDP source ports (bytes 84-85).
      const cap = await capture(l.ns, l.peer, total, 8000, ["dst", "host", remotes[0]]);
      injectFrames(l.ns, l.hv, frames);
      const want = total * (remotes.length + 1); // + the REMOTE_NVE of ops()
      const deadline = Date.now() + 5000;
      while (rx() - before < want && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.is(rx() - before, want);
      const ports = (await cap.done).map((f) => (f[84] << 8) | f[85]).sort((a, b) => a - b);
      assert.equal(ports, [...Array(total).keys()].map((i) => 1024 + i));
      const c = await l.pool!.counters();
      assert.is(c.loop.outputs, want);
      assert.is(c.loop.unsent, 0);
      assert.is(c.loop.unprocessed, 0);
      assert.ok(c.loop.partial >= 1, `the output area filled at least once (batches ${c.loop.batches})`);
    });
  });

  // Failure injection (issue 17): a worker thread killed while the NVE runs must not leave a pool that
  // silently forwards part of the traffic: the pool fails as a whole (`closed` rejects naming the worker,
  // the other workers are stopped, apply() refuses), which `nvedge run` logs and exits 1 on (host/cli/run.ts).
  test("a worker thread killed: the pool fails as a whole, naming it; nothing keeps forwarding half the flows", async () => {
    await withLab(2, async (l) => {
      const pool = l.pool!;
      let cap = await capture(l.ns, l.peer, 16, 4000);
      injectFrames(l.ns, l.hv, [...Array(16).keys()].map((i) => tagged(inner(i), 10)));
      assert.is((await cap.done).length, 16, "forwarding before");
      const workers = (pool as unknown as { workers: import("node:worker_threads").Worker[] }).workers;
      const exits = workers.map((w) => new Promise<number>((r) => w.once("exit", r)));
      await workers[0].terminate(); // the thread dies (as on an abort inside it)
      const why = await pool.closed.then(() => undefined, (e: Error) => e);
      assert.ok(why, "closed rejected");
      assert.match(why!.message, /packet I\/O worker 0 exited/);
      await Promise.all(exits); // the other worker was stopped too
      let refused: Error | undefined;
      await pool.apply([{ op: "tag.del", port: l.trunk, tag: 10 }]).catch((e: Error) => { refused = e; });
      assert.match(refused?.message ?? "", /stopped/);
      cap = await capture(l.ns, l.peer, 1, 1500);
      injectFrames(l.ns, l.hv, [...Array(16).keys()].map((i) => tagged(inner(200 + i), 10)));
      assert.is((await cap.done).length, 0, "no worker forwards after the failure");
    });
  });

  test("a missing interface stops start-up with a clear error", async () => {
    const ns = tmpNetns("iop");
    try {
      const [, trunk] = ns.veth("t");
      let err: Error | undefined;
      try {
        const pool = await startAfPacket({ interfaces: [trunk, "nvl-nosuch9"], workers: 2, ring: { netns: ns.path, blockSize: 1 << 16, blockCount: 2 },
          dataplane: { macLog2: 10, ipLog2: 10 } });
        await pool.stop();
      } catch (e) { err = e as Error; }
      assert.ok(err);
      assert.is(err!.message, "interface nvl-nosuch9 does not exist");
    } finally { ns.remove(); }
  });
}

test.run();
