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
import { existsSync } from "node:fs";
import { requireRootAnd, requireTool } from "./support/tools.js";
import { raceTopo as t, withGenerator, sendsTheTemplate, keepsToItsRate, rxPackets } from "./support/generator-checks.js";
import { buildXdpLoop, encapFrame, decapFrame } from "../bench/race.js";

const tests = "the loop generator's frames, pacing and bounds";
if (requireRootAnd(["clang", "cc", "ethtool", "tcpdump"], tests)
    && requireTool("libbpf-dev", existsSync("/usr/include/bpf/libbpf.h"), `${tests} (needs bpf/libbpf.h)`)) {
  for (const [name, frame] of [["encap (802.1Q, untagged in place by the receiver)", encapFrame(t)], ["decap (VXLAN)", decapFrame(t)]] as const) {
    // 20,000 frames/s for 2 s from 128 frames in the loop: each went round hundreds of times
    test(`xdp-loop: every ${name} frame a kernel receiver sees is the template, the flow byte varying, lap after lap`, () =>
      withGenerator(buildXdpLoop, (g, ns, a, b, dir) => sendsTheTemplate(g, ns, a, b, dir, frame)));
  }

  test("xdp-loop: paced, it sends no more than its rate; flat out, more; after the run nothing of it is left", () =>
    withGenerator(buildXdpLoop, async (gen, ns, a, b, dir) => {
      const rx = await keepsToItsRate(gen, ns, a, b, dir, encapFrame(t));
      // the run's loop veths are gone and nothing arrives any more
      const links = JSON.parse(ns.run("ip", ["-j", "link", "show"])) as { ifname: string; xdp?: unknown }[];
      assert.equal(links.map((l) => l.ifname).sort(), ["lo", a, b].sort());
      assert.ok(links.every((l) => !l.xdp), "no XDP program left attached");
      await new Promise((res) => setTimeout(res, 200));
      assert.is(rxPackets(ns, b), rx, "frames still arrive after the run");
      // flat out, in the same time, it sends more than the paced rate (a generator that is not the bottleneck)
      const full = await gen.run(ns.name, a, encapFrame(t), dir, 500);
      assert.ok(full && full.sent / full.seconds > 50_000, `flat out ${full && full.sent} in ${full && full.seconds} s`);
    }));

  test.run(); // inside: a suite run with no test registered is a problem of its own (scripts/test.mjs)
}
