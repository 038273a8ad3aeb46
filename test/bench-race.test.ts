// The veth race's frames (bench/race.ts, issue 11): what trafgen and the XDP
// generator (bench/native/xdp-gen.c) send must be the same frame, built as
// the independent encoder builds it, with the one varying byte (the UDP
// source port's low byte, 256 flows) where the XDP program rewrites it. A
// bench that offered another frame to one DUT than to the other would
// compare nothing. No root, no network: the frames only.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { encapFrame, decapFrame, type RaceTopo } from "../bench/race.js";
import * as E from "./support/encoder.js";

const t: RaceTopo = {
  gen: "g", dut: "d", sink: "s", trunk: "nvl-trunk", underlay: "nvl-ul", vid: 10, vni: 5000,
  dutMac: "02:00:00:00:01:01", dutIp: "192.0.2.1", nextHopMac: "02:00:00:00:01:fe", remoteIp: "192.0.2.2", sinkMac: "02:00:00:00:01:02",
  vmMac: "02:00:5e:00:00:01", vmIp: "10.0.0.1", remoteVmMac: "02:00:5e:00:00:02", remoteVmIp: "10.0.0.2", genMac: "02:00:00:00:aa:01", workDir: "/nonexistent",
};

/** The bytes a trafgen config `{ 0x.., dinc(0, 255), 0x.. }` sends first (dinc's first value is 0). */
function trafgenBytes(conf: string): number[] {
  const body = conf.trim().replace(/^\{/, "").replace(/\}$/, "");
  return body.split(/,(?![^(]*\))/).map((x) => x.trim()).map((x) => (/^dinc\(/.test(x) ? 0 : parseInt(x, 16)));
}

test("race frames: encap is a 64-byte 802.1Q frame VM -> remote VM, the same for trafgen and xdp-gen, varying in the UDP source port's low byte", () => {
  const f = encapFrame(t);
  const want = E.ethernet({ dst: t.remoteVmMac, src: t.vmMac, tags: [{ vid: 10 }], type: E.ETH_IPV4,
    payload: E.ipv4Packet({ src: t.vmIp, dst: t.remoteVmIp, protocol: E.IPPROTO_UDP,
      payload: E.udp({ src: t.vmIp, dst: t.remoteVmIp, srcPort: 0xc000, dstPort: 9, payload: new Uint8Array(64 - 18 - 28), checksum: "zero" }) }) });
  assert.is(f.bytes.length, 64);
  assert.is(E.bytesDiff(Uint8Array.from(f.bytes), want), "");
  assert.equal(trafgenBytes(f.conf), f.bytes, "trafgen's config is the same frame");
  assert.is(f.flowOff, 18 + 20 + 1, "the UDP source port's low byte");
});

test("race frames: decap is VXLAN (RFC 7348) remote VTEP -> DUT carrying a 64-byte frame remote VM -> VM, the same for both generators", () => {
  const f = decapFrame(t);
  const inner = E.ethernet({ dst: t.vmMac, src: t.remoteVmMac, type: E.ETH_IPV4,
    payload: E.ipv4Packet({ src: t.remoteVmIp, dst: t.vmIp, protocol: E.IPPROTO_UDP,
      payload: E.udp({ src: t.remoteVmIp, dst: t.vmIp, srcPort: 0xc001, dstPort: 9, payload: new Uint8Array(64 - 14 - 28), checksum: "zero" }) }) });
  const want = E.ethernet({ dst: t.dutMac, src: t.sinkMac, type: E.ETH_IPV4,
    payload: E.ipv4Packet({ src: t.remoteIp, dst: t.dutIp, protocol: E.IPPROTO_UDP,
      payload: E.udp({ src: t.remoteIp, dst: t.dutIp, srcPort: 0xc000, dstPort: E.VXLAN_PORT, payload: E.vxlan({ vni: 5000 }, inner), checksum: "zero" }) }) });
  assert.is(E.bytesDiff(Uint8Array.from(f.bytes), want), "");
  assert.equal(trafgenBytes(f.conf), f.bytes);
  assert.is(f.flowOff, 14 + 20 + 1);
});

test.run();
