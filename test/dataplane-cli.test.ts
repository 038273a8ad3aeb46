// `nvedge pcap` and `nvedge trace` through the real CLI (INTERFACES.md), as a
// child process: captures in, DIR/PORT.pcap and DIR/counters.json out, the
// output frames compared with the independent encoder; trace's decisions;
// the errors a user gets for a bad capture, port, config or frame.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { readPcap, writePcap, encodePcap, type PcapPacket } from "../host/pcap/pcap.js";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { eqBytes, flowLabelOf } from "./support/dp-fixture.js";
import { dissectFile, problems, stack, tsharkAvailable } from "./support/tshark.js";
import { requireTool } from "./support/tools.js";

const TSHARK = requireTool("tshark", tsharkAvailable, "the tshark dissection of nvedge pcap's output");

// dist/test/x.js → the repository root.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = join(ROOT, "bin", "nvedge.js");

function nvedge(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
function tmp(): string {
  return mkdtempSync(join(tmpdir(), "nvl-cli-"));
}
function writeConfig(dir: string, f: F.Family): string {
  const file = join(dir, "nve.json");
  writeFileSync(file, JSON.stringify(F.fixtureConfig(f), null, 2));
  return file;
}
function pkt(frame: Uint8Array, tsSec: number, tsUsec = 0): PcapPacket {
  return { frame, tsSec, tsUsec, origLen: frame.length };
}

for (const family of [4, 6] as F.Family[]) {
  test(`nvedge pcap (IPv${family} underlay): captures in, per-port captures and counters.json out, bytes as the encoder says`, () => {
    const dir = tmp();
    try {
      const cfg = writeConfig(dir, family);
      const b = F.locals(100), g = F.locals(200);
      const rb = F.remotes(100), rg = F.remotes(200);
      const encap = F.accessFrame(b.L1, rb.R1, { pcp: 3 });
      const hairpin = F.accessFrame(b.L1, b.L2);
      const bcast = F.accessFrame(b.L1, F.BROADCAST);
      const spoof = F.accessFrame({ ...b.L1, mac: "02:00:5e:99:99:99" }, rb.R1);
      const decapInner = F.innerFrame(rg.R1, g.L2);
      const decap = F.fromRemote(F.REMOTES[0], family, 200, decapInner);
      const unknownVni = F.fromRemote(F.REMOTES[0], family, 100, decapInner, {}, E.vxlan({ vni: 4242 }, decapInner));
      // Interleaved timestamps: the command merges the two captures in time order.
      writePcap(join(dir, "acc1-in.pcap"), [pkt(encap, 100), pkt(hairpin, 102), pkt(bcast, 104), pkt(spoof, 106)]);
      writePcap(join(dir, "up-in.pcap"), [pkt(decap, 101, 500), pkt(unknownVni, 105)]);
      const out = join(dir, "out");
      const r = nvedge(["pcap", "--config", cfg, "--in", `${F.ACC1}=${join(dir, "acc1-in.pcap")}`, "--in", `${F.UPLINK}=${join(dir, "up-in.pcap")}`,
                        "--out-dir", out]);
      assert.is(r.code, 0, `exit ${r.code}: ${r.stderr}`);
      assert.equal(readdirSync(out).sort(), ["acc1.pcap", "acc2.pcap", "counters.json", "uplink.pcap"]);

      const up = readPcap(join(out, "uplink.pcap")).packets;
      const a2 = readPcap(join(out, "acc2.pcap")).packets;
      const a1 = readPcap(join(out, "acc1.pcap")).packets;
      assert.is(a1.length, 0, "nothing goes back out of acc1");
      // uplink: the unicast encap (t=100) then the three flood copies (t=104).
      assert.equal(up.map((p) => p.tsSec), [100, 104, 104, 104], "uplink timestamps follow their inputs");
      const v = E.viewOverlay(up[0].frame, "vxlan");
      eqBytes(up[0].frame, E.overlayFrame({ ...F.underlayTo(F.REMOTES[0], family, 24), flowLabel: flowLabelOf(v, "vxlan") },
        { kind: "vxlan", vni: 5000, entropy: v.entropy }, E.stripTag(encap)), "encap in uplink.pcap");
      const floodDsts = up.slice(1).map((p) => E.hex(p.frame.subarray(family === 4 ? 30 : 38, family === 4 ? 34 : 54))).sort();
      assert.equal(floodDsts, F.REMOTES.map((x) => E.hex(E.ip(F.remoteIp(x, family)))).sort(), "one flood copy per remote");
      // acc2: the decap (t=101.5), the hairpin (t=102), the flood copy (t=104).
      assert.equal(a2.map((p) => [p.tsSec, p.tsUsec]), [[101, 500], [102, 0], [104, 0]]);
      eqBytes(a2[0].frame, E.insertTag(decapInner, F.tagOf(200, F.ACC2)), "decap in acc2.pcap");
      eqBytes(a2[1].frame, E.insertTag(E.stripTag(hairpin), F.tagOf(100, F.ACC2)), "hairpin in acc2.pcap");
      eqBytes(a2[2].frame, E.insertTag(E.stripTag(bcast), F.tagOf(100, F.ACC2)), "flood copy in acc2.pcap");

      const c = JSON.parse(readFileSync(join(out, "counters.json"), "utf8")) as F.Counters;
      assert.equal(c.frames, { rx: 6, forwarded: 4, outputs: 7, dropped: 2 });
      assert.is(c.drops["spoofed-mac"], 1);
      assert.is(c.drops["unknown-vni"], 1);
      assert.is(Object.values(c.drops).reduce((x, y) => x + y, 0), 2);
      assert.ok("vxlan-flags" in c.drops && "geneve-critical-option" in c.drops, "every reason by name, zeros included");
      assert.equal([c.ports[F.ACC1].rxFrames, c.ports[F.UPLINK].rxFrames, c.ports[F.UPLINK].txFrames, c.ports[F.ACC2].txFrames], [4, 2, 4, 3]);
      assert.is(c.vns["100"].encap, 1);
      assert.is(c.vns["200"].decap, 1);
      assert.match(r.stdout, /6 frames in/);
      // The captures the command wrote are what tshark expects of classic pcap: read and dissected cleanly.
      if (TSHARK) {
        for (const port of [F.UPLINK, F.ACC2]) {
          const d = dissectFile(join(out, `${port}.pcap`));
          assert.is(d.length, port === F.UPLINK ? 4 : 3);
          for (const fr of d) assert.equal(problems(fr), [], `${port}.pcap frame ${fr.number} (${stack(fr)})`);
          if (port === F.UPLINK) assert.ok(d.every((fr) => stack(fr).includes(":udp:vxlan:eth:")), "uplink.pcap holds VXLAN");
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("nvedge pcap: errors name the culprit (bad capture file + offset, unknown port, bad config key) and exit non-zero", () => {
  const dir = tmp();
  try {
    const cfg = writeConfig(dir, 4);
    const out = join(dir, "out");
    // A capture cut inside its second record.
    const good = encodePcap([new Uint8Array(60), new Uint8Array(60)]);
    const cut = join(dir, "cut.pcap");
    writeFileSync(cut, good.subarray(0, good.length - 7));
    let r = nvedge(["pcap", "--config", cfg, "--in", `${F.ACC1}=${cut}`, "--out-dir", out]);
    assert.is(r.code, 1, `truncated capture: exit ${r.code}`);
    assert.match(r.stderr, new RegExp(`${cut.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: offset 116: truncated packet 2`));
    assert.not.ok(existsSync(out), "nothing written after a bad input");
    r = nvedge(["pcap", "--config", cfg, "--in", `${F.ACC1}=${join(dir, "missing.pcap")}`, "--out-dir", out]);
    assert.is(r.code, 1);
    assert.match(r.stderr, /missing\.pcap: offset 0: cannot read: ENOENT/);
    // A port that is not in the config.
    writePcap(join(dir, "ok.pcap"), [new Uint8Array(60)]);
    r = nvedge(["pcap", "--config", cfg, "--in", `eth9=${join(dir, "ok.pcap")}`, "--out-dir", out]);
    assert.is(r.code, 2);
    assert.match(r.stderr, /eth9/);
    // --in without PORT=.
    r = nvedge(["pcap", "--config", cfg, "--in", join(dir, "ok.pcap"), "--out-dir", out]);
    assert.is(r.code, 2);
    assert.match(r.stderr, /PORT=FILE/);
    // A bad configuration value names the file and key.
    const bad = F.fixtureConfig(4) as { vns: { profile: { encap: string } }[] };
    bad.vns[1].profile.encap = "gre";
    writeFileSync(join(dir, "bad.json"), JSON.stringify(bad));
    r = nvedge(["pcap", "--config", join(dir, "bad.json"), "--in", `${F.ACC1}=${join(dir, "ok.pcap")}`, "--out-dir", out]);
    assert.is(r.code, 2);
    assert.match(r.stderr, /bad\.json: vns\.1\.profile\.encap/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nvedge trace: prints the VN, the lookup, the action and the outputs; or the drop reason", () => {
  const dir = tmp();
  try {
    const cfg = writeConfig(dir, 4);
    const { L1, L2, L3 } = F.locals(200);
    const { R1 } = F.remotes(200);
    const encap = F.accessFrame(L1, R1);
    let r = nvedge(["trace", "--config", cfg, "--port", F.ACC1, "--frame", E.hex(encap)]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /\bvn 200\b/i, "names the VN");
    assert.match(r.stdout, /lookup[^\n]*remote[^\n]*192\.0\.2\.11/i, "the lookup result and the NVE");
    assert.match(r.stdout, /action[^\n]*encap/i, "the action");
    assert.match(r.stdout, /uplink/);
    assert.not.match(r.stdout, /drop/i);

    // --json: the output frame is the encoder's Geneve frame.
    r = nvedge(["trace", "--config", cfg, "--port", F.ACC1, "--frame", E.hex(encap), "--json"]);
    assert.is(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as { steps: string[]; drop: string | null; outputs: { port: string; frame: string }[] };
    assert.is(j.drop, null);
    assert.is(j.outputs.length, 1);
    const got = E.fromHex(j.outputs[0].frame);
    const v = E.viewOverlay(got, "geneve");
    eqBytes(got, E.overlayFrame(F.underlayTo(F.REMOTES[0], 4), { kind: "geneve", vni: 6000, entropy: v.entropy }, E.stripTag(encap)),
      "trace --json output");

    // Hairpin: local lookup and the egress port.
    r = nvedge(["trace", "--config", cfg, "--port", F.ACC1, "--frame", E.hex(F.accessFrame(L1, L2))]);
    assert.match(r.stdout, /lookup[^\n]*local/i);
    assert.match(r.stdout, /acc2/);

    // Drops, with colons in the hex as a user might paste it.
    const colon = (b: Uint8Array) => E.hex(b).match(/../g)!.join(":");
    r = nvedge(["trace", "--config", cfg, "--port", F.ACC1, "--frame", colon(E.udpFrame({ dst: R1.mac, src: L1.mac, tag: { vid: 99 },
                                                                                     srcIp: L1.ip4, dstIp: R1.ip4 }))]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /drop[^\n]*unknown-vid/);
    r = nvedge(["trace", "--config", cfg, "--port", F.ACC1, "--frame", E.hex(F.accessFrame(L3, R1))]);
    assert.match(r.stdout, /vn 200/i);
    assert.match(r.stdout, /drop[^\n]*vnic-inactive/);
    r = nvedge(["trace", "--config", cfg, "--port", F.UPLINK, "--frame",
                E.hex(F.fromRemote(F.REMOTES[0], 4, 200, F.innerFrame(R1, L1), {}, E.geneve({ vni: 6000, oam: true }, F.innerFrame(R1, L1))))]);
    assert.match(r.stdout, /drop[^\n]*geneve-oam/);

    // Bad usage.
    r = nvedge(["trace", "--config", cfg, "--port", F.ACC1, "--frame", "abc"]);
    assert.is(r.code, 2);
    assert.match(r.stderr, /--frame/);
    r = nvedge(["trace", "--config", cfg, "--port", "eth9", "--frame", E.hex(encap)]);
    assert.is(r.code, 2);
    assert.match(r.stderr, /eth9/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
