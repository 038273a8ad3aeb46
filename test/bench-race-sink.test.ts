// The race's sinks (bench/race.ts RACE_SINK, issue 11 session 11): the XDP
// sink at a counting end drops every frame before the stack sees it, yet the
// count the race reads there (the veth's rx_packets) stays exact; detached,
// the end is a plain stack receiver again (the DUT's readiness check and
// `verify`'s tcpdump need that); and a RACE_SINK the race does not know is
// refused with a clear error rather than measured as something else.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireRootAnd, requireTool } from "./support/tools.js";
import { tmpNetns, injectFrames } from "./support/io-net.js";
import { rxPackets, raceTopo } from "./support/generator-checks.js";
import { attachXdpSink, sinksFrom, sinkSuffix, encapFrame } from "../bench/race.js";

test("race sink: RACE_SINK takes stack, xdp or both (in that order, once each); anything else is refused by name", () => {
  assert.equal(sinksFrom(""), ["stack"]);
  assert.equal(sinksFrom("xdp"), ["xdp"]);
  assert.equal(sinksFrom("stack, xdp,stack"), ["stack", "xdp"]);
  assert.throws(() => sinksFrom("stack,nic"), /RACE_SINK: "nic" is not stack or xdp/);
  assert.is(sinkSuffix("stack"), "", "the stack's rows keep the names of before");
  assert.is(sinkSuffix("xdp"), "-xdpsink");
});

const tests = "the race's XDP sink (count exact, nothing reaches the stack, detached cleanly)";
if (requireRootAnd(["clang", "ping", "python3"], tests)
    && requireTool("libbpf-dev", existsSync("/usr/include/bpf/bpf_helpers.h"), `${tests} (needs bpf/bpf_helpers.h)`)) {
  test("race sink: behind the XDP sink every frame is counted once and none reaches the stack; detached, the stack answers again", () => {
    const dir = mkdtempSync(join(tmpdir(), "nvl-sink-"));
    // the sender in one namespace, the counting end in another (one namespace would answer its own address over lo)
    const ns0 = tmpNetns("sk0"), ns = tmpNetns("sk");
    try {
      const [a, b] = ["nvl-ska", "nvl-skb"];
      for (const n of [ns0, ns]) n.run("sysctl", ["-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
      ns0.run("ip", ["link", "add", a, "type", "veth", "peer", "name", b, "netns", ns.name]);
      ns0.run("ip", ["addr", "add", "10.9.0.1/24", "dev", a]);
      ns.run("ip", ["addr", "add", "10.9.0.2/24", "dev", b]);
      ns0.run("ip", ["link", "set", a, "up"]);
      ns.run("ip", ["link", "set", b, "up"]);
      // Permanent neighbour entries both ways: the counts below are of every
      // frame arriving at b, and a neighbour probe (ARP, RFC 826) from a, sent
      // when its entry for b goes stale after the unanswered pings, landed in
      // one window now and then (501 of 500).
      const macOf = (n: typeof ns, dev: string) => (JSON.parse(n.run("ip", ["-j", "link", "show", dev])) as { address: string }[])[0].address;
      ns0.run("ip", ["neigh", "replace", "10.9.0.2", "lladdr", macOf(ns, b), "dev", a, "nud", "permanent"]);
      ns.run("ip", ["neigh", "replace", "10.9.0.1", "lladdr", macOf(ns0, a), "dev", b, "nud", "permanent"]);
      const ping = () => { try { ns0.run("ping", ["-c", "2", "-W", "1", "10.9.0.2"]); return true; } catch { return false; } };
      assert.ok(ping(), "the stack answers before the sink");
      const frames = Array.from({ length: 500 }, (_, i) => { const f = Uint8Array.from(encapFrame(raceTopo).bytes); f[encapFrame(raceTopo).flowOff] = i & 0xff; return f; });
      const detach = attachXdpSink(dir, ns.name, b);
      let attached = true;
      try {
        const x = (JSON.parse(ns.run("ip", ["-j", "link", "show", b])) as { xdp?: unknown }[])[0].xdp;
        assert.ok(x, "an XDP program is attached at the counting end");
        const r0 = rxPackets(ns, b);
        injectFrames(ns0, a, frames);
        assert.is(rxPackets(ns, b) - r0, 500, "every frame counted once at the sink");
        assert.not.ok(ping(), "nothing reaches the stack behind the XDP sink (no echo reply)");
      } finally {
        detach();
        attached = false;
      }
      assert.not.ok(attached);
      assert.not.ok((JSON.parse(ns.run("ip", ["-j", "link", "show", b])) as { xdp?: unknown }[])[0].xdp, "no XDP program left");
      const r1 = rxPackets(ns, b);
      injectFrames(ns0, a, frames);
      assert.is(rxPackets(ns, b) - r1, 500, "the stack counts the same frames alike");
      assert.ok(ping(), "detached, the stack answers again");
    } finally {
      ns0.remove();
      ns.remove();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
