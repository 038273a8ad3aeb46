// Offloads a local sender left undone (issue 11; assembly/pipeline/offload.ts):
// a partial L4 checksum (CHECKSUM_PARTIAL, virtio-net NEEDS_CSUM) is completed,
// the segments the receiver cut from a GSO super-frame leave as the frames the
// sender's NIC would have made, and bad offload metadata is dropped under its
// own name. Every expected frame is built by the independent encoder
// (test/support/encoder.ts) with its checksums computed there, and run through
// the same data plane without offload flags: the outputs must be equal byte
// for byte.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { fixtureCache, eqBytes } from "./support/dp-fixture.js";
import type { DataPlane } from "../host/dataplane/dataplane.js";

const dpFor = fixtureCache();
const VN = 100; // VXLAN, port security and ARP suppression on
const { L1 } = F.locals(VN);
const { R1 } = F.remotes(VN);
const TCP_FIN = 0x01, TCP_PSH = 0x08, TCP_ACK = 0x10, TCP_CWR = 0x80;
const NEEDS_CSUM = 1;
const GSO = { none: 0, tcpv4: 1, udp: 3, tcpv6: 4, udpL4: 5 };

/** struct virtio_net_hdr (virtio 1.x §5.1.6), little-endian. */
const vnetHdr = E.virtioNetHdr;

/** A TCP segment (RFC 9293 §3.1); `partial`: the pseudo-header sum only, as a sender with offload leaves it. */
const tcp = E.tcpSegment;

function pattern(n: number, from = 0): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (from + i * 7) & 0xff;
  return p;
}

/** L1's tagged TCP frame to R1 (IPv4 inside). */
function tcpFrame(seq: number, flags: number, payload: Uint8Array, partial: boolean, id = 0x1234): Uint8Array {
  return E.ethernet({ dst: R1.mac, src: L1.mac, tags: [F.tagOf(VN, F.ACC1)], type: E.ETH_IPV4,
    payload: E.ipPacket({ src: L1.ip4, dst: R1.ip4, protocol: E.IPPROTO_TCP, id, payload: tcp(L1.ip4, R1.ip4, seq, flags, payload, partial) }) });
}

interface In { frame: Uint8Array; flags?: number; vnet?: Uint8Array; headroom?: number }

/** Runs the frames as one batch into `port`, each with its in-desc flags and the bytes before it; outputs and drop deltas. */
function runBatch(dp: DataPlane, port: string, ins: In[]): { outs: Uint8Array[]; drops: Record<string, number> } {
  const before = dp.counters();
  ins.forEach((x, i) => dp.load(i, dp.portIndex(port), x.frame, { flags: x.flags ?? 0, before: x.vnet, headroom: x.headroom }));
  const n = dp.process(ins.length);
  const outs: Uint8Array[] = [];
  for (let j = 0; j < n; j++) outs.push(dp.output(j).frame);
  return { outs, drops: F.dropDelta(before, dp.counters()) };
}

test("a partial TCP checksum is completed before encapsulation: the same frame as one sent with its checksum done", async () => {
  const dp = await dpFor(4);
  const f = dp.layout.descFlags;
  for (const len of [1, 2, 3, 100, 1401]) { // odd and even lengths: the sum's last byte
    const payload = pattern(len, len);
    const partial = tcpFrame(1000, TCP_ACK | TCP_PSH, payload, true);
    const full = tcpFrame(1000, TCP_ACK | TCP_PSH, payload, false);
    const got = runBatch(dp, F.ACC1, [{ frame: partial, flags: f.vnet, vnet: vnetHdr({ flags: NEEDS_CSUM, csumStart: 18 + 20, csumOffset: 16 }) }]);
    const want = runBatch(dp, F.ACC1, [{ frame: full }]);
    assert.equal(got.drops, {}, `len ${len}: nothing dropped`);
    assert.is(got.outs.length, 1);
    eqBytes(got.outs[0], want.outs[0], `len ${len}`);
    // and the inner TCP checksum verifies on its own (the encoder's RFC 1071 sum)
    const inner = got.outs[0].subarray(50 + 14); // VXLAN/IPv4: 50 bytes, then the inner Ethernet header
    const seg = inner.subarray(20);
    assert.is(E.inetChecksum(E.pseudoHeader(L1.ip4, R1.ip4, E.IPPROTO_TCP, seg.length), seg), 0, `len ${len}: checksum verifies`);
  }
});

test("without its virtio-net header the same partial frame leaves unfinished (the flag is what turns completion on)", async () => {
  const dp = await dpFor(4);
  const payload = pattern(64);
  const got = runBatch(dp, F.ACC1, [{ frame: tcpFrame(1, TCP_ACK, payload, true) }]);
  const want = runBatch(dp, F.ACC1, [{ frame: tcpFrame(1, TCP_ACK, payload, false) }]);
  assert.is(got.outs.length, 1);
  assert.not.equal(E.hex(got.outs[0]), E.hex(want.outs[0]));
});

test("a GSO super-frame cut by the receiver leaves as the segments its NIC would send (IP ID, sequence, flags, lengths, checksums)", async () => {
  const dp = await dpFor(4);
  const f = dp.layout.descFlags;
  const gso = 1400, total = 3 * gso - 250, seq = 0xfffffc00; // the sequence wraps in the second segment
  const payload = pattern(total, 3);
  const flags = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR;
  const superFrame = tcpFrame(seq, flags, payload, true, 0xfffe); // the ID wraps too
  const hl = 18 + 20 + 20;
  const vnet = vnetHdr({ flags: NEEDS_CSUM, gsoType: GSO.tcpv4, gsoSize: gso, csumStart: 18 + 20, csumOffset: 16 });
  // what host/io/native does: the headers, then gso bytes of payload, per slot
  const ins: In[] = [0, 1, 2].map((k) => ({
    frame: E.concat(superFrame.subarray(0, hl), superFrame.subarray(hl + k * gso, Math.min(hl + (k + 1) * gso, superFrame.length))),
    flags: f.vnet | f.gsoSeg | (k << f.segShift) | (k === 2 ? f.gsoLast : 0),
    vnet,
  }));
  const got = runBatch(dp, F.ACC1, ins);
  assert.equal(got.drops, {});
  assert.is(got.outs.length, 3);
  for (let k = 0; k < 3; k++) {
    const segFlags = TCP_ACK | (k === 0 ? TCP_CWR : 0) | (k === 2 ? TCP_PSH | TCP_FIN : 0);
    const expected = tcpFrame((seq + k * gso) >>> 0, segFlags, payload.subarray(k * gso, Math.min((k + 1) * gso, total)), false, (0xfffe + k) & 0xffff);
    const want = runBatch(dp, F.ACC1, [{ frame: expected }]);
    eqBytes(got.outs[k], want.outs[0], `segment ${k}`);
  }
});

test("a USO (UDP_L4) segment gets its UDP length and checksum", async () => {
  const dp = await dpFor(4);
  const f = dp.layout.descFlags;
  const gso = 500;
  const payload = pattern(gso, 9);
  const sent = F.accessFrame(L1, R1, { payloadLen: 3 * gso }); // the super-frame: its lengths are the whole datagram's
  const hl = 18 + 20 + 8;
  const seg1 = E.concat(sent.subarray(0, hl), payload);
  const got = runBatch(dp, F.ACC1, [{ frame: seg1, flags: f.vnet | f.gsoSeg | (1 << f.segShift), vnet: vnetHdr({ flags: NEEDS_CSUM, gsoType: GSO.udpL4, gsoSize: gso, csumStart: 38, csumOffset: 6 }) }]);
  assert.equal(got.drops, {});
  const inner = got.outs[0].subarray(50 + 14);
  const udpSeg = inner.subarray(20);
  assert.is((udpSeg[4] << 8) | udpSeg[5], 8 + gso, "UDP length");
  assert.is((inner[2] << 8) | inner[3], 20 + 8 + gso, "IP total length");
  assert.is(E.inetChecksum(inner.subarray(0, 20)), 0, "IP header checksum");
  assert.ok(E.udpChecksumOk(L1.ip4, R1.ip4, udpSeg), "UDP checksum");
  eqBytes(udpSeg.subarray(8), payload, "payload");
});

test("a partial outer UDP checksum from a kernel VTEP (IPv6 underlay) is completed, not dropped as bad-udp-checksum", async () => {
  const dp = await dpFor(6);
  const f = dp.layout.descFlags;
  const inner = F.innerFrame(R1, L1, { payloadLen: 200 });
  const good = F.fromRemote(F.REMOTES[0], 6, VN, inner);
  const partial = good.slice();
  const udpLen = (partial[14 + 4] << 8) | partial[14 + 5];
  const sum = ~E.inetChecksum(E.pseudoHeader(F.remoteIp(F.REMOTES[0], 6), F.underlayIp(6), E.IPPROTO_UDP, udpLen)) & 0xffff;
  partial[54 + 6] = sum >>> 8;
  partial[54 + 7] = sum & 0xff;
  const plain = runBatch(dp, F.UPLINK, [{ frame: partial }]);
  assert.equal(plain.drops, { "bad-udp-checksum": 1 }, "the same frame without the header is still refused");
  const got = runBatch(dp, F.UPLINK, [{ frame: partial, flags: f.vnet, vnet: vnetHdr({ flags: NEEDS_CSUM, csumStart: 54, csumOffset: 6 }) }]);
  const want = runBatch(dp, F.UPLINK, [{ frame: good }]);
  assert.equal(got.drops, {});
  assert.is(got.outs.length, 1);
  eqBytes(got.outs[0], want.outs[0], "decapsulated");
});

test("bad offload metadata: each case dropped under its own reason, the frames around it unharmed", async () => {
  const dp = await dpFor(4);
  const f = dp.layout.descFlags;
  const payload = pattern(300);
  const frame = tcpFrame(5, TCP_ACK, payload, true);
  const csum = { flags: NEEDS_CSUM, csumStart: 38, csumOffset: 16 };
  const cases: [string, In, string][] = [
    ["a truncated virtio-net header (6 bytes of headroom)", { frame, flags: f.vnet, vnet: vnetHdr(csum), headroom: 6 }, "bad-vnet-header"],
    ["csum_start past the frame", { frame, flags: f.vnet, vnet: vnetHdr({ ...csum, csumStart: frame.length }) }, "bad-vnet-header"],
    ["a segment that is not the last, shorter than gso_size", { frame, flags: f.vnet | f.gsoSeg, vnet: vnetHdr({ ...csum, gsoType: GSO.tcpv4, gsoSize: 1400 }) }, "bad-gso-size"],
    ["a segment longer than gso_size", { frame, flags: f.vnet | f.gsoSeg | f.gsoLast, vnet: vnetHdr({ ...csum, gsoType: GSO.tcpv4, gsoSize: 100 }) }, "bad-gso-size"],
    ["gso_size 0", { frame, flags: f.vnet | f.gsoSeg | f.gsoLast, vnet: vnetHdr({ ...csum, gsoType: GSO.tcpv4, gsoSize: 0 }) }, "bad-gso-size"],
    ["UFO (IP fragmentation offload)", { frame, flags: f.vnet, vnet: vnetHdr({ ...csum, gsoType: GSO.udp, gsoSize: 100 }) }, "gso-unsupported"],
    ["TCPv4 GSO on a UDP datagram", { frame: F.accessFrame(L1, R1, { payloadLen: 300 }), flags: f.vnet, vnet: vnetHdr({ ...csum, csumOffset: 6, gsoType: GSO.tcpv4, gsoSize: 1400 }) }, "gso-unsupported"],
  ];
  const good = tcpFrame(6, TCP_ACK, payload, false);
  for (const [label, bad, reason] of cases) {
    const r = runBatch(dp, F.ACC1, [{ frame: good }, bad, { frame: good }]);
    assert.equal(r.drops, { [reason]: 1 }, label);
    assert.is(r.outs.length, 2, `${label}: the good frames around it left`);
  }
});

test.run();
