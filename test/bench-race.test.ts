// The veth race's frames (bench/race.ts, issue 11): what trafgen and the XDP
// generator (bench/native/xdp-gen.c) send must be the same frame, built as
// the independent encoder builds it, with the one varying byte (the UDP
// source port's low byte, 256 flows) where the XDP program rewrites it. A
// bench that offered another frame to one DUT than to the other would
// compare nothing. No root, no network: the frames only.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { encapFrame, decapFrame, PacedSearch, type RaceTopo } from "../bench/race.js";
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

/** The race's 6 paced windows against a DUT that carries every rate up to `t` Mpps: the highest carried. */
function searchAgainst(t: number, flatOut: number, offered = 2.3): { found: number; rates: number[] } {
  const s = new PacedSearch(flatOut, offered);
  let found = 0;
  const rates: number[] = [];
  for (let i = 0; i < 6; i++) {
    const r = s.next();
    rates.push(r);
    assert.ok(r > 0 && r <= offered, `window ${i} offers ${r}`);
    s.record(r, r <= t);
    if (r <= t) found = Math.max(found, r);
  }
  return { found, rates };
}

test("race search: a DUT delivering its throughput flat out is found within 3 % in 6 windows (the old bisection: ~9 %)", () => {
  for (const t of [0.3, 0.957, 1.06, 1.5, 2.2]) {
    for (const flatOut of [t, t * 1.04]) {
      const { found, rates } = searchAgainst(t, flatOut);
      assert.ok(found <= t && found >= t * 0.97, `throughput ${t}, flat out ${flatOut}: found ${found} (${rates.map((r) => r.toFixed(3)).join(", ")})`);
    }
  }
});

test("race search: a DUT that collapses when overloaded (delivers 10 % flat out) or loses a little at its flat-out rate is still found", () => {
  // collapse: flat out it delivers a tenth of what it carries paced
  const c = searchAgainst(1.0, 0.1);
  assert.ok(c.found >= 0.85 && c.found <= 1.0, `collapsing DUT (within ~12 %, as the old bisection): found ${c.found} (${c.rates.join(", ")})`);
  // bursty: loses > 1 % even at 80 % of what it delivered flat out
  const b = searchAgainst(0.8, 1.0);
  assert.ok(b.found >= 0.72 && b.found <= 0.8, `bursty DUT: found ${b.found} (${b.rates.join(", ")})`);
  // nothing carried: it goes down towards 10,000/s and reports nothing
  const n = searchAgainst(0, 1.0);
  assert.is(n.found, 0);
  assert.ok(Math.min(...n.rates) < 0.1, `it looked low enough: ${n.rates.join(", ")}`);
});

test.run();
