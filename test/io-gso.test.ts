// A TCP super-frame through the AF_PACKET addon whole (issue 11; the native
// half of assembly/pipeline/gso.ts): recv() offers segment 0 alone with
// IF_GSO_WHOLE and a whole record (token, rest), leaving the payload after it
// in the ring; send() of an OF_GSO output with that token gathers the rest
// and asks the kernel for TSO, so the frame crosses the veth as one skb (seen
// by a second socket as one GSO super-frame); without it, the next recv()
// cuts the rest into segments as before. Real veth pairs in a test-made
// namespace, the super-frame sent by an independent Python AF_PACKET socket
// with PACKET_VNET_HDR. Needs root.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadAddon } from "../host/io/addon.js";
import { tmpNetns, injectFrames } from "./support/io-net.js";
import { requireRootAnd } from "./support/tools.js";
import * as E from "./support/encoder.js";
import { IN_DESC, I_OFF, I_LEN, I_FLAGS, OUT_DESC, O_PORT, O_HDRLEN, O_DATA, O_DATALEN, IF_VNET, IF_GSO_SEG, IF_GSO_LAST,
         IF_GSO_WHOLE, IF_SEG_SHIFT, IW_SIZE, IW_TOKEN, IW_REST, OF_GSO, OG_SIZE, OG_TOKEN, OG_VNET, OG_KIND, OGK_TSO } from "../host/dataplane/abi.js";

const L = { slotBase: 0x10000, slotSize: 2048, headroom: 128, inDescBase: 0x100000, outDescBase: 0x101000, hdrBase: 0x110000, hdrSlot: 128 };
const GSO = 1000, PAYLOAD = 3500, HL = 14 + 20 + 20; // 4 segments: 3 x 1000 + 500
const SRC = "10.9.0.1", DST = "10.9.0.2";

const payload = Uint8Array.from({ length: PAYLOAD }, (_, i) => (i * 7 + 3) & 0xff);

/** The TCP super-frame as a local stack with TSO leaves it: full lengths, the pseudo-header sum in the TCP checksum (partial). */
function superFrame(p: Uint8Array = payload): Uint8Array {
  return E.ethernet({ dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01", type: E.ETH_IPV4,
    payload: E.ipPacket({ src: SRC, dst: DST, protocol: E.IPPROTO_TCP, payload: E.tcpSegment(SRC, DST, 1000, 0x18, p, true) }) });
}

/** struct virtio_net_hdr: NEEDS_CSUM at the TCP checksum, GSO_TCPV4 with gso_size GSO. */
function vnet(): Uint8Array {
  return E.virtioNetHdr({ flags: 1, gsoType: 1, hdrLen: HL, gsoSize: GSO, csumStart: 34, csumOffset: 16 });
}

if (requireRootAnd(["python3"], "the AF_PACKET addon's whole super-frames (network namespaces, CAP_NET_RAW)")) {
  const addon = loadAddon();
  addon.descFlags(IF_VNET, IF_GSO_SEG, IF_GSO_LAST, IF_SEG_SHIFT);

  interface Rig { mem: WebAssembly.Memory; dv: DataView; u8: Uint8Array; rx: number; tx: number; peer: number; inject: (count?: number) => void;
                  /** One super-frame with this payload (PAYLOAD bytes). */ injectPayload: (p: Uint8Array) => void }
  /**
   * Two veth pairs in a fresh namespace: a1 -> b1 carries the injected
   * super-frame to `rx` (vnetHdr, whole on), `tx` sends on a2 and `peer`
   * (vnetHdr, whole off: it cuts) sees it on b2. Gone after body, whatever happens.
   */
  async function withRig(body: (r: Rig) => void | Promise<void>): Promise<void> {
    const ns = tmpNetns("gso");
    const hs: number[] = [];
    try {
      const [a1, b1] = ns.veth("x");
      const [a2, b2] = ns.veth("y");
      const ring = { blockSize: 1 << 18, blockCount: 2, vnetHdr: 1, netns: ns.path };
      hs.push(addon.open(b1, ring), addon.open(a2, ring), addon.open(b2, { ...ring, whole: 0 }));
      const mem = new WebAssembly.Memory({ initial: 64 });
      const frame = E.concat(vnet(), superFrame());
      await body({ mem, dv: new DataView(mem.buffer), u8: new Uint8Array(mem.buffer), rx: hs[0], tx: hs[1], peer: hs[2],
                   inject: (count = 1) => injectFrames(ns, a1, Array.from({ length: count }, () => frame), { vnetHdr: true }),
                   injectPayload: (p) => injectFrames(ns, a1, [E.concat(vnet(), superFrame(p))], { vnetHdr: true }) });
    } finally {
      for (const h of hs) addon.close(h);
      ns.remove();
    }
  }

  const recvAll = (r: Rig, h: number, want: number, max = 16) => {
    let n = 0;
    const deadline = Date.now() + 3000;
    while (n < want && Date.now() < deadline) n += addon.recv(h, r.mem.buffer, L.slotBase, L.slotSize, L.headroom, L.inDescBase, n, max - n, 0, 100);
    return n;
  };
  const slot = (r: Rig, i: number) => {
    const d = L.inDescBase + i * IN_DESC;
    const off = r.dv.getUint16(d + I_OFF, true), len = r.dv.getUint16(d + I_LEN, true);
    const at = L.slotBase + i * L.slotSize + off;
    return { off, len, at, flags: r.dv.getUint16(d + I_FLAGS, true), frame: r.u8.slice(at, at + len) };
  };
  /** What the data plane does for a promoted output (gso.ts): output 0 = slot i's frame, its headers the super-frame's, OF_GSO, the GSO record. */
  const promote = (r: Rig, token: number, i = 0) => {
    const s = slot(r, i);
    r.dv.setUint16(s.at + 16, 20 + 20 + PAYLOAD); // IPv4 total length
    r.dv.setUint16(s.at + 24, 0);
    r.dv.setUint16(s.at + 24, E.inetChecksum(r.u8.subarray(s.at + 14, s.at + 34)));
    r.dv.setUint16(s.at + 50, ~E.inetChecksum(E.pseudoHeader(SRC, DST, E.IPPROTO_TCP, 20 + PAYLOAD)) & 0xffff);
    r.u8.copyWithin(L.hdrBase, s.at, s.at + 14);
    const d = L.outDescBase;
    r.dv.setUint16(d + O_PORT, 0 | OF_GSO, true);
    r.dv.setUint16(d + O_HDRLEN, 14, true);
    r.dv.setUint32(d + O_DATA, s.at + 14, true);
    r.dv.setUint16(d + O_DATALEN, s.len - 14, true);
    const rec = L.hdrBase + L.hdrSlot - OG_SIZE;
    r.dv.setUint32(rec + OG_TOKEN, token, true);
    r.u8.set(vnet(), rec + OG_VNET);
    r.u8[rec + OG_KIND] = OGK_TSO;
  };
  const wholeRecord = (r: Rig, i = 0) => {
    const s = slot(r, i);
    const rec = s.at - 10 - IW_SIZE;
    return { token: r.dv.getUint32(rec + IW_TOKEN, true), rest: r.dv.getUint32(rec + IW_REST, true) };
  };

  test("recv offers a TCP super-frame's segment 0 whole; send of its OF_GSO output gathers the rest from the ring: one GSO frame on the wire", () => withRig((r) => {
    r.inject();
    assert.is(recvAll(r, r.rx, 1), 1, "segment 0 alone");
    const s0 = slot(r, 0);
    assert.is(s0.flags, IF_VNET | IF_GSO_SEG | IF_GSO_WHOLE, "segment 0 of a whole candidate");
    assert.is(s0.len, HL + GSO);
    assert.equal(s0.frame.subarray(HL), payload.subarray(0, GSO), "its payload: the first gso_size bytes");
    const w = wholeRecord(r);
    assert.is(w.rest, PAYLOAD - GSO, "the rest, left in the ring");
    promote(r, w.token);
    assert.is(addon.send([r.tx], r.mem.buffer, L.outDescBase, L.hdrBase, L.hdrSlot, 1), 1);
    // the peer socket cuts what it gets: one super-frame of 4 segments, the payload whole and in order
    assert.is(recvAll(r, r.peer, 4), 4, "the super-frame crossed the veth");
    const got = E.concat(...[0, 1, 2, 3].map((k) => slot(r, k).frame.subarray(HL)));
    assert.equal(got, payload, "its payload, every byte");
    const ps = addon.stats(r.peer);
    assert.equal([ps.gsoFrames, ps.gsoSegments], [1, 4], "one GSO skb, not four frames");
    assert.is(addon.stats(r.tx).txBytes, HL + PAYLOAD, "counted as one frame of its whole length");
    // the next recv finds it taken: nothing more from it
    assert.is(addon.recv(r.rx, r.mem.buffer, L.slotBase, L.slotSize, L.headroom, L.inDescBase, 0, 16, 0, 50), 0);
    const st = addon.stats(r.rx);
    assert.equal([st.gsoWholeSent, st.gsoWholeStale, st.gsoFrames], [1, 0, 0]);
  }));

  test("a whole candidate that no output took is cut by the next recv: segments 1.. in order, the last marked", () => withRig((r) => {
    r.inject();
    assert.is(recvAll(r, r.rx, 1), 1);
    assert.is(slot(r, 0).flags & IF_GSO_WHOLE, IF_GSO_WHOLE);
    // no send: the data plane dropped, flooded or encapsulated it
    assert.is(recvAll(r, r.rx, 3), 3);
    for (let k = 1; k <= 3; k++) {
      const s = slot(r, k - 1);
      assert.is(s.flags, IF_VNET | IF_GSO_SEG | (k << IF_SEG_SHIFT) | (k === 3 ? IF_GSO_LAST : 0), `segment ${k} flags`);
      assert.equal(s.frame.subarray(HL), payload.subarray(k * GSO, Math.min(PAYLOAD, (k + 1) * GSO)), `segment ${k} payload`);
    }
    const st = addon.stats(r.rx);
    assert.equal([st.gsoFrames, st.gsoSegments, st.gsoWholeSent], [1, 4, 0]);
  }));

  test("an OF_GSO output whose token is not the super-frame at the ring's head is not sent (gsoWholeStale); the super-frame is then cut", () => withRig((r) => {
    r.inject();
    assert.is(recvAll(r, r.rx, 1), 1);
    const w = wholeRecord(r);
    promote(r, (w.token & 0xffff0000) | ((w.token + 1) & 0xffff)); // another generation
    assert.is(addon.send([r.tx], r.mem.buffer, L.outDescBase, L.hdrBase, L.hdrSlot, 1), 0);
    assert.is(addon.stats(r.rx).gsoWholeStale, 1);
    assert.is(recvAll(r, r.rx, 3), 3, "segments 1..3 follow");
    assert.is(addon.stats(r.tx).txFrames, 0, "nothing left on the wire");
  }));

  test("several super-frames offered in one batch: the one taken goes whole, the others are cut by the next recv in ring order; the ring's blocks are held meanwhile", () => withRig((r) => {
    r.inject(3);
    assert.is(recvAll(r, r.rx, 3), 3, "three segments 0 in one batch");
    for (let i = 0; i < 3; i++) assert.is(slot(r, i).flags, IF_VNET | IF_GSO_SEG | IF_GSO_WHOLE, `candidate ${i}`);
    const tokens = [0, 1, 2].map((i) => wholeRecord(r, i).token);
    assert.is(new Set(tokens).size, 3, "a token each");
    promote(r, tokens[1], 1);
    assert.is(addon.send([r.tx], r.mem.buffer, L.outDescBase, L.hdrBase, L.hdrSlot, 1), 1);
    assert.is(recvAll(r, r.peer, 4), 4, "the second crossed whole");
    assert.equal(E.concat(...[0, 1, 2, 3].map((k) => slot(r, k).frame.subarray(HL))), payload);
    assert.is(recvAll(r, r.rx, 6), 6, "the first's and the third's segments 1..3");
    for (let i = 0; i < 6; i++) {
      const k = (i % 3) + 1;
      const s = slot(r, i);
      assert.is(s.flags, IF_VNET | IF_GSO_SEG | (k << IF_SEG_SHIFT) | (k === 3 ? IF_GSO_LAST : 0), `slot ${i}: segment ${k}`);
      assert.equal(s.frame.subarray(HL), payload.subarray(k * GSO, Math.min(PAYLOAD, (k + 1) * GSO)), `slot ${i} payload`);
    }
    const st = addon.stats(r.rx);
    assert.equal([st.gsoWholeSent, st.gsoFrames, st.gsoSegments], [1, 2, 3 + 6]);
    // the ring goes on: a fourth super-frame is offered again (the last resolved was not taken: a probe, one in 64, or cut)
    r.inject();
    assert.is(recvAll(r, r.rx, 4), 4, "the next super-frame: cut (no probe due)");
    assert.is(addon.stats(r.rx).gsoFrames, 3);
  }));

  // Issue 11, session 9: a super-frame is copied into a buffer by recvmsg()
  // and out of it by send(); the buffer taken for the next one is the one the
  // last send() read (afpacket.c takeBuf/giveBuf), so its lines are still in
  // the core's cache. Before, a buffer per pending entry (gen % 16) cycled
  // through 17 of them. Each super-frame here has a payload of its own, so a
  // buffer handed back too early (sent from after it was reused) shows.
  test("super-frames taken whole one after another reuse the buffer the last send read: two buffers, every payload byte-identical", () => withRig((r) => {
    const ROUNDS = 24;
    for (let i = 0; i < ROUNDS; i++) {
      const p = Uint8Array.from({ length: PAYLOAD }, (_, k) => (k * 13 + i * 31 + 5) & 0xff);
      r.injectPayload(p);
      assert.is(recvAll(r, r.rx, 1), 1, `round ${i}: segment 0`);
      assert.is(slot(r, 0).flags & IF_GSO_WHOLE, IF_GSO_WHOLE, `round ${i}: offered whole`);
      promote(r, wholeRecord(r).token);
      assert.is(addon.send([r.tx], r.mem.buffer, L.outDescBase, L.hdrBase, L.hdrSlot, 1), 1, `round ${i}: sent whole`);
      assert.is(recvAll(r, r.peer, 4), 4, `round ${i}: crossed the veth`);
      assert.equal(E.concat(...[0, 1, 2, 3].map((k) => slot(r, k).frame.subarray(HL))), p, `round ${i}: its own payload, every byte`);
    }
    assert.is(addon.recv(r.rx, r.mem.buffer, L.slotBase, L.slotSize, L.headroom, L.inDescBase, 0, 16, 0, 50), 0, "nothing left");
    const st = addon.stats(r.rx);
    assert.equal([st.gsoWholeSent, st.gsoFrames, st.copied], [ROUNDS, 0, ROUNDS], "each whole, each through the copy queue");
    assert.ok(st.bigBuffers! >= 1 && st.bigBuffers! <= 2, `the last one read is the next one taken: ${st.bigBuffers} buffers (one per pending entry would be 17)`);
    // three in one batch hold three buffers at once; cut, they are free again and reused
    r.inject(3);
    assert.is(recvAll(r, r.rx, 3), 3);
    assert.is(recvAll(r, r.rx, 9), 9, "none taken: all three cut");
    r.inject(1);
    assert.is(recvAll(r, r.rx, 4), 4, "the next one: cut too (no probe due)");
    const st2 = addon.stats(r.rx);
    assert.ok(st2.bigBuffers! <= 4, `three pending and one receiving at most: ${st2.bigBuffers}`);
    assert.is(st2.gsoFrames, 4);
  }));

  test.run();
}
