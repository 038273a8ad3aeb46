// The race's loop generator (bench/native/xdp-loop.c, bench/bpf/xdp-loop.bpf.c,
// issue 11), used where the kernel refuses xdp-gen's BPF_PROG_RUN live
// frames: what it puts on the wire must be the race's frame, every time,
// though the same few frames go round its loop millions of times and a
// plain kernel receiver writes into an 802.1Q frame in place (skb_vlan_untag);
// paced, it never sends more than its rate allows; and it is bounded: when a
// run ends, nothing of it is left (its veth pair gone, no program attached,
// no frame still arriving).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireRootAnd, requireTool } from "./support/tools.js";
import { tmpNetns, capture } from "./support/io-net.js";
import { buildXdpLoop, encapFrame, decapFrame, type RaceTopo } from "../bench/race.js";

const t: RaceTopo = {
  gen: "g", dut: "d", sink: "s", trunk: "nvl-trunk", underlay: "nvl-ul", vid: 10, vni: 5000,
  dutMac: "02:00:00:00:01:01", dutIp: "192.0.2.1", nextHopMac: "02:00:00:00:01:fe", remoteIp: "192.0.2.2", sinkMac: "02:00:00:00:01:02",
  vmMac: "02:00:5e:00:00:01", vmIp: "10.0.0.1", remoteVmMac: "02:00:5e:00:00:02", remoteVmIp: "10.0.0.2", genMac: "02:00:00:00:aa:01", workDir: "/nonexistent",
};

const rxPackets = (ns: ReturnType<typeof tmpNetns>, dev: string) => JSON.parse(ns.run("ip", ["-s", "-j", "link", "show", dev]))[0].stats64.rx.packets as number;

const tests = "the loop generator's frames, pacing and bounds";
if (requireRootAnd(["clang", "cc", "ethtool", "tcpdump"], tests)
    && requireTool("libbpf-dev", existsSync("/usr/include/bpf/libbpf.h"), `${tests} (needs bpf/libbpf.h)`)) {
  for (const [name, frame] of [["encap (802.1Q, untagged in place by the receiver)", encapFrame(t)], ["decap (VXLAN)", decapFrame(t)]] as const) {
    test(`xdp-loop: every ${name} frame a kernel receiver sees is the template, the flow byte varying, lap after lap`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "nvl-xl-"));
      const ns = tmpNetns("xl");
      try {
        const gen = buildXdpLoop(dir);
        if (typeof gen === "string") throw new Error(gen);
        const [a, b] = ns.veth("x");
        ns.run("ethtool", ["-K", b, "gro", "on"]); // NAPI at the peer: a veth takes XDP-sent frames only then
        const cap = await capture(ns, b, 3000, 8000);
        // 20,000 frames/s for 2 s from 128 frames in the loop: each went round hundreds of times
        const r = await gen.run(ns.name, a, frame, dir, 2000, 20_000);
        const frames = await cap.done;
        assert.ok(r && r.sent > 0, "it sent frames");
        assert.ok(frames.length >= 300, `captured ${frames.length} frames`);
        const want = Buffer.from(frame.bytes);
        const flows = new Set<number>();
        for (const [i, f] of frames.entries()) {
          const got = Buffer.from(f);
          flows.add(got[frame.flowOff]);
          got[frame.flowOff] = want[frame.flowOff];
          if (!got.equals(want)) assert.unreachable(`frame ${i} of ${frames.length}: ${got.toString("hex")}, want ${want.toString("hex")}`);
        }
        assert.ok(flows.size >= Math.min(256, frames.length) / 2, `the UDP source port's low byte took ${flows.size} values in ${frames.length} frames`);
      } finally {
        ns.remove();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test("xdp-loop: paced, it sends no more than its rate; flat out, more; after the run nothing of it is left", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nvl-xl-"));
    const ns = tmpNetns("xl");
    try {
      const gen = buildXdpLoop(dir);
      if (typeof gen === "string") throw new Error(gen);
      const [a, b] = ns.veth("x");
      ns.run("ethtool", ["-K", b, "gro", "on"]);
      const rate = 50_000;
      const r = await gen.run(ns.name, a, encapFrame(t), dir, 1000, rate);
      assert.ok(r && r.sent > 0, "it sent frames");
      // one frame a slot of 1/rate from its first lap on: at most rate * seconds + 1
      assert.ok(r!.sent <= rate * r!.seconds + 1, `sent ${r!.sent} in ${r!.seconds} s at ${rate}/s`);
      const rx = rxPackets(ns, b);
      assert.ok(rx <= r!.sent, `the peer received ${rx} of ${r!.sent}`);
      // the run's loop veths are gone and nothing arrives any more
      const links = JSON.parse(ns.run("ip", ["-j", "link", "show"])) as { ifname: string; xdp?: unknown }[];
      assert.equal(links.map((l) => l.ifname).sort(), ["lo", a, b].sort());
      assert.ok(links.every((l) => !l.xdp), "no XDP program left attached");
      await new Promise((res) => setTimeout(res, 200));
      assert.is(rxPackets(ns, b), rx, "frames still arrive after the run");
      // flat out, in the same time, it sends more than the paced rate (a generator that is not the bottleneck)
      const full = await gen.run(ns.name, a, encapFrame(t), dir, 500);
      assert.ok(full && full.sent / full.seconds > rate, `flat out ${full && full.sent} in ${full && full.seconds} s`);
    } finally {
      ns.remove();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.run(); // inside: a suite run with no test registered is a problem of its own (scripts/test.mjs)
}
