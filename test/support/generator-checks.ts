// The checks every one of the race's BPF generators must pass (bench/race.ts:
// xdp-gen, xdp-loop; test/bench-xdp-gen.test.ts, test/bench-xdp-loop.test.ts).
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tmpNetns, capture, type Netns } from "./io-net.js";
import type { Generator, RaceFrame, RaceTopo } from "../../bench/race.js";

/** A race topology's addresses for the frames (encapFrame, decapFrame); no namespace of it is made. */
export const raceTopo: RaceTopo = {
  gen: "g", dut: "d", sink: "s", trunk: "nvl-trunk", underlay: "nvl-ul", vid: 10, vni: 5000,
  dutMac: "02:00:00:00:01:01", dutIp: "192.0.2.1", nextHopMac: "02:00:00:00:01:fe", remoteIp: "192.0.2.2", sinkMac: "02:00:00:00:01:02",
  vmMac: "02:00:5e:00:00:01", vmIp: "10.0.0.1", remoteVmMac: "02:00:5e:00:00:02", remoteVmIp: "10.0.0.2", genMac: "02:00:00:00:aa:01", workDir: "/nonexistent",
};

export const rxPackets = (ns: Netns, dev: string) => JSON.parse(ns.run("ip", ["-s", "-j", "link", "show", dev]))[0].stats64.rx.packets as number;

/**
 * Builds the generator in a scratch folder and runs `body` with it, a scratch
 * namespace and a veth pair in it whose receiving end `b` runs NAPI (GRO on:
 * a veth takes XDP-sent frames only then); removes them all after.
 */
export async function withGenerator(build: (dir: string) => Generator | string, body: (g: Generator, ns: Netns, a: string, b: string, dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "nvl-xg-"));
  const ns = tmpNetns("xg");
  try {
    const gen = build(dir);
    if (typeof gen === "string") throw new Error(gen);
    const [a, b] = ns.veth("x");
    ns.run("ethtool", ["-K", b, "gro", "on"]);
    await body(gen, ns, a, b, dir);
  } finally {
    ns.remove();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Every frame a kernel receiver at `b` sees, sent at 20,000/s for 2 s, is
 * the template with its flow byte varying (the receiver untags an 802.1Q
 * frame in place: a generator that sends the same memory again must not
 * send what the receiver wrote).
 */
export async function sendsTheTemplate(gen: Generator, ns: Netns, a: string, b: string, dir: string, frame: RaceFrame): Promise<void> {
  const cap = await capture(ns, b, 3000, 8000);
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
}

/** Paced at 50,000/s for 1 s it sends at most rate × seconds + 1, and `b` receives no more than that; returns what `b` received. */
export async function keepsToItsRate(gen: Generator, ns: Netns, a: string, b: string, dir: string, frame: RaceFrame): Promise<number> {
  const rate = 50_000;
  const r = await gen.run(ns.name, a, frame, dir, 1000, rate);
  assert.ok(r && r.sent > 0, "it sent frames");
  // one frame a slot of 1/rate from its first run on: at most rate * seconds + 1
  assert.ok(r!.sent <= rate * r!.seconds + 1, `sent ${r!.sent} in ${r!.seconds} s at ${rate}/s`);
  const rx = rxPackets(ns, b);
  assert.ok(rx <= r!.sent, `the peer received ${rx} of ${r!.sent}`);
  return rx;
}
