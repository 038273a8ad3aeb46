// The race's XDP generator (bench/native/xdp-gen.c, bench/bpf/xdp-gen.bpf.c,
// issue 11): what it puts on the wire must be the race's frame, every time.
// BPF_PROG_RUN's live frames are recycled with whatever was written into
// them, and a plain kernel receiver writes into an 802.1Q frame in place
// (skb_vlan_untag moves the MAC addresses over the tag): before the program
// rewrote the frame from its template on each run, the recycled frames went
// out untagged with broken MAC addresses, and every non-XDP DUT of the race
// dropped them ("the encap collapse"). Here a kernel receiver untags every
// frame, and a capture at the peer must show only the template, with the
// flow byte varying. And paced, it never sends more than its rate allows.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kernelAllows, requireRootAnd, requireTool } from "./support/tools.js";
import { tmpNetns, capture } from "./support/io-net.js";
import { buildXdpGen, encapFrame, decapFrame, xdpGenRefused, type RaceTopo } from "../bench/race.js";

const t: RaceTopo = {
  gen: "g", dut: "d", sink: "s", trunk: "nvl-trunk", underlay: "nvl-ul", vid: 10, vni: 5000,
  dutMac: "02:00:00:00:01:01", dutIp: "192.0.2.1", nextHopMac: "02:00:00:00:01:fe", remoteIp: "192.0.2.2", sinkMac: "02:00:00:00:01:02",
  vmMac: "02:00:5e:00:00:01", vmIp: "10.0.0.1", remoteVmMac: "02:00:5e:00:00:02", remoteVmIp: "10.0.0.2", genMac: "02:00:00:00:aa:01", workDir: "/nonexistent",
};

/** bench/race.ts xdpGenRefused, with the generator built in a scratch folder. */
function liveFramesRefused(): string | undefined {
  const dir = mkdtempSync(join(tmpdir(), "nvl-xg-"));
  try {
    const gen = buildXdpGen(dir);
    return typeof gen === "string" ? undefined : xdpGenRefused(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const tests = "the XDP generator's frames and pacing";
if (requireRootAnd(["clang", "cc", "ethtool", "tcpdump"], tests)
    && requireTool("libbpf-dev", existsSync("/usr/include/bpf/libbpf.h"), `${tests} (needs bpf/libbpf.h)`)
    && kernelAllows("BPF_PROG_RUN live frames", liveFramesRefused(), tests)) {
  for (const [name, frame] of [["encap (802.1Q, untagged in place by the receiver)", encapFrame(t)], ["decap (VXLAN)", decapFrame(t)]] as const) {
    test(`xdp-gen: every ${name} frame a kernel receiver sees is the template, the flow byte varying, also once its pages are recycled`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "nvl-xg-"));
      const ns = tmpNetns("xg");
      try {
        const gen = buildXdpGen(dir);
        if (typeof gen === "string") throw new Error(gen);
        const [a, b] = ns.veth("x");
        ns.run("ethtool", ["-K", b, "gro", "on"]); // NAPI at the peer: a veth takes XDP-sent frames only then
        const cap = await capture(ns, b, 3000, 8000);
        // 20,000 frames/s for 2 s: paced, a call's page_pool holds 64 pages (its batch), so
        // a few hundred frames are already pages used again and again
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
        // consecutive frames differ in it (the capture may miss some under load, never all)
        assert.ok(flows.size >= Math.min(256, frames.length) / 2, `the UDP source port's low byte took ${flows.size} values in ${frames.length} frames`);
      } finally {
        ns.remove();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test("xdp-gen: paced, it sends no more than its rate over the time it ran", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nvl-xg-"));
    const ns = tmpNetns("xg");
    try {
      const gen = buildXdpGen(dir);
      if (typeof gen === "string") throw new Error(gen);
      const [a, b] = ns.veth("x");
      ns.run("ethtool", ["-K", b, "gro", "on"]);
      const rate = 50_000;
      const r = await gen.run(ns.name, a, encapFrame(t), dir, 1000, rate);
      assert.ok(r && r.sent > 0, "it sent frames");
      // one frame a slot of 1/rate from its first run on: at most rate * seconds + 1
      assert.ok(r!.sent <= rate * r!.seconds + 1, `sent ${r!.sent} in ${r!.seconds} s at ${rate}/s`);
      const rx = JSON.parse(ns.run("ip", ["-s", "-j", "link", "show", b]))[0].stats64.rx.packets as number;
      assert.ok(rx <= r!.sent, `the peer received ${rx} of ${r!.sent}`);
    } finally {
      ns.remove();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test.run(); // inside: a suite run with no test registered is a problem of its own (scripts/test.mjs)
}
