// The VN profile's ACL and QoS through the real CLI (issue 14, INTERFACES.md):
// `nvedge pcap` with an ACL and qos.pcp in the file (exact bytes against the
// independent encoder, acl-deny in counters.json), one clear error naming the
// key for a malformed rule (`run`/`pcap` exit 2, `config check` with its JSON
// path), and `nvedge show acl` on a running NVE counting each rule's denies.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readPcap, writePcap } from "../host/pcap/pcap.js";
import { adminRequest } from "../host/control/admin.js";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { eqBytes } from "./support/dp-fixture.js";
import { freePort, runNvedge, spawnNvedge, until } from "./support/control-harness.js";

const ACL = [
  { action: "deny", proto: "tcp", dstPort: 22 },
  { action: "allow", proto: "tcp", dstPort: "80-90" },
  { action: "allow", proto: "udp" },
];
function aclConfig(dir: string, acl: unknown[] = ACL): string {
  const cfg = F.fixtureConfig(4) as { vns: { id: number; profile: Record<string, unknown> }[] };
  const v = cfg.vns.find((x) => x.id === 100)!;
  v.profile = { ...v.profile, acl, aclDefault: "deny", qos: { pcp: 4 } };
  const file = join(dir, "nve.json");
  writeFileSync(file, JSON.stringify(cfg, null, 2));
  return file;
}
const { L1 } = F.locals(100);
const { R1 } = F.remotes(100);
const tcpFrom = (dstPort: number) => E.l4Frame({ dst: R1.mac, src: L1.mac, tag: F.tagOf(100, F.ACC1), srcIp: L1.ip4, dstIp: R1.ip4,
  protocol: E.IPPROTO_TCP, l4: E.tcp({ src: L1.ip4, dst: R1.ip4, srcPort: 40000, dstPort }) });
const pkt = (frame: Uint8Array, tsSec: number) => ({ frame, tsSec, tsUsec: 0, origLen: frame.length });

test("nvedge pcap: an ACL allows, denies and defaults; qos.pcp on decap; bytes as the encoder says", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-acl-"));
  try {
    const cfg = aclConfig(dir);
    const allowed = tcpFrom(80);
    writePcap(join(dir, "a.pcap"), [pkt(allowed, 1), pkt(tcpFrom(22), 2), pkt(tcpFrom(443), 3)]);
    const inner = F.innerFrame(R1, L1);
    writePcap(join(dir, "u.pcap"), [pkt(F.fromRemote(F.REMOTES[0], 4, 100, inner), 4)]);
    const out = join(dir, "out");
    const r = await runNvedge(["pcap", "--config", cfg, "--in", `${F.ACC1}=${join(dir, "a.pcap")}`, "--in", `${F.UPLINK}=${join(dir, "u.pcap")}`, "--out-dir", out]);
    assert.is(r.code, 0, r.err);
    const up = readPcap(join(out, "uplink.pcap")).packets;
    assert.is(up.length, 1, "only tcp/80 left");
    const v = E.viewOverlay(up[0].frame, "vxlan");
    eqBytes(up[0].frame, E.overlayFrame(F.underlayTo(F.REMOTES[0], 4, 0), { kind: "vxlan", vni: 5000, entropy: v.entropy }, E.stripTag(allowed)), "tcp/80");
    const a1 = readPcap(join(out, "acc1.pcap")).packets;
    assert.is(a1.length, 1);
    eqBytes(a1[0].frame, E.insertTag(inner, F.tagOf(100, F.ACC1, 4)), "decap with qos.pcp 4 (udp allowed)");
    const c = JSON.parse(readFileSync(join(out, "counters.json"), "utf8"));
    assert.is(c.drops["acl-deny"], 2);
    assert.equal(c.acl["100"], { default: 1, rules: { 0: 1, 1: 0, 2: 0 } });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nvedge pcap: the policer over a burst at the captures' time (qos.rateMbps 8, burstKb 4): bytes as the encoder says, the rest policed", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-pol-"));
  try {
    const cfgObj = F.fixtureConfig(4) as { vns: { id: number; profile: Record<string, unknown> }[] };
    cfgObj.vns.find((x) => x.id === 100)!.profile.qos = { rateMbps: 8, burstKb: 4 }; // 1000 bytes per ms, 4096 deep
    const cfg = join(dir, "nve.json");
    writeFileSync(cfg, JSON.stringify(cfgObj));
    const frame = F.accessFrame(L1, R1, { payloadLen: 1000 - 46 });
    assert.is(frame.length, 1000);
    const at = (ms: number) => ({ frame, tsSec: Math.floor(ms / 1000), tsUsec: (ms % 1000) * 1000, origLen: frame.length });
    // a burst of 6 at t = 1 s, 3 more 2 ms later, 5 more a second later
    writePcap(join(dir, "a.pcap"), [...Array(6).fill(1000), ...Array(3).fill(1002), ...Array(5).fill(2002)].map(at));
    const o = join(dir, "out");
    const r = await runNvedge(["pcap", "--config", cfg, "--in", `${F.ACC1}=${join(dir, "a.pcap")}`, "--out-dir", o]);
    assert.is(r.code, 0, r.err);
    const up = readPcap(join(o, "uplink.pcap")).packets;
    const ms = (p: { tsSec: number; tsUsec: number }) => p.tsSec * 1000 + p.tsUsec / 1000;
    assert.equal(up.map(ms), [1000, 1000, 1000, 1000, 1002, 1002, 2002, 2002, 2002, 2002], "4 of the burst, 2 after 2 ms, 4 after a second (the depth)");
    for (const p of up) {
      const v = E.viewOverlay(p.frame, "vxlan");
      eqBytes(p.frame, E.overlayFrame(F.underlayTo(F.REMOTES[0], 4, 0), { kind: "vxlan", vni: 5000, entropy: v.entropy }, E.stripTag(frame)), "policed VN's encap");
    }
    assert.is(JSON.parse(readFileSync(join(o, "counters.json"), "utf8")).drops.policed, 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nvedge pcap: a VNIC with two MACs in the config is policed as one bucket (a burst from both: 4 of 6 pass, 2 policed)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-pol-"));
  try {
    type Cfg = { vns: { id: number; profile: Record<string, unknown> }[];
      vnics: { vns: { vn: number; addrs: { mac: string; ips?: string[] }[] }[] }[] };
    const cfgObj = F.fixtureConfig(4) as Cfg;
    cfgObj.vns.find((x) => x.id === 100)!.profile.qos = { rateMbps: 8, burstKb: 4 }; // 1000 bytes per ms, 4096 deep
    // L1's VNIC gets a second MAC (a second address, INTERFACES.md vnics[].vns[].addrs)
    const L1b = { ...L1, mac: "02:00:5e:01:01:02", ip4: "10.1.0.201", ip6: "2001:db8:1::c9" };
    const b = cfgObj.vnics.flatMap((n) => n.vns).find((x) => x.vn === 100 && x.addrs.some((a) => a.mac === L1.mac))!;
    b.addrs.push({ mac: L1b.mac, ips: [L1b.ip4] });
    const cfg = join(dir, "nve.json");
    writeFileSync(cfg, JSON.stringify(cfgObj));
    const f1 = F.accessFrame(L1, R1, { payloadLen: 1000 - 46 }), f2 = F.accessFrame(L1b, R1, { payloadLen: 1000 - 46 });
    writePcap(join(dir, "a.pcap"), [f1, f2, f1, f2, f1, f2].map((frame) => pkt(frame, 1)));
    const o = join(dir, "out");
    const r = await runNvedge(["pcap", "--config", cfg, "--in", `${F.ACC1}=${join(dir, "a.pcap")}`, "--out-dir", o]);
    assert.is(r.code, 0, r.err);
    const up = readPcap(join(o, "uplink.pcap")).packets;
    assert.is(up.length, 4, "one 4096-byte bucket for the VNIC, not one per MAC");
    [f1, f2, f1, f2].forEach((frame, i) => {
      const v = E.viewOverlay(up[i].frame, "vxlan");
      eqBytes(up[i].frame, E.overlayFrame(F.underlayTo(F.REMOTES[0], 4, 0), { kind: "vxlan", vni: 5000, entropy: v.entropy }, E.stripTag(frame)), `frame ${i}`);
    });
    assert.is(JSON.parse(readFileSync(join(o, "counters.json"), "utf8")).drops.policed, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a malformed ACL rule or QoS value: one clear line naming the key, exit 2 (pcap, run), config check lists its JSON path", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-acl-"));
  try {
    const cfg = aclConfig(dir, [{ action: "deny", proto: "tcp", dstPort: 22 }, { action: "deny", proto: "udp", dstPort: "99999" }]);
    writePcap(join(dir, "a.pcap"), []);
    let r = await runNvedge(["pcap", "--config", cfg, "--in", `${F.ACC1}=${join(dir, "a.pcap")}`, "--out-dir", join(dir, "o")]);
    assert.is(r.code, 2, r.err);
    assert.is(r.err.trim().split("\n").length, 1, r.err);
    assert.match(r.err, /vns\.0\.profile\.acl\.1\.dstPort: not a port \(0\.\.65535\) or a "lo-hi" range: "99999"/);
    r = await runNvedge(["run", "--config", cfg, "--io", "none", "--memory-store", "--listen", "127.0.0.1:1"]);
    assert.is(r.code, 2, r.err);
    assert.match(r.err, /vns\.0\.profile\.acl\.1\.dstPort/);
    r = await runNvedge(["config", "check", cfg, "--json"]);
    assert.is(r.code, 2, r.err);
    const problems = JSON.parse(r.out).problems ?? JSON.parse(r.out);
    assert.ok(JSON.stringify(problems).includes("$.vns[0].profile.acl[1].dstPort"), r.out);
    const q = aclConfig(dir);
    const j = JSON.parse(readFileSync(q, "utf8"));
    j.vns[0].profile.qos = { rateMbps: -1 };
    writeFileSync(q, JSON.stringify(j));
    r = await runNvedge(["config", "check", q]);
    assert.is(r.code, 2);
    assert.match(r.out + r.err, /\$\.vns\[0\]\.profile\.qos\.rateMbps/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nvedge show acl: each VN's rules in order with the frames each denied, on a running NVE", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-acl-"));
  const cfg = aclConfig(dir);
  const S = ["--store", `${dir}/st`];
  const nve = await spawnNvedge(["run", "--config", cfg, ...S, "--io", "none", "--listen", `127.0.0.1:${await freePort()}`]);
  const sock = `${dir}/st/nvedge.sock`;
  try {
    await until(async () => adminRequest(sock, { cmd: "show", what: "ports" }).then(() => true, () => false), 30_000, `admin socket (${nve.err()})`);
    const trace = (f: Uint8Array) => adminRequest(sock, { cmd: "trace", port: F.ACC1, frame: Buffer.from(f).toString("hex") }) as Promise<{ drop: string | null }>;
    assert.is((await trace(tcpFrom(22))).drop, "acl-deny");
    assert.is((await trace(tcpFrom(22))).drop, "acl-deny");
    assert.is((await trace(tcpFrom(8080))).drop, "acl-deny");
    assert.is((await trace(tcpFrom(85))).drop, null);
    let r = await runNvedge(["show", "acl", "--json", ...S]);
    assert.is(r.code, 0, r.err);
    const v = JSON.parse(r.out);
    assert.equal(v.map((x: { vn: number }) => x.vn), [100]);
    assert.equal(v[0].rules.map((x: { denied: number }) => x.denied), [2, 0, 0]);
    assert.is(v[0].defaultDenied, 1);
    assert.equal(v[0].rules[1].rule, ACL[1]);
    r = await runNvedge(["show", "acl", ...S]);
    assert.match(r.out, /100 \(blue\)\s+0\s+deny\s+both\s+tcp\s+any\s+any\s+22\s+2/);
    assert.match(r.out, /100 \(blue\)\s+-\s+deny\s+both\s+\(default\)\s+1/);
  } finally {
    await nve.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("nvedge pcap with gleaning: learned then unicast, capped (learn-limit), aged out, moved; bytes as the encoder says", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-glean-"));
  try {
    const cfgObj = F.fixtureConfig(4) as { vns: { id: number; profile: Record<string, unknown> }[] };
    Object.assign(cfgObj.vns.find((x) => x.id === 100)!.profile, { learn: "glean", learnAgeMs: 4000, maxLearnedPerPort: 2 });
    const cfg = join(dir, "nve.json");
    writeFileSync(cfg, JSON.stringify(cfgObj));
    const G = (n: number) => ({ mac: `02:00:5e:01:99:0${n}`, ip4: `10.1.0.10${n}`, ip6: `2001:db8:1::10${n}` });
    const [g1, g2, g3] = [G(1), G(2), G(3)];
    const out = (h: typeof g1, port: string) => E.udpFrame({ dst: R1.mac, src: h.mac, tag: F.tagOf(100, port), srcIp: h.ip4, dstIp: R1.ip4 });
    const inner = (h: typeof g1) => F.innerFrame(R1, h);
    const back = (h: typeof g1) => F.fromRemote(F.REMOTES[0], 4, 100, inner(h));
    const at = (frame: Uint8Array, ms: number) => ({ frame, tsSec: Math.floor(ms / 1000), tsUsec: (ms % 1000) * 1000, origLen: frame.length });
    writePcap(join(dir, "a1.pcap"), [at(out(g1, F.ACC1), 1000), at(out(g2, F.ACC1), 3000), at(out(g3, F.ACC1), 4000), at(out(g2, F.ACC1), 6000)]);
    writePcap(join(dir, "a2.pcap"), [at(out(g2, F.ACC2), 8000)]);
    writePcap(join(dir, "up.pcap"), [at(back(g1), 2000), at(back(g1), 7000), at(back(g2), 7500), at(back(g2), 9000)]);
    const o = join(dir, "out");
    const r = await runNvedge(["pcap", "--config", cfg, "--in", `${F.ACC1}=${join(dir, "a1.pcap")}`, "--in", `${F.ACC2}=${join(dir, "a2.pcap")}`,
      "--in", `${F.UPLINK}=${join(dir, "up.pcap")}`, "--out-dir", o]);
    assert.is(r.code, 0, r.err);
    const ms = (p: { tsSec: number; tsUsec: number }) => p.tsSec * 1000 + p.tsUsec / 1000;
    const up = readPcap(join(o, "uplink.pcap")).packets;
    assert.equal(up.map(ms), [1000, 3000, 6000, 8000], "g3 at 4000 dropped: the VAP holds maxLearnedPerPort (2)");
    for (const [k, src] of [[0, out(g1, F.ACC1)], [1, out(g2, F.ACC1)], [3, out(g2, F.ACC2)]] as const) {
      const v = E.viewOverlay(up[k].frame, "vxlan");
      eqBytes(up[k].frame, E.overlayFrame(F.underlayTo(F.REMOTES[0], 4, 0), { kind: "vxlan", vni: 5000, entropy: v.entropy }, E.stripTag(src)), `uplink ${k}`);
    }
    const a1 = readPcap(join(o, "acc1.pcap")).packets, a2 = readPcap(join(o, "acc2.pcap")).packets;
    // 2000: g1 learned, unicast to acc1; 7000: g1 aged out (silent since 1000), flooded; 7500: g2 (seen at 6000) unicast
    assert.equal(a1.map(ms), [2000, 7000, 7500]);
    eqBytes(a1[0].frame, E.insertTag(inner(g1), F.tagOf(100, F.ACC1)), "to g1, learned");
    eqBytes(a1[1].frame, E.insertTag(inner(g1), F.tagOf(100, F.ACC1)), "to g1, aged: flood copy");
    eqBytes(a1[2].frame, E.insertTag(inner(g2), F.tagOf(100, F.ACC1)), "to g2 on acc1");
    // 7000: the other flood copy; 9000: g2 moved to acc2 at 8000
    assert.equal(a2.map(ms), [7000, 9000]);
    eqBytes(a2[1].frame, E.insertTag(inner(g2), F.tagOf(100, F.ACC2)), "to g2 after its move");
    const c = JSON.parse(readFileSync(join(o, "counters.json"), "utf8"));
    assert.is(c.drops["learn-limit"], 1);
    assert.match(r.err, /learned on acc1[\s\S]*aged out[\s\S]*moved from acc1 to acc2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("gleaning on a running NVE: a source traced through it is learned, `show bindings` marks it glean, and it survives a restart", async () => {
  const dir = mkdtempSync(join(tmpdir(), "nvl-glean-"));
  const cfgObj = F.fixtureConfig(4) as { vns: { id: number; profile: Record<string, unknown> }[] };
  cfgObj.vns.find((x) => x.id === 100)!.profile.learn = "glean";
  const cfg = join(dir, "nve.json");
  writeFileSync(cfg, JSON.stringify(cfgObj));
  const S = ["--store", `${dir}/st`];
  const sock = `${dir}/st/nvedge.sock`;
  const start = async () => {
    const nve = await spawnNvedge(["run", "--config", cfg, ...S, "--io", "none", "--listen", `127.0.0.1:${await freePort()}`]);
    await until(async () => adminRequest(sock, { cmd: "show", what: "ports" }).then(() => true, () => false), 30_000, `admin socket (${nve.err()})`);
    return nve;
  };
  const gm = "02:00:5e:01:99:01", gip = "10.1.0.101";
  let nve = await start();
  try {
    const f = E.udpFrame({ dst: R1.mac, src: gm, tag: F.tagOf(100, F.ACC1), srcIp: gip, dstIp: R1.ip4 });
    const t = (await adminRequest(sock, { cmd: "trace", port: F.ACC1, frame: Buffer.from(f).toString("hex") })) as { drop: string | null; outputs: unknown[] };
    assert.is(t.drop, null, "forwarded while being learned");
    const glean = async () => {
      const r = await runNvedge(["show", "bindings", "--json", "--mac", gm, ...S]);
      return JSON.parse(r.out) as { mac: string; ips: string[]; port: string; learn?: string; tag?: number }[];
    };
    await until(async () => (await glean()).length === 1 && (await glean())[0].ips.length === 1, 10_000, "the gleaned binding");
    assert.equal((await glean()).map((b) => [b.mac, b.ips, b.port, b.learn, b.tag]), [[gm, [gip], F.ACC1, "glean", 10]]);
    const table = await runNvedge(["show", "bindings", "--mac", gm, ...S]);
    assert.match(table.out, new RegExp(`100\\s+${gm}\\s+${gip.replace(/\./g, "\\.")}\\s+local\\s+acc1\\s+10\\s+glean`));
    await nve.stop();
    nve = await start();
    assert.equal((await glean()).map((b) => [b.mac, b.ips, b.learn]), [[gm, [gip], "glean"]], "restored from the store");
    // and programmed again: unicast from the overlay reaches it on acc1
    const d = (await adminRequest(sock, { cmd: "trace", port: F.UPLINK,
      frame: Buffer.from(F.fromRemote(F.REMOTES[0], 4, 100, E.udpFrame({ dst: gm, src: R1.mac, tag: null, srcIp: R1.ip4, dstIp: gip }))).toString("hex") })) as { outputs: { port: string }[] };
    assert.equal(d.outputs.map((o) => o.port), [F.ACC1]);
  } finally {
    await nve.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
