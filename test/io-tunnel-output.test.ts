// The encap super-frame output of an AF_PACKET worker (issue 11 TCP VM ->
// remote; host/io/tunnel-output.ts): which output runs and why (the log
// line), the tap made and removed in the uplink's namespace, and the AF_PACKET
// addon's send() of a promoted encap super-frame (the data plane's OGK_TUNNEL
// output: outer headers + inner Ethernet in the header piece, the inner IP
// header on in the data piece, the rest of the payload in the RX ring)
// through the tap as ONE VXLAN frame that the kernel segments on the uplink.
// Real veth pairs in a test-made namespace; the super-frame is sent by an
// independent Python AF_PACKET socket with PACKET_VNET_HDR. Needs root.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { loadAddon } from "../host/io/addon.js";
import { openTunnelOutput, tunnelTapName } from "../host/io/tunnel-output.js";
import { tmpNetns, injectFrames } from "./support/io-net.js";
import { requireRootAnd } from "./support/tools.js";
import * as E from "./support/encoder.js";
import { IN_DESC, I_OFF, I_LEN, I_FLAGS, OUT_DESC, O_PORT, O_HDRLEN, O_DATA, O_DATALEN, IF_VNET, IF_GSO_SEG, IF_GSO_LAST,
         IF_GSO_WHOLE, IF_SEG_SHIFT, IW_SIZE, IW_TOKEN, OF_GSO, OG_SIZE, OG_TOKEN, OG_VNET, OG_OUTER_TH, OG_INNER_NH, OG_KIND, OGK_TUNNEL } from "../host/dataplane/abi.js";

test("underlay.tunnelGso off: encap super-frames cut in software, no tap opened, nothing attached", () => {
  let attached = 0;
  const fake = { tunnelTx: () => { attached++; } };
  const off = openTunnelOutput(fake, { uplink: "eth9", handle: 0, worker: 0, mode: "off", vlan: 0 });
  assert.is(off.tx, undefined);
  assert.is(off.mode, "eth9: encap TCP super-frames cut in software (underlay.tunnelGso is off)");
  assert.is(attached, 0, "the socket is left to cut");
});

test("the tap's name fits an interface name (15 characters) for any pid and worker", () => {
  assert.is(tunnelTapName(4_194_304, 63), "nvtx4194304w63");
  assert.ok(tunnelTapName(9_999_999, 63).length <= 15);
});

const L = { slotBase: 0x10000, slotSize: 2048, headroom: 128, inDescBase: 0x100000, outDescBase: 0x101000, hdrBase: 0x110000, hdrSlot: 128 };
const GSO = 1000, PAYLOAD = 3500, IHL = 14 + 20 + 20; // the inner super-frame: 4 segments, 3 x 1000 + 500
const SRC = "10.9.0.1", DST = "10.9.0.2";
const payload = Uint8Array.from({ length: PAYLOAD }, (_, i) => (i * 7 + 3) & 0xff);

/** The VM's TCP super-frame as a local stack with TSO leaves it (partial checksum). */
function superFrame(): Uint8Array {
  return E.ethernet({ dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01", type: E.ETH_IPV4,
    payload: E.ipPacket({ src: SRC, dst: DST, protocol: E.IPPROTO_TCP, payload: E.tcpSegment(SRC, DST, 1000, 0x18, payload, true) }) });
}
function vnet(gsoType: number, flags: number, hdrLen: number, csumStart: number): Uint8Array {
  return E.virtioNetHdr({ flags, gsoType, hdrLen, gsoSize: GSO, csumStart, csumOffset: 16 });
}
/** The outer headers as the data plane writes them before the lengths are known: Ethernet, IPv4, UDP to 4789, VXLAN VNI 5000 (RFC 7348). */
const OUTER = E.concat(
  E.u8(0x02, 0, 0, 0, 0, 0x20, 0x02, 0, 0, 0, 0, 0x10), E.be16(E.ETH_IPV4),
  E.u8(0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 20),
  E.be16(49152), E.be16(4789), E.be16(0), E.be16(0),
  E.u8(0x08, 0, 0, 0), E.be32(5000 << 8));

if (requireRootAnd(["python3", "ethtool"], "the encap super-frame output through a tuntx tap (network namespaces, CAP_NET_ADMIN, CAP_BPF)")) {
  const addon = loadAddon();
  addon.descFlags(IF_VNET, IF_GSO_SEG, IF_GSO_LAST, IF_SEG_SHIFT);

  test("no such uplink: the tap cannot be made, the output says cut in software and why, nothing attached", () => {
    const ns = tmpNetns("tto");
    try {
      let attached = 0;
      const o = openTunnelOutput({ tunnelTx: () => { attached++; } }, { uplink: "nvl-none0", handle: 0, worker: 0, mode: "auto", vlan: 0, netns: ns.path });
      assert.is(o.tx, undefined);
      assert.match(o.mode, /^nvl-none0: encap TCP super-frames cut in software \(no tunnel TX tap: tuntx: uplink nvl-none0/);
      assert.is(attached, 0);
    } finally {
      ns.remove();
    }
  });

  for (const vlan of [0, 10]) test(`a promoted encap super-frame leaves through the tap as ONE VXLAN frame${vlan ? ", tagged 10 after its MACs (underlay.vlan)" : ""}: the kernel cuts it on an uplink without tunnel GSO into 4 frames whose inner payloads join up; counted once with its whole length`, () => {
    const ns = tmpNetns("tto");
    const hs: number[] = [];
    let tx: ReturnType<typeof openTunnelOutput>["tx"];
    try {
      const [a1, b1] = ns.veth("x");
      const [a2, b2] = ns.veth("y");
      // the uplink cannot carry tunnel GSO: the kernel segments in software, so the peer sees every segment
      ns.run("ethtool", ["-K", a2, "tx-udp_tnl-segmentation", "off", "tx-udp_tnl-csum-segmentation", "off"]);
      const ring = { blockSize: 1 << 18, blockCount: 2, vnetHdr: 1, netns: ns.path };
      hs.push(addon.open(b1, ring), addon.open(a2, { ...ring, vlan }), addon.open(b2, { ...ring, whole: 0, vlan }));
      const [rx, up, peer] = hs;
      const out = openTunnelOutput(addon, { uplink: a2, handle: up, worker: 99, mode: "auto", vlan, netns: ns.path });
      tx = out.tx;
      const tap = tunnelTapName(process.pid, 99);
      assert.is(out.mode, `${a2}: encap TCP super-frames sent whole via tap ${tap} (UDP-tunnel GSO${vlan ? ", tagged 10" : ""})`);
      assert.ok(tx, "the tap is open");
      assert.match(execFileSync("ip", ["-n", ns.name, "-o", "link", "show", "dev", tap], { encoding: "utf8" }), tap, "the tap exists in the uplink's namespace");

      const mem = new WebAssembly.Memory({ initial: 64 });
      const dv = new DataView(mem.buffer), u8 = new Uint8Array(mem.buffer);
      injectFrames(ns, a1, [E.concat(vnet(1, 1, IHL, 34), superFrame())], { vnetHdr: true });
      let n = 0;
      for (let k = 0; k < 30 && n < 1; k++) n += addon.recv(rx, mem.buffer, L.slotBase, L.slotSize, L.headroom, L.inDescBase, n, 16 - n, 0, 100);
      assert.is(n, 1, "segment 0 offered alone");
      assert.is(dv.getUint16(L.inDescBase + I_FLAGS, true) & IF_GSO_WHOLE, IF_GSO_WHOLE);
      const off = dv.getUint16(L.inDescBase + I_OFF, true), len = dv.getUint16(L.inDescBase + I_LEN, true);
      const at = L.slotBase + off;
      const token = dv.getUint32(at - 10 - IW_SIZE + IW_TOKEN, true);
      // What the data plane's encap promotion leaves (assembly/pipeline/gso.ts): the
      // outer headers + the inner Ethernet header in the header piece, the inner
      // IP header on in the slot, a GSO record with OGK_TUNNEL.
      u8.set(OUTER, L.hdrBase);
      u8.copyWithin(L.hdrBase + OUTER.length, at, at + 14);
      const hl = OUTER.length + 14;
      dv.setUint16(L.outDescBase + O_PORT, 1 | OF_GSO, true);
      dv.setUint16(L.outDescBase + O_HDRLEN, hl, true);
      dv.setUint32(L.outDescBase + O_DATA, at + 14, true);
      dv.setUint16(L.outDescBase + O_DATALEN, len - 14, true);
      const rec = L.hdrBase + L.hdrSlot - OG_SIZE;
      dv.setUint32(rec + OG_TOKEN, token, true);
      u8.set(vnet(1 | 0x20, 1, hl + 40, hl + 20), rec + OG_VNET); // TCPV4 | UDP_TUNNEL_IPV4, NEEDS_CSUM at the inner TCP header
      dv.setUint16(rec + OG_OUTER_TH, 34, true);
      dv.setUint16(rec + OG_INNER_NH, hl, true);
      u8[rec + OG_KIND] = OGK_TUNNEL;
      assert.is(addon.send([-1, up], mem.buffer, L.outDescBase, L.hdrBase, L.hdrSlot, 1), 1, "sent");
      const st = addon.stats(up);
      assert.equal([st.gsoTunnelSent, st.gsoTunnelErrors, st.txFrames, st.txBytes], [1, 0, 1, hl + 40 + PAYLOAD + (vlan ? 4 : 0)],
        `one frame of the whole length: ${JSON.stringify(st)}`);
      // the peer: 4 VXLAN frames, each the outer headers + an inner segment
      let m = 0;
      for (let k = 0; k < 30 && m < 4; k++) m += addon.recv(peer, mem.buffer, L.slotBase, L.slotSize, L.headroom, L.inDescBase, m, 16 - m, 0, 100);
      assert.is(m, 4, `cut by the kernel into 4 segments on the wire${vlan ? ", each with our tag (the peer's socket takes only VLAN 10, untagged to the slot)" : ""}`);
      assert.is(addon.stats(peer).vlanOther, 0, "none untagged or with another tag");
      const parts: Uint8Array[] = [];
      for (let i = 0; i < m; i++) {
        const d = L.inDescBase + i * IN_DESC;
        const fo = L.slotBase + i * L.slotSize + dv.getUint16(d + I_OFF, true), fl = dv.getUint16(d + I_LEN, true);
        const f = u8.slice(fo, fo + fl);
        assert.equal([...f.subarray(36, 38)], [0x12, 0xb5], "to UDP port 4789");
        assert.equal([...f.subarray(42, 50)], [...OUTER.subarray(42, 50)], "the VXLAN header as sent");
        assert.is((f[16] << 8) | f[17], fl - 14, "each outer IPv4 total length is its own segment's");
        parts.push(f.subarray(hl + 40));
      }
      assert.equal(E.concat(...parts), payload, "the inner payload, every byte, in order");
      // the receiving socket found the super-frame taken: nothing cut
      assert.is(addon.recv(rx, mem.buffer, L.slotBase, L.slotSize, L.headroom, L.inDescBase, 0, 16, 0, 50), 0);
      assert.equal([addon.stats(rx).gsoWholeSent, addon.stats(rx).gsoFrames], [1, 0]);
    } finally {
      for (const h of hs) addon.close(h);
      tx?.close();
      ns.remove();
    }
  });
}

test.run();
