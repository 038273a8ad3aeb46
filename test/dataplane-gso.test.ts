// A TCP super-frame forwarded whole (issue 11; assembly/pipeline/gso.ts):
// the receiver hands the data plane segment 0 with IF_GSO_WHOLE and a whole
// record (token, rest of the payload left in its ring); when segment 0's one
// output goes to a port that takes TSO, that output becomes the super-frame's
// headers (full IP length, the TCP flags of the whole, the pseudo-header
// checksum of CHECKSUM_PARTIAL) with a GSO record for the sender, and is
// counted as one frame of the whole length. Anything else leaves segment 0 as
// the cut path makes it. Expected frames come from the independent encoder
// (test/support/encoder.ts).
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { fixtureCache, fixtureDp, eqBytes } from "./support/dp-fixture.js";
import type { DataPlane } from "../host/dataplane/dataplane.js";
import { OUT_DESC, O_PORT, OF_GSO, OG_SIZE, OG_TOKEN, OG_VNET, OG_KIND, OG_OUTER_TH, OG_INNER_NH, OGK_TSO, OGK_TUNNEL, GSO_CAP_TSO, GSO_CAP_TUNNEL,
         IW_SIZE } from "../host/dataplane/abi.js";

const dpFor = fixtureCache();
const VN = 100; // VXLAN
const { L1, L2 } = F.locals(VN);
const { R1 } = F.remotes(VN);
const TCP_FIN = 0x01, TCP_PSH = 0x08, TCP_ACK = 0x10;
const GSO_TCPV4 = 1;
const GSZ = 1000, TOTAL = 3500, SEQ = 77, ID = 0x4321, TOKEN = 0x00030009;
const payload = Uint8Array.from({ length: TOTAL }, (_, i) => (i * 13 + 5) & 0xff);

/** TCP header + payload; `partial`: the checksum field holds the pseudo-header sum only (CHECKSUM_PARTIAL). */
function tcp(src: string, dst: string, flags: number, data: Uint8Array): Uint8Array {
  const seg = E.concat(E.be16(80), E.be16(40000), E.be32(SEQ), E.be32(9), E.u8(5 << 4, flags), E.be16(512), E.be16(0), E.be16(0), data);
  const sum = ~E.inetChecksum(E.pseudoHeader(src, dst, E.IPPROTO_TCP, seg.length)) & 0xffff;
  seg[16] = sum >>> 8;
  seg[17] = sum & 0xff;
  return seg;
}
/** An IPv4 TCP super-frame from `from` to `to` (tags: on an access port). */
function tcpSuper(from: F.Host, to: F.Host, tags: E.Tag[] = []): Uint8Array {
  return E.ethernet({ dst: to.mac, src: from.mac, tags, type: E.ETH_IPV4,
    payload: E.ipPacket({ src: from.ip4, dst: to.ip4, protocol: E.IPPROTO_TCP, id: ID, payload: tcp(from.ip4, to.ip4, TCP_ACK | TCP_PSH | TCP_FIN, payload) }) });
}

/** The whole record (IW_*: token, rest) then the virtio-net header, the bytes before segment 0 in its slot. */
function before(csumStart: number, o: { gso?: number; rest?: number } = {}): Uint8Array {
  const b = new Uint8Array(IW_SIZE + 10);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, TOKEN, true);
  dv.setUint32(4, o.rest ?? TOTAL - GSZ, true);
  b[IW_SIZE] = 1; // NEEDS_CSUM
  b[IW_SIZE + 1] = GSO_TCPV4;
  dv.setUint16(IW_SIZE + 4, o.gso ?? GSZ, true);
  dv.setUint16(IW_SIZE + 6, csumStart, true);
  dv.setUint16(IW_SIZE + 8, 16, true);
  return b;
}

interface Out {
  port: string; gso: boolean; frame: Uint8Array;
  rec: { token: number; flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number; kind: number; outerTh?: number; innerNh?: number };
}
/** Segment 0 of `superFrame` (headers to hl, then GSZ bytes) into `port` with `flags`; outputs with their raw OF_GSO and GSO record; counter deltas. */
function run(dp: DataPlane, port: string, seg0: Uint8Array, flags: number, pre: Uint8Array, headroom?: number) {
  const c0 = dp.counters();
  dp.load(0, dp.portIndex(port), seg0, { flags, before: pre, headroom });
  const n = dp.process(1);
  const dv = new DataView(dp.memory.buffer);
  const L = dp.layout;
  const outs: Out[] = [];
  for (let j = 0; j < n; j++) {
    const o = dp.output(j);
    const rec = L.hdrBase + j * L.hdrSlot + L.hdrSlot - OG_SIZE;
    const v = rec + OG_VNET;
    outs.push({ port: dp.portName(o.port), gso: (dv.getUint16(L.outDescBase + j * OUT_DESC + O_PORT, true) & OF_GSO) !== 0, frame: o.frame,
      rec: { token: dv.getUint32(rec + OG_TOKEN, true), flags: dv.getUint8(v), gsoType: dv.getUint8(v + 1), hdrLen: dv.getUint16(v + 2, true),
             gsoSize: dv.getUint16(v + 4, true), csumStart: dv.getUint16(v + 6, true), csumOffset: dv.getUint16(v + 8, true), kind: dv.getUint8(rec + OG_KIND),
             ...(dv.getUint8(rec + OG_KIND) === OGK_TUNNEL ? { outerTh: dv.getUint16(rec + OG_OUTER_TH, true), innerNh: dv.getUint16(rec + OG_INNER_NH, true) } : {}) } });
  }
  const c1 = dp.counters();
  const port_ = (p: string) => ({ rxBytes: c1.ports[p].rxBytes - c0.ports[p].rxBytes, txBytes: c1.ports[p].txBytes - c0.ports[p].txBytes,
                                  rxFrames: c1.ports[p].rxFrames - c0.ports[p].rxFrames, txFrames: c1.ports[p].txFrames - c0.ports[p].txFrames });
  return { outs, drops: F.dropDelta(c0, c1), port: port_ };
}

/** The fixture's data plane with TSO on the access ports for the test, off again after. */
async function withTso(body: (dp: DataPlane) => void): Promise<void> {
  const dp = await dpFor(4);
  for (const p of F.ACCESS_PORTS) dp.portGso(dp.portIndex(p), GSO_CAP_TSO);
  try { body(dp); } finally { for (const p of F.ACCESS_PORTS) dp.portGso(dp.portIndex(p), 0); }
}

// The kernel VTEP's tunnel-GSO super-frame: outer Ethernet/IPv4/UDP/VXLAN, inner Ethernet/IPv4/TCP.
const INNER_L4 = 14 + 20 + 8 + 8 + 14 + 20;
const decapSuper = () => F.fromRemote(F.REMOTES[0], 4, VN, tcpSuper(R1, L1));
const seg0Of = (f: Uint8Array, l4: number) => f.subarray(0, l4 + 20 + GSZ);

test("a kernel VTEP's super-frame is decapsulated once: one output to the VM's port with the inner super-frame's headers, a TSO record, counted whole", () => withTso((dp) => {
  const f = dp.layout.descFlags;
  const whole = decapSuper();
  const r = run(dp, F.UPLINK, seg0Of(whole, INNER_L4), f.vnet | f.gsoSeg | f.gsoWhole, before(INNER_L4));
  assert.equal(r.drops, {});
  assert.is(r.outs.length, 1);
  const o = r.outs[0];
  assert.is(o.port, F.ACC1);
  assert.ok(o.gso, "OF_GSO: a whole super-frame");
  // the inner super-frame as the VM's port gets it, of which the output holds segment 0's bytes
  const want = tcpSuper(R1, L1, [F.tagOf(VN, F.ACC1)]);
  const cs = 18 + 20;
  eqBytes(o.frame, want.subarray(0, cs + 20 + GSZ), "headers of the whole (IP length, FIN/PSH, pseudo-header checksum), then segment 0's payload");
  assert.equal(o.rec, { token: TOKEN, flags: 1, gsoType: GSO_TCPV4, hdrLen: cs + 20, gsoSize: GSZ, csumStart: cs, csumOffset: 16, kind: OGK_TSO });
  assert.equal(r.port(F.ACC1), { rxBytes: 0, txBytes: want.length, rxFrames: 0, txFrames: 1 }, "one frame of the whole length to the VM");
  assert.equal(r.port(F.UPLINK), { rxBytes: whole.length, txBytes: 0, rxFrames: 1, txFrames: 0 }, "one frame of the whole length from the underlay");
}));

test("a VM's super-frame to a VNIC on another access port (hairpin, re-tagged) goes whole", () => withTso((dp) => {
  const f = dp.layout.descFlags;
  const whole = tcpSuper(L2, L1, [F.tagOf(VN, F.ACC2)]);
  const r = run(dp, F.ACC2, seg0Of(whole, 18 + 20), f.vnet | f.gsoSeg | f.gsoWhole, before(18 + 20));
  assert.equal(r.drops, {});
  assert.is(r.outs.length, 1);
  assert.ok(r.outs[0].gso);
  eqBytes(r.outs[0].frame, tcpSuper(L2, L1, [F.tagOf(VN, F.ACC1)]).subarray(0, 18 + 20 + 20 + GSZ), "re-tagged, the whole's headers");
}));

test("no promotion where the output cannot take it: a port without TSO, an encap (no tunnel GSO output), a flood; segment 0 leaves as the cut path makes it", async () => {
  const dp = await dpFor(4);
  const f = dp.layout.descFlags;
  const seg0 = seg0Of(decapSuper(), INNER_L4);
  const cut = run(dp, F.UPLINK, seg0, f.vnet | f.gsoSeg, before(INNER_L4)); // what the receiver's cut gives for segment 0
  const plain = run(dp, F.UPLINK, seg0, f.vnet | f.gsoSeg | f.gsoWhole, before(INNER_L4));
  assert.is(plain.outs.length, 1);
  assert.not.ok(plain.outs[0].gso, "no TSO on the port: not promoted");
  eqBytes(plain.outs[0].frame, cut.outs[0].frame, "segment 0, as cut");
  await withTso((tdp) => {
    // a VM's super-frame to a remote VNIC: an encap, whose port (the underlay) has no tunnel GSO output
    const enc = tcpSuper(L1, R1, [F.tagOf(VN, F.ACC1)]);
    const e = run(tdp, F.ACC1, seg0Of(enc, 18 + 20), f.vnet | f.gsoSeg | f.gsoWhole, before(18 + 20));
    assert.equal(e.drops, {});
    assert.is(e.outs.length, 1);
    assert.is(e.outs[0].port, F.UPLINK);
    assert.not.ok(e.outs[0].gso, "encap: not promoted");
    // unknown unicast from the underlay: flooded to the VN's local ports
    const fl = F.fromRemote(F.REMOTES[0], 4, VN, tcpSuper(R1, { ...L1, mac: F.unknownMac(VN) }));
    const d = run(tdp, F.UPLINK, seg0Of(fl, INNER_L4), f.vnet | f.gsoSeg | f.gsoWhole, before(INNER_L4));
    assert.ok(d.outs.length >= 2, `flooded (${d.outs.length} outputs)`);
    assert.ok(d.outs.every((o) => !o.gso), "flood: none promoted");
  });
});

test("a policed VNIC's super-frame (qos.rateMbps) is not promoted: its policer is charged segment by segment", async () => {
  const dp = await fixtureDp(4);
  dp.apply([{ op: "vn", vn: VN, vni: F.vn(VN).vni, profile: { ...F.vn(VN).profile, qos: { rateMbps: 10000, burstKb: 1024 } } }]);
  for (const p of F.ACCESS_PORTS) dp.portGso(dp.portIndex(p), GSO_CAP_TSO);
  const f = dp.layout.descFlags;
  const r = run(dp, F.ACC2, seg0Of(tcpSuper(L2, L1, [F.tagOf(VN, F.ACC2)]), 18 + 20), f.vnet | f.gsoSeg | f.gsoWhole, before(18 + 20));
  assert.equal(r.drops, {});
  assert.is(r.outs.length, 1, "forwarded (within the rate)");
  assert.not.ok(r.outs[0].gso, "hairpin from a policed VNIC: segment 0 alone");
  // the same VN without the policer: promoted (the check above is what stops it)
  dp.apply([{ op: "vn", vn: VN, vni: F.vn(VN).vni, profile: F.vn(VN).profile }]);
  const r2 = run(dp, F.ACC2, seg0Of(tcpSuper(L2, L1, [F.tagOf(VN, F.ACC2)]), 18 + 20), f.vnet | f.gsoSeg | f.gsoWhole, before(18 + 20));
  assert.ok(r2.outs.length === 1 && r2.outs[0].gso, "unpoliced: whole");
});

test("bad whole candidates: dropped under their own reason, or forwarded as segment 0 unpromoted; never a trap", () => withTso((dp) => {
  const f = dp.layout.descFlags;
  const W = f.vnet | f.gsoSeg | f.gsoWhole;
  const seg0 = seg0Of(decapSuper(), INNER_L4);
  const drops: [string, Uint8Array, Uint8Array, number | undefined, string][] = [
    ["segment 0 shorter than gso_size", seg0, before(INNER_L4, { gso: GSZ + 1 }), undefined, "bad-gso-size"],
    ["a truncated virtio-net header (6 bytes of headroom)", seg0, before(INNER_L4), 6, "bad-vnet-header"],
    ["csum_start past the frame", seg0, before(seg0.length), undefined, "bad-vnet-header"],
    ["an inner IPv4 header of 16 bytes (IHL 4)", (() => { const b = seg0.slice(); b[INNER_L4 - 20] = 0x44; return b; })(), before(INNER_L4), undefined, "bad-vnet-header"],
    ["an inner frame that is not IP under TCP GSO", (() => { const b = seg0.slice(); b[INNER_L4 - 22] = 0x08; b[INNER_L4 - 21] = 0x06; return b; })(), before(INNER_L4), undefined, "gso-unsupported"],
    ["an unknown VNI", seg0Of(F.fromRemote(F.REMOTES[0], 4, VN, tcpSuper(R1, L1), { vni: 4242 }), INNER_L4), before(INNER_L4), undefined, "unknown-vni"],
  ];
  for (const [label, frame, pre, headroom, reason] of drops) {
    const r = run(dp, F.UPLINK, frame, W, pre, headroom);
    assert.equal(r.drops, { [reason]: 1 }, label);
    assert.is(r.outs.length, 0, label);
  }
  // a record saying no payload is left (rest 0), or no room for the record (14 bytes of headroom): segment 0 alone, unpromoted
  // ... and the flag on what the receiver never offers: a last segment, a segment other than 0
  const cases: [string, Uint8Array, number | undefined, number][] = [
    ["rest 0", before(INNER_L4, { rest: 0 }), undefined, W],
    ["no room for the record", before(INNER_L4), 14, W],
    ["segment 0 marked last", before(INNER_L4), undefined, W | f.gsoLast],
    ["segment 1", before(INNER_L4), undefined, W | (1 << f.segShift)],
  ];
  for (const [label, pre, headroom, flags] of cases) {
    const r = run(dp, F.UPLINK, seg0, flags, pre, headroom);
    assert.equal(r.drops, {}, label);
    assert.is(r.outs.length, 1, label);
    assert.not.ok(r.outs[0].gso, `${label}: not promoted`);
  }
}));

for (const fam of [4, 6] as const) {
  test(`IPv${fam} underlay with a tunnel-GSO output: a VM's super-frame is encapsulated once, outer and inner lengths of the whole, a UDP tunnel GSO record`, async () => {
    const dp = await dpFor(fam);
    const f = dp.layout.descFlags;
    const up = dp.portIndex(F.UPLINK);
    dp.portGso(up, GSO_CAP_TUNNEL);
    try {
      const inner = tcpSuper(L1, R1); // as it goes into the tunnel: untagged
      const r = run(dp, F.ACC1, seg0Of(tcpSuper(L1, R1, [F.tagOf(VN, F.ACC1)]), 18 + 20), f.vnet | f.gsoSeg | f.gsoWhole, before(18 + 20));
      assert.equal(r.drops, {});
      assert.is(r.outs.length, 1);
      const o = r.outs[0];
      assert.is(o.port, F.UPLINK);
      assert.ok(o.gso, "OF_GSO");
      const ip = 14, oip = fam === 4 ? 20 : 40, oth = ip + oip, innerAt = oth + 8 + 8;
      const dv = new DataView(o.frame.buffer, o.frame.byteOffset);
      eqBytes(o.frame.subarray(innerAt), inner.subarray(0, 14 + 20 + 20 + GSZ), "the inner super-frame's headers, then segment 0's payload");
      const ulen = 16 + inner.length;
      if (fam === 4) {
        assert.is(dv.getUint16(ip + 2), oip + ulen, "outer IPv4 total length of the whole");
        assert.is(E.inetChecksum(o.frame.subarray(ip, ip + oip)), 0, "outer IPv4 header checksum");
      } else {
        assert.is(dv.getUint16(ip + 4), ulen, "outer IPv6 payload length of the whole");
      }
      assert.is(dv.getUint16(oth + 4), ulen, "outer UDP length of the whole");
      // IPv4: no outer UDP checksum (RFC 7348 §5); IPv6: one per segment, from the pseudo-header sum in the field
      const pseudo = ~E.inetChecksum(E.pseudoHeader(F.underlayIp(fam), F.remoteIp(F.REMOTES[0], fam), E.IPPROTO_UDP, ulen)) & 0xffff;
      assert.is(dv.getUint16(oth + 6), fam === 4 ? 0 : pseudo, "outer UDP checksum field");
      const cs = innerAt + 14 + 20;
      assert.equal(o.rec, { token: TOKEN, flags: fam === 4 ? 1 : 1 | 8, gsoType: GSO_TCPV4 | (fam === 4 ? 0x20 : 0x40), hdrLen: cs + 20, gsoSize: GSZ,
                            csumStart: cs, csumOffset: 16, kind: OGK_TUNNEL, outerTh: oth, innerNh: innerAt + 14 });
      assert.is(r.port(F.UPLINK).txBytes, o.frame.length + TOTAL - GSZ, "one frame of the whole length");
    } finally {
      dp.portGso(up, 0);
    }
  });
}

test.run();
