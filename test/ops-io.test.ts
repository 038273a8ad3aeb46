// A device as its operator runs it (issue 13): `nvedge run` from its config
// with no --io (so real AF_PACKET I/O, the default when the config has
// ports) in its own namespace on veth pairs; real frames injected, then:
//   - /metrics moves as the traffic did (per port, per VN, per drop reason,
//     per worker) and passes `promtool check metrics`;
//   - `nvedge capture --drops -w FILE` writes pcapng that tshark reads, with
//     each frame's drop reason as its comment;
//   - `nvedge trace --live` shows the next frames with their decisions, and
//     `nvedge trace --port --frame` one frame through the running tables;
//   - a bad configuration on reload is refused and the NVE keeps forwarding.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { tmpNetns, injectFrames, type Netns } from "./support/io-net.js";
import { requireRootAnd, requireTool, onPath } from "./support/tools.js";
import { fixtureConfig, locals, remotes, accessFrame } from "./support/frames.js";
import { udpFrame } from "./support/encoder.js";
import { adminRequest } from "../host/control/admin.js";
import { until } from "./support/control-harness.js";

const PROMTOOL = requireTool("promtool", () => onPath("promtool"), "promtool check metrics on /metrics");
const BIN = fileURLToPath(new URL("../../bin/nvedge.js", import.meta.url));
// Strict (issue 17): as root or in CI, a missing tool fails the run; the test is registered only when it can run.
const READY = requireRootAnd(["python3", "curl", "tshark"], "nvedge run on veth pairs: /metrics, promtool, capture --drops, trace --live, reload");

/** `nvedge ARGS` from the root namespace (the admin socket is a file), to completion, bounded. */
function nvedge(args: string[], ms = 30_000): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    c.stdout!.on("data", (d) => (out += d));
    c.stderr!.on("data", (d) => (err += d));
    const t = setTimeout(() => c.kill("SIGKILL"), ms);
    c.once("exit", (code) => { clearTimeout(t); resolve({ code, out, err }); });
  });
}

/** Sample value of one metric line (exact labels as prom-client prints them). */
function metric(text: string, name: string, labels = ""): number {
  const re = new RegExp(`^${name}\\{${labels.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}${labels ? "," : ""}nve="nve-test"\\} (\\S+)$`, "m");
  const m = re.exec(text);
  if (!m) throw new Error(`no ${name}{${labels}} in /metrics`);
  return Number(m[1]);
}

if (READY) test("nvedge run from its config (AF_PACKET by default): /metrics after real traffic, promtool, capture --drops as pcapng with reasons, trace --live, a bad reload keeps forwarding", async () => {
  const dir = mkdtempSync("/tmp/nvl-opsio-");
  let ns: Netns | undefined;
  let nve: ChildProcess | undefined;
  let log = "";
  try {
    ns = tmpNetns("ops");
    const [upA] = ns.veth("u");
    const [a1, a1peer] = ns.veth("1");
    const [a2] = ns.veth("2");
    const text = JSON.stringify(fixtureConfig(4)).replace(/"uplink"/g, JSON.stringify(upA)).replace(/"acc1"/g, JSON.stringify(a1)).replace(/"acc2"/g, JSON.stringify(a2))
      .replace(/hv-acc1/g, "hv-1").replace(/hv-acc2/g, "hv-2");
    const cfg = JSON.parse(text);
    writeFileSync(`${dir}/nve.json`, text);
    const S = ["--store", `${dir}/st`];
    nve = spawn("ip", ["netns", "exec", ns.name, process.execPath, BIN, "run", "--config", `${dir}/nve.json`, ...S, "--workers", "1",
      "--metrics", "127.0.0.1:9464", "--log-format", "json"], { stdio: ["ignore", "ignore", "pipe"] });
    nve.stderr!.on("data", (d) => { log = (log + d).slice(-50_000); });
    const sock = `${dir}/st/nvedge.sock`;
    await until(async () => {
      if (nve!.exitCode !== null) throw new Error(`nvedge run exited ${nve!.exitCode}:\n${log}`);
      return existsSync(sock) && adminRequest(sock, { cmd: "show", what: "ports" }, 2000).then(() => true, () => false);
    }, 60_000, "the NVE's admin socket");
    // JSON logs; the first record names the version; --io defaulted to afpacket.
    const first = JSON.parse(log.split("\n")[0]);
    assert.is(first.msg.startsWith("nvedge "), true);
    assert.is(first.io, "afpacket");
    const scrape = () => ns!.run("curl", ["-sf", "http://127.0.0.1:9464/metrics"]);
    assert.is(ns.run("curl", ["-sf", "http://127.0.0.1:9464/readyz"]), "ok\n");

    // Real traffic: local to local (hairpin to acc2), local to a remote (encapsulated), and drops.
    const { L1, L2 } = locals(100);
    const { R1 } = remotes(100);
    const toL2 = Array.from({ length: 20 }, (_, i) => accessFrame(L1, L2, { srcPort: 1000 + i }));
    const toR1 = Array.from({ length: 5 }, (_, i) => accessFrame(L1, R1, { srcPort: 2000 + i }));
    const untagged = Array.from({ length: 7 }, (_, i) => udpFrame({ dst: L2.mac, src: L1.mac, srcIp: L1.ip4, dstIp: L2.ip4, srcPort: 3000 + i }));
    injectFrames(ns, a1peer, [...toL2, ...toR1, ...untagged]);
    let m = "";
    await until(() => { m = scrape(); return metric(m, "nvedge_port_received_frames_total", `port="${a1}"`) >= 32; }, 20_000, "32 frames counted on acc1");
    assert.is(metric(m, "nvedge_port_received_frames_total", `port="${a1}"`), 32);
    assert.is(metric(m, "nvedge_port_sent_frames_total", `port="${a2}"`), 20);
    assert.is(metric(m, "nvedge_port_sent_frames_total", `port="${upA}"`), 5);
    assert.is(metric(m, "nvedge_drops_total", 'reason="untagged"'), 7);
    assert.is(metric(m, "nvedge_frames_dropped_total"), 7);
    assert.is(metric(m, "nvedge_frames_forwarded_total"), 25);
    assert.is(metric(m, "nvedge_vn_encapsulated_frames_total", 'vn="100"'), 5);
    assert.is(metric(m, "nvedge_worker_received_frames_total", 'worker="0"'), 32);
    assert.is(metric(m, "nvedge_ring_dropped_frames_total", `interface="${a1}"`), 0);
    assert.is(metric(m, "nvedge_tunnel_gso_errors_total", `interface="${upA}"`), 0, "a series per interface, none refused");
    assert.is(metric(m, "nvedge_vnics"), cfg.vnics.length);
    if (PROMTOOL) {
      const p = spawnSync("promtool", ["check", "metrics"], { input: m, encoding: "utf8" });
      assert.is(p.status, 0, `promtool: ${p.stdout}${p.stderr}`);
    }
    // The counters table shows the ring drops and the worker's figures too.
    let r = await nvedge(["show", "counters", ...S]);
    assert.match(r.out, /INTERFACE\s+RING DROPS.*TUNNEL GSO\s+TUNNEL GSO ERRORS\n/);
    assert.match(r.out, /WORKER\s+RX\s+FORWARDED\s+DROPPED\s+BATCHES\n0\s+32\s+25\s+7/);

    // capture --drops: the next dropped frames as pcapng, each with its reason as the comment.
    const pcap = `${dir}/drops.pcapng`;
    const cap = nvedge(["capture", "--drops", "--count", "4", "--timeout", "30", "-w", pcap, ...S], 60_000);
    let capDone = false;
    void cap.then(() => { capDone = true; });
    const badVid = udpFrame({ dst: L2.mac, src: L1.mac, tag: { vid: 999 }, srcIp: L1.ip4, dstIp: L2.ip4 });
    for (let i = 0; i < 100 && !capDone; i++) {
      injectFrames(ns, a1peer, [untagged[0], badVid, toL2[0]]);
      await new Promise((res) => setTimeout(res, 200));
    }
    r = await cap;
    assert.is(r.code, 0, r.err);
    assert.match(r.out, /4 dropped frames written to/);
    const t = spawnSync("tshark", ["-r", pcap, "-T", "fields", "-e", "frame.comment", "-e", "frame.interface_name", "-e", "frame.len"], { encoding: "utf8" });
    assert.is(t.status, 0, t.stderr);
    const rows = t.stdout.trim().split("\n").map((l) => l.split("\t"));
    assert.is(rows.length, 4);
    for (const [reason, iface] of rows) {
      assert.ok(reason === "untagged" || reason === "unknown-vid", `reason ${reason}`);
      assert.is(iface, a1);
    }
    assert.ok(rows.some((x) => x[0] === "untagged") && rows.some((x) => x[0] === "unknown-vid"), "both reasons shown");
    // The frames are the injected ones, byte for byte (nvedge pcap reads pcapng too).
    const { readPcap } = await import("../host/pcap/pcap.js");
    const back = readPcap(pcap).packets.map((p) => Buffer.from(p.frame).toString("hex"));
    for (const f of back) assert.ok([untagged[0], badVid].map((x) => Buffer.from(x).toString("hex")).includes(f));

    // trace --live: the next frames from L1, with their decisions; they are still forwarded.
    const tr = nvedge(["trace", "--live", "--count", "2", "--mac", L1.mac, "--timeout", "30", "--json", ...S], 60_000);
    let trDone = false;
    void tr.then(() => { trDone = true; });
    for (let i = 0; i < 100 && !trDone; i++) {
      injectFrames(ns, a1peer, [toL2[1]]);
      await new Promise((res) => setTimeout(res, 200));
    }
    r = await tr;
    assert.is(r.code, 0, r.err);
    const traced = r.out.trim().split("\n").map((l) => JSON.parse(l));
    assert.is(traced.length, 2);
    for (const x of traced) {
      assert.is(x.port, a1);
      assert.ok(x.steps.includes("vn 100 (vni 5000, vxlan, mtu 1500)"), x.steps.join("; "));
      assert.equal(x.outputs.map((o: { port: string }) => o.port), [a2]);
    }

    // One frame through the running tables (AF_PACKET workers): decisions and outputs, nothing sent.
    r = await nvedge(["trace", "--port", a1, "--frame", Buffer.from(toR1[0]).toString("hex"), "--json", ...S]);
    assert.is(r.code, 0, r.err);
    const one = JSON.parse(r.out);
    assert.is(one.drop, null);
    assert.ok(one.steps.includes("vn 100 (vni 5000, vxlan, mtu 1500)"), one.steps.join("; "));
    assert.equal(one.outputs.map((o: { port: string }) => o.port), [upA]);

    // A bad configuration on reload is refused; the NVE keeps forwarding.
    m = scrape();
    const sent = metric(m, "nvedge_port_sent_frames_total", `port="${a2}"`);
    writeFileSync(`${dir}/nve.json`, JSON.stringify({ ...cfg, remotes: [...cfg.remotes, { ...cfg.remotes[0] }] }));
    r = await nvedge(["reload", ...S]);
    assert.is(r.code, 1);
    assert.match(r.err, /duplicate remote/);
    injectFrames(ns, a1peer, toL2.slice(0, 10));
    await until(() => metric(scrape(), "nvedge_port_sent_frames_total", `port="${a2}"`) >= sent + 10, 20_000, "10 more frames forwarded after the refused reload");
    m = scrape();
    assert.is(metric(m, "nvedge_port_sent_frames_total", `port="${a2}"`), sent + 10);
    assert.is(metric(m, "nvedge_reloads_total", 'result="refused"'), 1);
    assert.ok(log.includes("refused, the running configuration is kept"));
    assert.is(nve.exitCode, null);
  } finally {
    if (nve && nve.exitCode === null) {
      nve.kill("SIGTERM");
      const t = setTimeout(() => nve!.kill("SIGKILL"), 10_000);
      await new Promise((r) => nve!.once("exit", r));
      clearTimeout(t);
    }
    ns?.remove();
    rmSync(dir, { recursive: true, force: true });
  }
});

if (READY) test.run();
