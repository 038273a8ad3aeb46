// The flood's counters (issue 18: the fast path's head-end replication,
// assembly/pipeline/floodfast.ts, adds its transmit counters once per run of
// copies and once per frame on the VN, not once per copy): after a batch of
// broadcasts, every port's transmit frames and bytes and the VN's transmit
// frames are what the outputs themselves add up to, with a remote left out
// for want of a next hop too (its copy is not counted), and the same with the
// fast paths off (the full path, assembly/pipeline/access.ts, counts per copy).
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as F from "./support/frames.js";
import { fixtureDp } from "./support/dp-fixture.js";
import type { DataPlane } from "../host/dataplane/dataplane.js";

type Counters = ReturnType<DataPlane["counters"]>;

/** Per port: frames and bytes sent; per VN: frames sent; between two counter reads. */
function txDelta(a: Counters, b: Counters, vn: number) {
  const ports: Record<string, [number, number]> = {};
  for (const p of Object.keys(b.ports)) {
    const d: [number, number] = [b.ports[p].txFrames - a.ports[p].txFrames, b.ports[p].txBytes - a.ports[p].txBytes];
    if (d[0] || d[1]) ports[p] = d;
  }
  return { ports, vnTx: b.vns[String(vn)].txFrames - a.vns[String(vn)].txFrames, rx: b.frames.rx - a.frames.rx };
}

/** The same figures from the outputs. */
function fromOutputs(outs: { port: string; frame: Uint8Array }[]) {
  const ports: Record<string, [number, number]> = {};
  for (const o of outs) {
    const d = (ports[o.port] ??= [0, 0]);
    d[0]++;
    d[1] += o.frame.length;
  }
  return ports;
}

const BATCH = 5;

for (const v of F.VNS) {
  test(`IPv4 VN ${v.id} (${v.profile.encap}): a batch of broadcasts counts every copy it sent, and only those, on the fast and the full path`, async () => {
    const dp = await fixtureDp(4);
    const { L1 } = F.locals(v.id);
    const frames = Array.from({ length: BATCH }, (_, i) =>
      F.accessFrame(L1, F.BROADCAST, { family: 4, payloadLen: 20 + 7 * i, srcPort: 1000 + i }));
    const run = (label: string, copies: number) => {
      const seen: Record<string, unknown> = {};
      for (const fast of [true, false]) {
        dp.fastPaths(fast);
        const before = dp.counters();
        const outs = dp.run(F.ACC1, frames).map((o) => ({ port: o.port, frame: o.frame }));
        const d = txDelta(before, dp.counters(), v.id);
        assert.is(d.rx, BATCH, `${label}: ${BATCH} frames in (fast paths ${fast})`);
        assert.is(outs.filter((o) => o.port === F.UPLINK).length, BATCH * copies, `${label}: ${copies} tunnel copies per frame (fast paths ${fast})`);
        assert.equal(d.ports, fromOutputs(outs), `${label}: port transmit counters are the outputs' (fast paths ${fast})`);
        assert.is(d.vnTx, outs.length, `${label}: VN transmit frames are the outputs (fast paths ${fast})`);
        seen[String(fast)] = d;
      }
      dp.fastPaths(true);
      assert.equal(seen.true, seen.false, `${label}: the fast and the full path count the same`);
    };
    run("every remote", F.REMOTES.length);
    // a remote with no next hop (pipeline/nexthop.ts): its copy is left out, and not counted
    dp.apply([{ op: "nexthop", nve: F.remoteIp(F.REMOTES[1], 4), macs: [] }]);
    run("one remote without a next hop", F.REMOTES.length - 1);
  });
}

test.run();
