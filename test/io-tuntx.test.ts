// The tunnel super-frame TX path (issue 11, TCP VM -> remote;
// host/io/tuntx.ts, host/io/native/tuntx.c) against the Linux kernel's VXLAN
// VTEP in another namespace (host/lab/tunnel-tx.ts): ONE VXLAN frame carrying
// a UDP super-frame is written once and reaches the remote's socket as every
// one of its datagrams, byte for byte - whole on the wire when the uplink
// carries UDP-tunnel GSO (a veth does), cut in software with every checksum
// completed when it does not (then the remote checks each one); a Geneve
// super-frame's segments checked on the wire by an independent sum (this
// kernel may have no Geneve device to decapsulate it); a tagged uplink's
// (underlay.vlan) super-frame whole and cut; a real TCP
// flow from a TSO sender goes through the relay's super-frames intact; bad
// frames are refused by reason with nothing written. Needs root and Linux
// 6.17 or later (tun's UDP tunnel GSO). Every lab is made in test-made
// `nvl-` namespaces and removed even on failure; every wait is bounded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { release } from "node:os";
import { requireRootAnd, requireTool } from "./support/tools.js";
import { TunTx, TX_DESC, TX_INNER_UDP, TX_UDP_CSUM, TX_OUTER6, TX_INNER6, TX_PLAIN, putTxDesc, tunTxAddonPath } from "../host/io/tuntx.js";
import { txLabUp, txLabDown, txLabVmUp, outerHeader, innerUdpHeader, type TxLab } from "../host/lab/tunnel-tx.js";
import { startRelay } from "../host/lab/tunnel-tx-relay.js";
import { sh, sleep } from "../host/sys/sh.js";
import { loadAddon } from "../host/io/addon.js";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { root } from "../host/paths.js";
import { capture, parsePcap, type Netns } from "./support/io-net.js";
import * as E from "./support/encoder.js";

/**
 * Counts the VXLAN frames (UDP port 4789) that `dev` in `ns` receives until
 * stop(): a packet tap sees a super-frame that crossed the veth whole as one
 * frame. Only tunnel frames: over an IPv6 underlay the link also carries the
 * kernel's own router solicitations and MLD reports at times of its choosing,
 * which a plain interface counter would add in (a failed CI run counted 2).
 */
async function tunnelFrames(ns: string, dev: string): Promise<{ stop: () => Promise<number> }> {
  const child = spawn("ip", ["netns", "exec", ns, "timeout", "30", "tcpdump", "-i", dev, "-Q", "in", "--immediate-mode", "-U", "-n", "-w", "-", "udp", "port", "4789"],
    { stdio: ["ignore", "pipe", "pipe"] });
  const chunks: Buffer[] = [];
  child.stdout!.on("data", (c: Buffer) => chunks.push(c));
  let err = "";
  const closed = new Promise<void>((r) => child.on("close", () => r()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`tcpdump did not start: ${err}`)); }, 5000);
    child.stderr!.on("data", (c: Buffer) => { err += c.toString(); if (err.includes("listening on")) { clearTimeout(t); resolve(); } });
    child.on("exit", () => { clearTimeout(t); reject(new Error(`tcpdump exited: ${err}`)); });
  });
  return {
    stop: async () => {
      await sleep(200); // immediate mode: the last frame reaches tcpdump at once, this is margin
      child.kill("SIGINT"); // ip netns exec passes it on through timeout: tcpdump writes out what it has
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await closed;
      clearTimeout(t);
      return parsePcap(Buffer.concat(chunks)).length;
    },
  };
}

/** A node script in namespace `ns`: resolves `ready` on its first stdout line "ready", `done` with the rest of its stdout (bounded). */
function nodeIn(ns: string, script: string, timeoutMs: number): { ready: Promise<void>; done: Promise<string> } {
  const p = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs });
  let out = "", err = "";
  p.stderr!.setEncoding("utf8").on("data", (d) => { err += d; });
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => { onReady = r; });
  p.stdout!.setEncoding("utf8").on("data", (d) => { out += d; if (out.startsWith("ready\n")) onReady(); });
  const done = new Promise<string>((res, rej) => p.on("exit", (c) => (c === 0 ? res(out.replace(/^ready\n/, "")) : rej(new Error(`node in ${ns} exited ${c}: ${err.slice(0, 500)}`)))));
  done.catch(() => undefined);
  return { ready: Promise.race([ready, done.then(() => { throw new Error(`node in ${ns} ended before it was ready: ${out}`); })]), done };
}

/** A UDP socket on ip:port in ns that prints, as JSON, the base64 of each datagram it gets until `count` or `ms`. */
const udpReceiver = (ns: string, ip: string, port: number, count: number, ms: number) => nodeIn(ns, `
  const s = require("dgram").createSocket("udp4"); const got = [];
  const end = () => { console.log(JSON.stringify(got)); process.exit(0); };
  s.on("message", (m) => { got.push(m.toString("base64")); if (got.length >= ${count}) end(); });
  s.bind(${port}, "${ip}", () => console.log("ready")); setTimeout(end, ${ms});`, ms + 10_000);

/** An interface's packet counters in ns. */
function counters(ns: string, dev: string): { rx: number; tx: number } {
  const j = JSON.parse(sh(["ip", "-j", "-s", "-n", ns, "link", "show", "dev", dev]).stdout)[0].stats64;
  return { rx: j.rx.packets, tx: j.tx.packets };
}

/** nstat's absolute counter in ns (0 when absent). */
function nstat(ns: string, name: string): number {
  const line = sh(["nstat", "-az", name], { ns }).stdout.split("\n").find((l) => l.startsWith(name + " "));
  return Number(line?.trim().split(/\s+/)[1] ?? 0);
}

const pattern = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed * 13 + (i >> 8)) & 0xff);

/** A VXLAN (or Geneve) frame's headers from the lab's VM to the remote host's UDP port, and where its pieces are. */
function udpSuperFrame(l: TxLab, o: { dstIp: string; dstMac: string; port: number }) {
  const outer = outerHeader(l, "vxlan");
  const inner = innerUdpHeader(l.dut.rxMac, o.dstMac, l.dut.vmIp, o.dstIp, 5555, o.port);
  const headers = new Uint8Array(outer.bytes.length + inner.length);
  headers.set(outer.bytes, 0);
  headers.set(inner, outer.bytes.length);
  const innerNh = outer.bytes.length + 14;
  return { headers, outerTh: outer.outerTh, innerNh, innerTh: innerNh + 20 };
}

async function withLab(family: 4 | 6, body: (l: TxLab) => Promise<void>): Promise<void> {
  const l = txLabUp({ family });
  try {
    await body(l);
  } finally {
    assert.equal(await txLabDown(l), [], "the lab's namespaces are gone");
  }
}

/** One UDP super-frame of `segs` datagrams of `gso` bytes through the tap; what the remote's socket got, and its uplink's frame count. */
async function sendUdpSuperFrame(l: TxLab, o: { segs: number; gso: number; udpCsum: boolean; flags?: number }) {
  const tx = TunTx.open(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath, udpCsum: o.udpCsum });
  try {
    const f = udpSuperFrame(l, { dstIp: l.rem.hostIp, dstMac: l.rem.hostMac, port: 6000 });
    const payload = pattern(o.segs * o.gso, 1);
    const rx = udpReceiver(l.rem.ns, l.rem.hostIp, 6000, o.segs, 8000);
    await rx.ready;
    const wire = await tunnelFrames(l.rem.ns, l.rem.uplink);
    tx.sendFrame({ ...f, payload, gsoSize: o.gso, flags: TX_INNER_UDP | (o.flags ?? 0) });
    const got = (JSON.parse(await rx.done) as string[]).map((b) => Buffer.from(b, "base64"));
    return { got, expected: Array.from({ length: o.segs }, (_, i) => Buffer.from(payload.subarray(i * o.gso, (i + 1) * o.gso))),
             wireFrames: await wire.stop(), stats: tx.stats() };
  } finally {
    tx.close();
  }
}

const [maj, min] = release().split(".").map(Number);
if (requireRootAnd(["ip", "nstat", "ethtool", "tc", "clang"], "the tunnel super-frame TX path against a kernel VXLAN VTEP (network namespaces)") &&
    requireTool("tun UDP tunnel GSO (Linux 6.17 or later)", maj > 6 || (maj === 6 && min >= 17), "the tunnel super-frame TX path") &&
    requireTool("the tunnel TX addon (node scripts/build.mjs --addon)", () => existsSync(tunTxAddonPath), "the tunnel super-frame TX path") &&
    requireTool("libbpf-dev", () => existsSync("/usr/include/bpf/bpf_helpers.h"), "the tagged-uplink case's tag pop (tc-BPF, bench/bpf/vlan.c)")) {
  test("a VXLAN super-frame (8 UDP datagrams, UDP checksum 0) is written once and reaches the remote kernel VTEP's socket as 8 whole datagrams, byte for byte, as ONE frame on the wire", async () => {
    await withLab(4, async (l) => {
      const r = await sendUdpSuperFrame(l, { segs: 8, gso: 1000, udpCsum: false });
      assert.equal(r.got, r.expected, "every datagram, in order, byte for byte");
      assert.is(r.wireFrames, 1, "one frame crossed the uplink (the veth carries UDP-tunnel GSO)");
      assert.equal([r.stats.frames, r.stats.segments], [1, 8]);
    });
  });

  test("with the uplink's offloads off the kernel cuts the super-frame itself and completes every checksum (outer UDP per segment, inner UDP): the remote checks and delivers all 8, no checksum error", async () => {
    await withLab(4, async (l) => {
      // tx off: no checksum offload either, so each segment leaves with its
      // checksums computed from what tuntx put in the headers; the remote's
      // rx off too: it checks them all in software
      sh(["ethtool", "-K", l.dut.uplink, "tx", "off", "tx-udp_tnl-segmentation", "off", "tx-udp_tnl-csum-segmentation", "off"], { ns: l.dut.ns });
      sh(["ethtool", "-K", l.rem.uplink, "rx", "off"], { ns: l.rem.ns });
      const r = await sendUdpSuperFrame(l, { segs: 8, gso: 1200, udpCsum: true, flags: TX_UDP_CSUM });
      assert.equal(r.got, r.expected);
      assert.is(r.wireFrames, 8, "eight frames crossed the uplink");
      assert.is(nstat(l.rem.ns, "UdpInCsumErrors"), 0);
      assert.is(nstat(l.rem.ns, "UdpInDatagrams"), 16, "8 VXLAN datagrams and the 8 inner ones");
    });
  });

  test("IPv6 underlay: the super-frame goes with an outer UDP checksum per segment (RFC 8200 section 8.1), which the kernel VTEP requires, and arrives whole", async () => {
    await withLab(6, async (l) => {
      const r = await sendUdpSuperFrame(l, { segs: 5, gso: 1100, udpCsum: true, flags: TX_OUTER6 });
      assert.equal(r.got, r.expected);
      assert.is(r.wireFrames, 1);
    });
  });

  test("IPv6 underlay: a super-frame whose IPv6 packet is over 65,535 bytes but whose Payload Length (without the 40-byte header, RFC 8200 section 3) fits 16 bits goes, as the data plane promotes it (gso.ts checks the payload length)", async () => {
    await withLab(6, async (l) => {
      // 61 x 1073 payload bytes: inner IPv4 65,481 bytes, outer IPv6 payload 65,511, the whole outer packet 65,551
      const r = await sendUdpSuperFrame(l, { segs: 61, gso: 1073, udpCsum: true, flags: TX_OUTER6 });
      assert.is(r.stats.errors.tooLong, 0, "not refused as too long");
      assert.equal(r.got, r.expected, "every datagram delivered");
    });
  });

  test("a super-frame described by a virtio-net header (the data plane's OG_VNET record: UDP_L4 | UDP_TUNNEL_IPV4, gso_size, csum_start), in two pieces split where the data plane splits them (outer headers | inner IP on), goes through sendVnet, ONE frame on the wire, every datagram delivered; gso_type NONE sends a plain frame (split inside its UDP header)", async () => {
    await withLab(4, async (l) => {
      const tx = TunTx.open(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath });
      try {
        const f = udpSuperFrame(l, { dstIp: l.rem.hostIp, dstMac: l.rem.hostMac, port: 6000 });
        const payload = pattern(6 * 1100, 5), plain = pattern(700, 6);
        // memory: virtio-net header at 0, headers at 64, payload after them
        const mem = new ArrayBuffer(64 + f.headers.length + payload.length), u = new Uint8Array(mem), dv = new DataView(mem);
        const vnet = (gsoType: number, gso: number) => { u.fill(0, 0, 10); u[0] = 1; u[1] = gsoType; dv.setUint16(4, gso, true); dv.setUint16(6, f.innerTh, true); dv.setUint16(8, 6, true); };
        const put = (p: Uint8Array) => { u.set(f.headers, 64); u.set(p, 64 + f.headers.length); };
        const rx = udpReceiver(l.rem.ns, l.rem.hostIp, 6000, 7, 8000);
        await rx.ready;
        const before = counters(l.rem.ns, l.rem.uplink).rx;
        put(payload);
        vnet(5 | 0x20, 1100); // VIRTIO_NET_HDR_GSO_UDP_L4 | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4
        const hl = f.headers.length, split = f.innerNh; // the header piece ends at the inner IP header, as gso.ts's encap output does
        assert.is(tx.sendVnet(mem, 64, split, 0, f.outerTh, f.innerNh, 64 + split, hl - split + payload.length), "ok");
        put(plain);
        vnet(0, 0);
        assert.is(tx.sendVnet(mem, 64, f.innerTh + 3, 0, f.outerTh, f.innerNh, 64 + f.innerTh + 3, hl - f.innerTh - 3 + plain.length), "ok");
        const got = (JSON.parse(await rx.done) as string[]).map((b) => Buffer.from(b, "base64"));
        const want = [...Array.from({ length: 6 }, (_, i) => Buffer.from(payload.subarray(i * 1100, (i + 1) * 1100))), Buffer.from(plain)];
        assert.equal(got, want);
        assert.is(counters(l.rem.ns, l.rem.uplink).rx - before, 2, "two frames on the wire: the super-frame and the plain one");
        vnet(5 | 0x20, 0);
        assert.is(tx.sendVnet(mem, 64, f.headers.length, 0, f.outerTh, f.innerNh, 64 + f.headers.length, plain.length), "gsoSizeZero");
      } finally {
        tx.close();
      }
    });
  });

  test("Geneve (RFC 8926): a super-frame leaves whole, its Geneve header intact; with the uplink's offloads off the kernel cuts it into 7 frames whose outer IPv4, outer UDP, inner IPv4 and inner UDP checksums all verify by an independent sum, payloads joining up to the original", async () => {
    // this kernel may have no Geneve device to decapsulate: the frames are checked on the wire
    await withLab(4, async (l) => {
      const tx = TunTx.open(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath, udpCsum: true });
      try {
        const outer = outerHeader(l, "geneve"), O = outer.bytes.length;
        const inner = innerUdpHeader(l.dut.rxMac, l.rem.gnvMac, "10.0.1.1", l.rem.gnvIp, 5555, 7000);
        const headers = new Uint8Array(O + inner.length);
        headers.set(outer.bytes, 0);
        headers.set(inner, O);
        const payload = pattern(6 * 1000 + 123, 7);
        const frame = { headers, payload, gsoSize: 1000, outerTh: outer.outerTh, innerNh: O + 14, innerTh: O + 34, flags: TX_INNER_UDP | TX_UDP_CSUM };
        const rem = { name: l.rem.ns } as Netns;
        const whole = await capture(rem, l.rem.uplink, 1, 8000, ["udp", "port", "6081"]);
        tx.sendFrame(frame);
        const [w] = await whole.done;
        assert.is(w?.length, headers.length + payload.length, "one frame, the whole super-frame");
        assert.equal([...w.subarray(outer.outerTh + 8, O)], [0, 0, 0x65, 0x58, 0x00, 0x13, 0x88, 0], "the Geneve header (no options, 0x6558, VNI 5000)");

        sh(["ethtool", "-K", l.dut.uplink, "tx", "off", "tx-udp_tnl-segmentation", "off", "tx-udp_tnl-csum-segmentation", "off"], { ns: l.dut.ns });
        const cut = await capture(rem, l.rem.uplink, 7, 8000, ["udp", "port", "6081"]);
        tx.sendFrame(frame);
        const segs = await cut.done;
        assert.is(segs.length, 7);
        const got: number[] = [];
        segs.forEach((f, k) => {
          const ulen = f.length - 34, ilen = f.length - O - 34;
          assert.is(E.inetChecksum(f.subarray(14, 34)), 0, `segment ${k}: outer IPv4 header checksum`);
          assert.ok(f[40] !== 0 || f[41] !== 0, `segment ${k}: an outer UDP checksum is there`);
          assert.is(E.inetChecksum(E.pseudoHeader(l.dut.ip, l.rem.ip, 17, ulen), f.subarray(34)), 0, `segment ${k}: outer UDP checksum`);
          assert.is(E.inetChecksum(f.subarray(O + 14, O + 34)), 0, `segment ${k}: inner IPv4 header checksum`);
          assert.is(E.inetChecksum(E.pseudoHeader("10.0.1.1", l.rem.gnvIp, 17, ilen), f.subarray(O + 34)), 0, `segment ${k}: inner UDP checksum`);
          assert.is((f[O + 38] << 8) | f[O + 39], ilen, `segment ${k}: inner UDP length`);
          got.push(...f.subarray(O + 42));
        });
        assert.equal(Uint8Array.from(got), payload, "the segments' payloads, in order, are the super-frame's");
      } finally {
        tx.close();
      }
    });
  });

  test("underlay.vlan: a super-frame tagged after its MACs (802.1Q, VID 7) goes whole, and cut in software, and the remote (its tag popped by tc-BPF, bench/bpf/vlan.c: this kernel has no 802.1Q devices) delivers every datagram", async () => {
    const dir = mkdtempSync(join(tmpdir(), "nvl-tuntx-"));
    try {
      const obj = join(dir, "vlan.o");
      const inc = readdirSync("/usr/include").filter((d) => /-linux-gnu$/.test(d)).map((d) => `-I/usr/include/${d}`);
      sh(["clang", "-O2", "-g", "-target", "bpf", "-DVID=7", ...inc, "-c", join(root, "bench", "bpf", "vlan.c"), "-o", obj], { timeoutMs: 60_000 });
      await withLab(4, async (l) => {
        sh(["tc", "qdisc", "add", "dev", l.rem.uplink, "clsact"], { ns: l.rem.ns });
        sh(["tc", "filter", "add", "dev", l.rem.uplink, "ingress", "bpf", "direct-action", "obj", obj, "sec", "tc/ingress"], { ns: l.rem.ns });
        const tx = TunTx.open(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath, udpCsum: true });
        try {
          const f = udpSuperFrame(l, { dstIp: l.rem.hostIp, dstMac: l.rem.hostMac, port: 6000 });
          const headers = new Uint8Array(f.headers.length + 4);
          headers.set(f.headers.subarray(0, 12));
          headers.set([0x81, 0x00, 0x00, 0x07], 12);
          headers.set(f.headers.subarray(12), 16);
          const frame = { headers, gsoSize: 1000, outerTh: f.outerTh + 4, innerNh: f.innerNh + 4, innerTh: f.innerTh + 4, flags: TX_INNER_UDP | TX_UDP_CSUM };
          for (const [how, wire] of [["whole", 1], ["cut", 5]] as const) {
            if (how === "cut") sh(["ethtool", "-K", l.dut.uplink, "tx", "off", "tx-udp_tnl-segmentation", "off", "tx-udp_tnl-csum-segmentation", "off"], { ns: l.dut.ns });
            const payload = pattern(5000, how === "whole" ? 9 : 10);
            const rx = udpReceiver(l.rem.ns, l.rem.hostIp, 6000, 5, 8000);
            await rx.ready;
            const before = counters(l.rem.ns, l.rem.uplink).rx;
            tx.sendFrame({ ...frame, payload });
            const got = (JSON.parse(await rx.done) as string[]).map((x) => Buffer.from(x, "base64"));
            assert.equal(got, Array.from({ length: 5 }, (_, i) => Buffer.from(payload.subarray(i * 1000, (i + 1) * 1000))), how);
            assert.is(counters(l.rem.ns, l.rem.uplink).rx - before, wire, `${how}: frames on the wire`);
          }
        } finally {
          tx.close();
        }
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a real TCP flow from a TSO sender (4 MiB) goes through the relay as super-frames, each sent once, and arrives intact", async () => {
    await withLab(4, async (l) => {
      const relay = await startRelay(l, { maxSeconds: 60 });
      let result;
      try {
        txLabVmUp(l);
        const n = 4 << 20;
        const recv = nodeIn(l.rem.ns, `
          const h = require("crypto").createHash("sha256"); let n = 0;
          const srv = require("net").createServer((s) => { s.on("data", (d) => { h.update(d); n += d.length; });
            s.on("end", () => { console.log(JSON.stringify({ n, sha: h.digest("hex") })); process.exit(0); }); });
          srv.listen(5001, "${l.rem.hostIp}", () => console.log("ready"));`, 40_000);
        await recv.ready;
        const send = nodeIn(l.dut.ns, `
          const b = Buffer.alloc(${n}); for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
          const s = require("net").connect({ host: "${l.rem.hostIp}", port: 5001, localAddress: "${l.dut.vmIp}" }, () => { s.end(b); });
          s.on("close", () => process.exit(0)); console.log("ready");`, 40_000);
        await send.ready;
        const got = JSON.parse(await recv.done) as { n: number; sha: string };
        await send.done;
        const b = Buffer.alloc(n);
        for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 0xff;
        assert.equal(got, { n, sha: createHash("sha256").update(b).digest("hex") }, "every byte, in order");
      } finally {
        result = await relay.stop();
      }
      assert.ok(result.superFrames > 0, `super-frames relayed (${JSON.stringify(result)})`);
      assert.ok(result.tx.segments > 2 * result.tx.frames, `more than 2 segments per frame on average (${result.tx.segments} in ${result.tx.frames})`);
      assert.equal(result.refused, {}, "nothing refused");
      assert.equal(Object.values(result.tx.errors).reduce((a, b) => a + b, 0), 0);
    });
  });

  test("bad frames get a clear error and send nothing: gso_size 0, headers shorter than their offsets, a payload too long, wrong protocol flags, a checksum not negotiated", async () => {
    await withLab(4, async (l) => {
      const tx = TunTx.open(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath });
      try {
        const f = udpSuperFrame(l, { dstIp: l.rem.hostIp, dstMac: l.rem.hostMac, port: 6000 });
        const ok = { ...f, payload: pattern(4000, 2), gsoSize: 1000, flags: TX_INNER_UDP };
        const cases: [string, Parameters<TunTx["sendFrame"]>[0], RegExp][] = [
          ["gso_size 0", { ...ok, gsoSize: 0 }, /gsoSizeZero: gso_size is 0/],
          ["headers cut before the inner UDP header's end", { ...ok, headers: f.headers.subarray(0, f.innerTh + 4) }, /headersShort/],
          ["inner IP offset before the outer UDP header's end", { ...ok, innerNh: f.outerTh + 4 }, /headersShort/],
          ["payload too long for the IP length", { ...ok, payload: new Uint8Array(65535) }, /tooLong: .*65535/],
          ["the payload fits one segment", { ...ok, payload: pattern(900, 3) }, /singleSegment/],
          ["flags say inner IPv6, the header is IPv4", { ...ok, flags: TX_INNER_UDP | TX_INNER6 }, /badProtocol/],
          ["flags say TCP, the inner header is UDP", { ...ok, flags: 0 }, /badProtocol/],
          ["outer UDP checksum without udpCsum at open", { ...ok, flags: TX_INNER_UDP | TX_UDP_CSUM }, /csumNotEnabled/],
          ["unknown flag bits", { ...ok, flags: TX_INNER_UDP | 0x400 }, /badFlags/],
          ["gso_size too big for the uplink's MTU (1500)", { ...ok, gsoSize: 1500 }, /segmentOverMtu: .*wrong gso_size/],
        ];
        for (const [what, frame, err] of cases) assert.throws(() => tx.sendFrame(frame), err, what);
        // through send() on one buffer: a refused frame's headers stay as they
        // were, its status names the reason; a sent one's get their lengths
        const mem = new ArrayBuffer(TX_DESC + f.headers.length + 4000), u = new Uint8Array(mem);
        u.set(f.headers, TX_DESC);
        u.set(ok.payload, TX_DESC + f.headers.length);
        const desc = { hdr: TX_DESC, hdrLen: f.headers.length, data: TX_DESC + f.headers.length, dataLen: 4000, gsoSize: 0,
                       outerTh: f.outerTh, innerNh: f.innerNh, innerTh: f.innerTh, flags: TX_INNER_UDP };
        putTxDesc(new DataView(mem), 0, desc);
        assert.is(tx.send(mem, 0, 1), 0);
        assert.is(TunTx.status(mem, 0), "gsoSizeZero");
        assert.equal(u.slice(TX_DESC, TX_DESC + f.headers.length), f.headers, "a refused frame's headers are untouched");
        const s = tx.stats();
        assert.equal([s.frames, s.bytes], [0, 0], "nothing sent");
        assert.equal(s.errors, { gsoSizeZero: 2, singleSegment: 1, headersShort: 2, badProtocol: 2, tooLong: 1, csumNotEnabled: 1, outsideMemory: 0, badFlags: 1, writeError: 0, busy: 0, segmentOverMtu: 1 });
        assert.is(counters(l.dut.ns, l.dut.txTap).rx, 0, "the tap received no frame");
        // the same frame with its gso_size goes (each case above was refused for its one fault)
        putTxDesc(new DataView(mem), 0, { ...desc, gsoSize: 1000 });
        assert.is(tx.send(mem, 0, 1), 1);
        assert.is(TunTx.status(mem, 0), "ok");
        assert.is(new DataView(mem).getUint16(TX_DESC + f.outerTh + 4), 8 + 8 + 14 + 20 + 8 + 4000, "the outer UDP length, set by the module");
        assert.is(tx.stats().frames, 1);
        assert.is(counters(l.dut.ns, l.dut.txTap).rx, 1, "the tap received it");
        // a plain frame needs no gso_size
        tx.sendFrame({ ...ok, payload: pattern(900, 4), gsoSize: 0, flags: TX_INNER_UDP | TX_PLAIN });
        assert.is(tx.stats().frames, 2);
      } finally {
        tx.close();
      }
    });
  });

  test("the NVE's own AF_PACKET socket on the uplink, in a fanout group as nvedge opens it, does not get back the super-frames tuntx sends out of that uplink (PACKET_FANOUT_FLAG_IGNORE_OUTGOING)", async () => {
    await withLab(4, async (l) => {
      const pa = loadAddon();
      const h = pa.open(l.dut.uplink, { netns: l.dut.nsPath, fanout: 4242 });
      const tx = TunTx.open(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath });
      try {
        const f = udpSuperFrame(l, { dstIp: l.rem.hostIp, dstMac: l.rem.hostMac, port: 6000 });
        const rx = udpReceiver(l.rem.ns, l.rem.hostIp, 6000, 4, 8000);
        await rx.ready;
        tx.sendFrame({ ...f, payload: pattern(4000, 8), gsoSize: 1000, flags: TX_INNER_UDP });
        assert.is((JSON.parse(await rx.done) as string[]).length, 4, "the remote got them");
        await sleep(100);
        // slots of 2048 bytes from 4096, in-descs (8 bytes: offset, length, port, flags) from 0
        const mem = new ArrayBuffer(4096 + 16 * 2048), dv = new DataView(mem);
        const n = pa.recv(h, mem, 4096, 2048, 64, 0, 0, 16, 0, 200);
        const ours = Array.from({ length: n }, (_, i) => new Uint8Array(mem, 4096 + i * 2048 + dv.getUint16(i * 8, true) + 6, 6))
          .filter((src) => [...src].map((x) => x.toString(16).padStart(2, "0")).join(":") === l.dut.mac);
        assert.is(ours.length, 0, "no frame of ours came back");
        assert.is(pa.stats(h).oversize, 0, "no super-frame came back either");
      } finally {
        tx.close();
        pa.close(h);
      }
    });
  });

  test("open refuses clearly: an uplink that does not exist, a tap name taken, and the tap and its programs go with close", async () => {
    await withLab(4, async (l) => {
      assert.throws(() => TunTx.open(l.dut.txTap, "nvl-nosuch", { netns: l.dut.nsPath }), /uplink nvl-nosuch: No such device/);
      const tx = TunTx.open(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath });
      assert.throws(() => TunTx.open(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath }), /tap nvl-tx: TUNSETIFF/);
      tx.close();
      assert.is(sh(["ip", "-n", l.dut.ns, "link", "show", l.dut.txTap], { allowFail: true }).code !== 0, true, "the tap is gone");
    });
  });

  test("openStart makes the tap on a thread of the addon's while the caller goes on: the finish gives a working tap as open() does, or throws what open() would", async () => {
    await withLab(4, async (l) => {
      const bad = TunTx.openStart(l.dut.txTap, "nvl-nosuch", { netns: l.dut.nsPath });
      assert.throws(() => bad(), /uplink nvl-nosuch: No such device/, "the reason at the finish");
      const finish = TunTx.openStart(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath });
      const tx = finish();
      assert.is(sh(["ip", "-n", l.dut.ns, "-o", "link", "show", l.dut.txTap], { allowFail: true }).code, 0, "the tap exists");
      assert.ok(tx.fd >= 0 && tx.stats().mtu > 0, "an open tap with the uplink's MTU");
      assert.throws(() => TunTx.openStart(l.dut.txTap, l.dut.uplink, { netns: l.dut.nsPath })(), /tap nvl-tx: TUNSETIFF/, "the name is taken");
      assert.throws(() => finish(), /not finished yet/, "a job is finished once");
      tx.close();
      assert.is(sh(["ip", "-n", l.dut.ns, "link", "show", l.dut.txTap], { allowFail: true }).code !== 0, true, "the tap is gone");
    });
  });
  test.run();
}
