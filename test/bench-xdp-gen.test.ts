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
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kernelAllows, requireRootAnd, requireTool } from "./support/tools.js";
import { raceTopo as t, withGenerator, sendsTheTemplate, keepsToItsRate } from "./support/generator-checks.js";
import { buildXdpGen, encapFrame, decapFrame, xdpGenRefused } from "../bench/race.js";

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
    // paced, a call's page_pool holds 64 pages (its batch), so a few hundred frames are already pages used again and again
    test(`xdp-gen: every ${name} frame a kernel receiver sees is the template, the flow byte varying, also once its pages are recycled`, () =>
      withGenerator(buildXdpGen, (g, ns, a, b, dir) => sendsTheTemplate(g, ns, a, b, dir, frame)));
  }

  test("xdp-gen: paced, it sends no more than its rate over the time it ran", () =>
    withGenerator(buildXdpGen, async (g, ns, a, b, dir) => { await keepsToItsRate(g, ns, a, b, dir, encapFrame(t)); }));

  test.run(); // inside: a suite run with no test registered is a problem of its own (scripts/test.mjs)
}
