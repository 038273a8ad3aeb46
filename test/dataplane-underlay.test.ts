// The underlay side of the data plane (issue 2; STANDARDS.md; RFC 7348,
// RFC 8926, RFC 7637): overlay frames from remote NVEs, built by the
// independent encoder, decapsulated to the right local port and tag, flooded
// to local ports only, or dropped under the one reason each malformation
// deserves.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { fixtureCache, eqBytes, dropped } from "./support/dp-fixture.js";

const dpFor = fixtureCache();

function delivered(s: F.Sent, port: string, expected: Uint8Array, label: string): void {
  assert.is(s.drop, undefined, `${label}: dropped as ${JSON.stringify(s.drops)}`);
  assert.equal(s.outs.map((o) => o.port), [port], `${label}: output ports`);
  eqBytes(s.outs[0].frame, expected, label);
}

const KINDS: E.EncapKind[] = ["vxlan", "geneve", "nvgre"];
const R1NVE = F.REMOTES[0];

// ------------------------------------------------------------------ decapsulation

for (const family of [4, 6] as F.Family[]) {
  for (const kind of KINDS) {
    test(`decap: ${kind} over IPv${family} → the local VNIC's port, with that port's tag inserted`, async () => {
      const dp = await dpFor(family);
      const v = F.vnByEncap(kind);
      const { L1, L2, L4 } = F.locals(v.id);
      const { R1, R2 } = F.remotes(v.id);
      for (const [from, nve] of [[R1, F.REMOTES[0]], [R2, F.REMOTES[1]]] as const) {
        for (const to of [L1, L2, L4]) {
          for (const innerFam of [4, 6] as F.Family[]) {
            const inner = F.innerFrame(from, to, { family: innerFam, payloadLen: 100 });
            const s = F.send(dp, F.UPLINK, F.fromRemote(nve, family, v.id, inner));
            // Decap inserts the egress port's tag for the VN; PCP 0 (the profile sets no qos.pcp).
            delivered(s, to.port!, E.insertTag(inner, F.tagOf(v.id, to.port!)), `${kind}/IPv${family} ${from.mac}→${to.mac} inner IPv${innerFam}`);
          }
        }
      }
    });
  }
}

test("decap: a flood list member with no bindings (nve-r3) may send too; VXLAN flags' reserved bits are ignored on receive", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const inner = F.innerFrame({ mac: "02:00:5e:01:33:01", ip4: "10.1.0.33", ip6: "2001:db8:1::33" }, L1);
  delivered(F.send(dp, F.UPLINK, F.fromRemote(F.REMOTES[2], 4, 100, inner)), F.ACC1, E.insertTag(inner, F.tagOf(100, F.ACC1)), "from r3");
  // RFC 7348 §5: "the other reserved fields ... MUST be ignored on receipt".
  const tun = E.vxlan({ vni: 5000, flags: 0x0c, reserved1: 0xabcdef, reserved2: 0x55 }, inner);
  delivered(F.send(dp, F.UPLINK, F.fromRemote(R1NVE, 4, 100, inner, {}, tun)), F.ACC1, E.insertTag(inner, F.tagOf(100, F.ACC1)),
    "reserved bits set");
});

test("decap: a correct non-zero UDP checksum over IPv4 is accepted (STANDARDS.md: a non-zero checksum must be right)", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const { R1 } = F.remotes(100);
  const inner = F.innerFrame(R1, L1);
  const f = F.fromRemote(R1NVE, 4, 100, inner, { udpChecksum: "compute" });
  assert.is.not((f[40] << 8) | f[41], 0);
  delivered(F.send(dp, F.UPLINK, f), F.ACC1, E.insertTag(inner, F.tagOf(100, F.ACC1)), "checksummed VXLAN");
});

test("decap: Geneve with non-critical options skips them (RFC 8926 §3.5); VNI found after the options", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    const { L1 } = F.locals(200);
    const { R1 } = F.remotes(200);
    const inner = F.innerFrame(R1, L1, { family });
    const opts = [{ optClass: 0x0102, type: 0x05, data: E.fromHex("deadbeef") },
                  { optClass: 0xffff, type: 0x7f, data: new Uint8Array(12) }, { optClass: 0x0001, type: 0x01, data: new Uint8Array(0) }];
    delivered(F.send(dp, F.UPLINK, F.fromRemote(R1NVE, family, 200, inner, { geneveOptions: opts })), F.ACC1,
      E.insertTag(inner, F.tagOf(200, F.ACC1)), `Geneve with 3 options over IPv${family}`);
  }
});

test("decap flood: broadcast, multicast and unknown unicast go to every local port of the VN, never back to the underlay", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    for (const kind of KINDS) {
      const v = F.vnByEncap(kind);
      const { R1 } = F.remotes(v.id);
      for (const [name, to] of [["broadcast", F.BROADCAST], ["multicast", { mac: "01:00:5e:00:00:fb", ip4: "224.0.0.251", ip6: "ff02::fb" }],
                                ["unknown unicast", { mac: F.unknownMac(v.id), ip4: "10.9.9.9", ip6: "2001:db8:9::9" }]] as const) {
        const inner = F.innerFrame(R1, to);
        const s = F.send(dp, F.UPLINK, F.fromRemote(R1NVE, family, v.id, inner));
        assert.is(s.drop, undefined, `${kind} ${name}: dropped ${JSON.stringify(s.drops)}`);
        assert.equal(s.outs.map((o) => o.port).sort(), [F.ACC1, F.ACC2], `${kind} ${name}: output ports (split horizon)`);
        for (const o of s.outs) eqBytes(o.frame, E.insertTag(inner, F.tagOf(v.id, o.port)), `${kind} ${name} copy to ${o.port}`);
      }
    }
  }
});

test("decap: bytes after the outer IP packet (Ethernet padding, a trailing FCS) are not part of the inner frame", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    for (const kind of KINDS) {
      const v = F.vnByEncap(kind);
      const { L1 } = F.locals(v.id);
      const { R1 } = F.remotes(v.id);
      const inner = F.innerFrame(R1, L1);
      // The IP total length / payload length and the UDP length end before the 4 trailing bytes.
      const f = E.concat(F.fromRemote(R1NVE, family, v.id, inner), E.fromHex("deadbeef"));
      delivered(F.send(dp, F.UPLINK, f), F.ACC1, E.insertTag(inner, F.tagOf(v.id, F.ACC1)), `${kind}/IPv${family} with 4 trailing bytes`);
    }
  }
});

test("decap: an outer IPv4 header with options (IHL 6) is a valid header (RFC 791 §3.1)", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const { R1 } = F.remotes(100);
  const inner = F.innerFrame(R1, L1);
  // Four NOP options (type 1), checksum over the 24-byte header.
  const f = F.fromRemote(R1NVE, 4, 100, inner, { ipv4: { options: E.u8(1, 1, 1, 1) } });
  assert.is(f[14], 0x46);
  delivered(F.send(dp, F.UPLINK, f), F.ACC1, E.insertTag(inner, F.tagOf(100, F.ACC1)), "IPv4 with options");
});

test("decap: VNs are isolated; a MAC known only in another VN is unknown unicast here (flooded in this VN's tags)", async () => {
  const dp = await dpFor(4);
  const { R1 } = F.remotes(100);
  const other = F.locals(200).L2; // on acc2, but in VN 200
  const inner = F.innerFrame(R1, other);
  const s = F.send(dp, F.UPLINK, F.fromRemote(R1NVE, 4, 100, inner));
  assert.equal(s.outs.map((o) => o.port).sort(), [F.ACC1, F.ACC2], "flooded in VN 100");
  for (const o of s.outs) eqBytes(o.frame, E.insertTag(inner, F.tagOf(100, o.port)), `VN 100 tag on ${o.port}`);
});

// ------------------------------------------------------------------ underlay drops

/** Re-encodes an IPv4 underlay frame after `edit` changed header bytes, with a correct header checksum again. */
function editIpv4(frame: Uint8Array, edit: (ip: Uint8Array) => void): Uint8Array {
  const f = frame.slice();
  edit(f.subarray(14));
  const ihl = (f[14] & 0x0f) * 4;
  f[24] = f[25] = 0;
  const sum = E.inetChecksum(f.subarray(14, 14 + Math.max(ihl, 20)));
  f[24] = sum >>> 8;
  f[25] = sum & 0xff;
  return f;
}

/** `reason` may list alternatives where STANDARDS.md leaves the name open (e.g. a length beyond the frame is a truncation too). */
interface DropCase { name: string; frame: Uint8Array; reason: string | string[] }

function underlayDropCases(family: F.Family): DropCase[] {
  const cases: DropCase[] = [];
  const { L1, L3 } = F.locals(100);
  const { R1, R2 } = F.remotes(100);
  const inner = F.innerFrame(R1, L1);
  const good = (vnId = 100, o: Partial<E.EncapOpts> = {}, tunnel?: Uint8Array, i = inner) => F.fromRemote(R1NVE, family, vnId, i, o, tunnel);
  const u = F.underlayFrom(R1NVE, family);
  const vx = (o: Partial<E.EncapOpts>) => ({ kind: "vxlan" as const, vni: 5000, entropy: 51000, ...o });
  const add = (name: string, frame: Uint8Array, reason: string | string[]) => cases.push({ name, frame, reason });

  // Ethernet / IP layer.
  add("outer dst MAC not ours", E.overlayFrame({ ...u, dstMac: "02:00:00:00:09:09" }, vx({}), inner), "not-our-mac");
  // ARP for underlay.ip is answered (dataplane-host.test.ts); for any other address it is not ours
  add("ARP on the underlay for another address", E.ethernet({ dst: F.UNDERLAY_MAC, src: F.GATEWAY_MAC, type: E.ETH_ARP,
    payload: E.arp({ op: 1, sha: F.GATEWAY_MAC, spa: "192.0.2.254", tha: "00:00:00:00:00:00", tpa: "192.0.2.77" }), pad: true }), "arp-not-for-us");
  add("neither IP nor ARP on the underlay", E.ethernet({ dst: F.UNDERLAY_MAC, src: F.GATEWAY_MAC, type: 0x88cc,
    payload: new Uint8Array(46) }), "not-ip");
  add("tagged underlay frame", E.overlayFrame({ ...u, tags: [{ vid: 5 }] }, vx({}), inner), "underlay-tagged");
  add("outer dst IP not ours", E.overlayFrame({ ...u, dst: family === 4 ? "192.0.2.77" : "2001:db8:ffff::77" }, vx({}), inner), "not-our-ip");
  add("from a VTEP on no flood list", F.fromRemote(F.strangerIp(family), family, 100, inner), "unknown-vtep");
  if (family === 4) {
    const g = good();
    add("bad IPv4 header checksum", (() => { const f = g.slice(); f[25] ^= 0x5a; return f; })(), "bad-ip-checksum");
    add("IPv4 MF set (first fragment)", editIpv4(g, (ip) => { ip[6] |= 0x20; }), "fragment");
    add("IPv4 fragment offset 185", editIpv4(g, (ip) => { ip[6] = 0x00; ip[7] = 185; }), "fragment");
    add("IPv4 version 5", editIpv4(g, (ip) => { ip[0] = 0x55; }), "bad-ip-header");
    add("IPv4 IHL 4", editIpv4(g, (ip) => { ip[0] = 0x44; }), "bad-ip-header");
    add("IPv4 total length beyond the frame", editIpv4(g, (ip) => { const l = ((ip[2] << 8) | ip[3]) + 40; ip[2] = l >> 8; ip[3] = l; }),
      ["bad-ip-header", "truncated"]);
    add("IPv4 total length below the header", editIpv4(g, (ip) => { ip[2] = 0; ip[3] = 19; }), "bad-ip-header");
    add("IPv4 TCP, not an overlay", E.ethernet({ dst: F.UNDERLAY_MAC, src: F.GATEWAY_MAC, type: E.ETH_IPV4,
      payload: E.ipv4Packet({ src: u.src, dst: u.dst, protocol: E.IPPROTO_TCP, payload: new Uint8Array(40) }) }), "not-overlay");
    add("non-zero wrong UDP checksum over IPv4", good(100, { udpChecksum: 0x1234 }), "bad-udp-checksum");
  } else {
    const g = good();
    add("IPv6 version 4 in an IPv6 EtherType", (() => { const f = g.slice(); f[14] = (4 << 4) | (f[14] & 0x0f); return f; })(), "bad-ip-header");
    add("IPv6 payload length beyond the frame", (() => { const f = g.slice(); const l = ((f[18] << 8) | f[19]) + 64; f[18] = l >> 8; f[19] = l; return f; })(),
      ["bad-ip-header", "truncated"]);
    // RFC 8200 §4.5: a Fragment extension header (next header 44) in front of UDP.
    const udpSeg = E.udp({ src: u.src, dst: u.dst, srcPort: 51000, dstPort: 4789, payload: E.vxlan({ vni: 5000 }, inner) });
    const fragHdr = E.concat(E.u8(E.IPPROTO_UDP, 0), E.be16(0x0001 /* offset 0, M=1 */), E.be32(0x1234));
    add("IPv6 fragment header", E.ethernet({ dst: F.UNDERLAY_MAC, src: F.GATEWAY_MAC, type: E.ETH_IPV6,
      payload: E.ipv6Packet({ src: u.src, dst: u.dst, nextHeader: 44, payload: E.concat(fragHdr, udpSeg) }) }), "fragment");
    add("IPv6 TCP, not an overlay", E.ethernet({ dst: F.UNDERLAY_MAC, src: F.GATEWAY_MAC, type: E.ETH_IPV6,
      payload: E.ipv6Packet({ src: u.src, dst: u.dst, nextHeader: E.IPPROTO_TCP, payload: new Uint8Array(40) }) }), "not-overlay");
    const bad = good();
    bad[14 + 40 + 6] ^= 0x01;
    add("wrong UDP checksum over IPv6", bad, "bad-udp-checksum");
  }
  // UDP.
  add("UDP to port 53, not an overlay", good(100, { dstPort: 53 }), "not-overlay");
  const l4 = family === 4 ? 34 : 54;
  const longUdp = good(100, { udpChecksum: "zero" });
  { const len = ((longUdp[l4 + 4] << 8) | longUdp[l4 + 5]) + 10; longUdp[l4 + 4] = len >> 8; longUdp[l4 + 5] = len; }
  if (family === 6) { const s = E.inetChecksum(E.pseudoHeader(u.src, u.dst, 17, longUdp.length - l4), E.concat(longUdp.subarray(l4, l4 + 6), longUdp.subarray(l4 + 8))); longUdp[l4 + 6] = s >> 8; longUdp[l4 + 7] = s; }
  add("UDP length beyond the IP payload", longUdp, "bad-udp-length");
  const shortUdp = good(100, { udpChecksum: "zero" });
  shortUdp[l4 + 4] = 0;
  shortUdp[l4 + 5] = 7;
  add("UDP length 7", shortUdp, "bad-udp-length");
  // VXLAN (RFC 7348 §5).
  add("VXLAN without the I flag", good(100, {}, E.vxlan({ vni: 5000, flags: 0x00 }, inner)), "vxlan-flags");
  add("VXLAN with only reserved flags", good(100, {}, E.vxlan({ vni: 5000, flags: 0xf7 }, inner)), "vxlan-flags");
  add("VXLAN unknown VNI", good(100, {}, E.vxlan({ vni: 4242 }, inner)), "unknown-vni");
  // Geneve (RFC 8926 §3.4, §3.5). The VN 200 inner frame.
  const gIn = F.innerFrame(F.remotes(200).R1, F.locals(200).L1);
  const gv = (o: Parameters<typeof E.geneve>[0]) => good(200, {}, E.geneve(o, gIn), gIn);
  add("Geneve version 1", gv({ vni: 6000, version: 1 }), "geneve-version");
  add("Geneve version 3", gv({ vni: 6000, version: 3 }), "geneve-version");
  add("Geneve O bit (control packet)", gv({ vni: 6000, oam: true }), "geneve-oam");
  add("Geneve protocol 0x0800", gv({ vni: 6000, protocol: 0x0800 }), "geneve-protocol");
  add("Geneve unknown critical option", gv({ vni: 6000, options: [{ optClass: 0x0102, type: 0x80, data: new Uint8Array(4) }] }),
    "geneve-critical-option");
  add("Geneve unknown critical option after a non-critical one", gv({ vni: 6000, options: [
    { optClass: 0x0102, type: 0x01, data: new Uint8Array(4) }, { optClass: 0x0103, type: 0xff, data: new Uint8Array(0) }] }),
    "geneve-critical-option");
  add("Geneve option longer than Opt Len", gv({ vni: 6000, optLenField: 2,
    options: [{ optClass: 0x0102, type: 0x01, data: new Uint8Array(4), lengthField: 3 }] }), "geneve-option-length");
  add("Geneve Opt Len not covered by its options", gv({ vni: 6000, optLenField: 3,
    options: [{ optClass: 0x0102, type: 0x01, data: new Uint8Array(4) }, { optClass: 0x0102, type: 0x02, data: new Uint8Array(4), lengthField: 2 }] }),
    "geneve-option-length");
  add("Geneve Opt Len beyond the packet", gv({ vni: 6000, optLenField: 63 }), "geneve-option-length");
  add("Geneve unknown VNI", gv({ vni: 4242 }), "unknown-vni");
  // NVGRE (RFC 7637 §3.2). The VN 300 inner frame.
  const nIn = F.innerFrame(F.remotes(300).R1, F.locals(300).L1);
  const ng = (o: Parameters<typeof E.nvgre>[0]) => good(300, {}, E.nvgre(o, nIn), nIn);
  add("NVGRE without the K bit", ng({ vsid: 7000, flags: 0x0000 }), "nvgre-flags");
  add("NVGRE with the C bit", ng({ vsid: 7000, flags: 0xa000 }), "nvgre-flags");
  add("NVGRE with the S bit", ng({ vsid: 7000, flags: 0x3000 }), "nvgre-flags");
  add("NVGRE GRE version 1", ng({ vsid: 7000, flags: 0x2001 }), "nvgre-flags");
  add("NVGRE protocol 0x0800", ng({ vsid: 7000, protocol: 0x0800 }), "nvgre-protocol");
  add("NVGRE reserved VSID 0xFFF", ng({ vsid: 0xfff }), "nvgre-reserved-vsid");
  add("NVGRE reserved VSID 0", ng({ vsid: 0 }), "nvgre-reserved-vsid");
  add("NVGRE reserved VSID 0xFFFFFF", ng({ vsid: 0xffffff }), "nvgre-reserved-vsid");
  add("NVGRE unknown VSID", ng({ vsid: 0x12345 }), "unknown-vni");
  // The inner frame.
  add("inner 802.1Q-tagged frame (VXLAN)", good(100, {}, undefined, E.insertTag(inner, { vid: 10 })), "inner-tagged");
  add("inner 802.1ad S-tagged frame (VXLAN)", good(100, {}, undefined, E.insertTag(inner, { tpid: E.ETH_QINQ, vid: 10 })), "inner-tagged");
  add("inner IP packet above the VN's MTU (1501 in VN 100)", good(100, {}, undefined, F.innerFrame(R1, L1, { payloadLen: 1501 - 28 })),
    "mtu-exceeded");
  add("inner 802.1Q-tagged frame (NVGRE)", good(300, {}, undefined, E.insertTag(nIn, { vid: 12 })), "inner-tagged");
  add("inner dst is a remote MAC (split horizon)", good(100, {}, undefined, F.innerFrame(R1, R2)), "split-horizon");
  add("inner dst is an Associated-only VNIC", good(100, {}, undefined, F.innerFrame(R1, L3)), "dst-inactive");
  add("truncated inner frame (VXLAN header only)", good(100, {}, E.vxlan({ vni: 5000 }, new Uint8Array(0))), "truncated");
  return cases;
}

for (const family of [4, 6] as F.Family[]) {
  test(`underlay drops over IPv${family}: each malformation counted under its own reason`, async () => {
    const dp = await dpFor(family);
    const failures: string[] = [];
    for (const c of underlayDropCases(family)) {
      const s = F.send(dp, F.UPLINK, c.frame);
      const got = s.outs.length ? `forwarded to ${s.outs.map((o) => o.port)}` : JSON.stringify(s.drops);
      const ok = typeof c.reason === "string" ? [c.reason] : c.reason;
      if (s.outs.length || !ok.includes(s.drop ?? "")) failures.push(`${c.name}: expected ${c.reason}, got ${got}\n    frame ${E.hex(c.frame)}`);
    }
    assert.ok(failures.length === 0, `${failures.length} case(s) wrong:\n  ${failures.join("\n  ")}`);
  });
}

test("underlay drops: the frames are valid except for the one field each case breaks (a control passes)", async () => {
  // The control: the base frame of the drop cases is delivered. Without this the drop cases could pass by accident.
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    const { L1 } = F.locals(100);
    const { R1 } = F.remotes(100);
    const inner = F.innerFrame(R1, L1);
    delivered(F.send(dp, F.UPLINK, F.fromRemote(R1NVE, family, 100, inner)), F.ACC1, E.insertTag(inner, F.tagOf(100, F.ACC1)), "control");
    for (const vnId of [200, 300]) {
      const i2 = F.innerFrame(F.remotes(vnId).R1, F.locals(vnId).L1);
      delivered(F.send(dp, F.UPLINK, F.fromRemote(R1NVE, family, vnId, i2)), F.ACC1, E.insertTag(i2, F.tagOf(vnId, F.ACC1)), `control ${vnId}`);
    }
  }
});

test("underlay: an access frame arriving on the underlay port and an overlay frame on an access port are both dropped", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const { R1 } = F.remotes(100);
  const s1 = F.send(dp, F.UPLINK, F.accessFrame(L1, R1));
  assert.is(s1.outs.length, 0);
  assert.ok(s1.drop === "underlay-tagged" || s1.drop === "not-our-mac", `tagged access frame on the uplink: ${JSON.stringify(s1.drops)}`);
  dropped(F.send(dp, F.ACC1, F.fromRemote(R1NVE, 4, 100, F.innerFrame(R1, L1))), "untagged", "overlay frame on acc1");
});

test.run();
