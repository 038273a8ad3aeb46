// The access side of the data plane (issue 2, STANDARDS.md wire formats):
// frames from a hypervisor trunk, through tag → VN, port security, ARP/ND
// suppression and the destination lookup, out as encapsulated, hairpinned or
// flooded frames. Every expected frame is built by test/support/encoder.ts,
// never by the code under test; the only fields taken from the output are the
// ones the encapsulator is free to choose (UDP source port / NVGRE FlowID
// entropy, the IPv6 flow label), and those are range-checked (the flow label
// against the entropy: flowLabelOf).
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { fixtureCache, fixtureDp, eqBytes, dropped, flowLabelOf } from "./support/dp-fixture.js";

const dpFor = fixtureCache();

/** Asserts `out` is `inner` encapsulated in VN `vnId`'s encap toward remote `to`, with outer DSCP `dscp`. */
function expectEncap(out: Uint8Array, o: { family: F.Family; to: F.RemoteNve; vnId: number; inner: Uint8Array; dscp: number;
                                           label: string }): E.OverlayView {
  const v = F.vn(o.vnId);
  const kind = v.profile.encap;
  const view = E.viewOverlay(out, kind);
  if (kind !== "nvgre") {
    // STANDARDS.md: "UDP source port: a hash of the inner headers, in 49152–65535".
    assert.ok(view.entropy >= 49152 && view.entropy <= 65535, `${o.label}: UDP source port ${view.entropy} outside 49152-65535`);
  }
  const u = { ...F.underlayTo(o.to, o.family, o.dscp), flowLabel: flowLabelOf(view, kind, o.label) };
  const expected = E.overlayFrame(u, { kind, vni: v.vni, entropy: view.entropy }, o.inner);
  eqBytes(out, expected, `${o.label} (${kind} over IPv${o.family})`);
  if (kind !== "nvgre" && o.family === 6) {
    // STANDARDS.md: over IPv6 the UDP checksum must be computed; checked with our own RFC 8200 §8.1 code.
    const l4 = out.subarray(view.l4Off);
    assert.ok(E.udpChecksumOk(u.src, u.dst, l4), `${o.label}: outer UDP checksum over IPv6 does not verify`);
    assert.is.not((l4[6] << 8) | l4[7], 0, `${o.label}: UDP checksum 0 over IPv6`);
  }
  return view;
}

function only(s: F.Sent, label: string): { port: string; frame: Uint8Array } {
  assert.is(s.drop, undefined, `${label}: dropped as ${JSON.stringify(s.drops)}`);
  assert.is(s.outs.length, 1, `${label}: ${s.outs.length} outputs (${s.outs.map((o) => o.port).join(",")})`);
  return s.outs[0];
}

// ------------------------------------------------------------------ encapsulation

for (const family of [4, 6] as F.Family[]) {
  for (const kind of ["vxlan", "geneve", "nvgre"] as E.EncapKind[]) {
    test(`encap: access → ${kind} over IPv${family}, tag stripped, outer header per STANDARDS.md`, async () => {
      const dp = await dpFor(family);
      const v = F.vnByEncap(kind);
      const { L1 } = F.locals(v.id);
      const { R1, R2 } = F.remotes(v.id);
      for (const [dst, nve] of [[R1, F.REMOTES[0]], [R2, F.REMOTES[1]]] as const) {
        for (const innerFam of [4, 6] as F.Family[]) {
          const frame = F.accessFrame(L1, dst, { family: innerFam });
          const out = only(F.send(dp, F.ACC1, frame), `${kind} L1→${dst.mac}`);
          assert.is(out.port, F.UPLINK);
          expectEncap(out.frame, { family, to: nve, vnId: v.id, inner: E.stripTag(frame), dscp: 0,
                                   label: `L1→${dst.mac} inner IPv${innerFam}` });
        }
      }
      // From the other port too (acc2 uses a different tag for the same VN).
      const { L2 } = F.locals(v.id);
      const f2 = F.accessFrame(L2, R1, { payloadLen: 700 });
      const o2 = only(F.send(dp, F.ACC2, f2), "L2→R1");
      expectEncap(o2.frame, { family, to: F.REMOTES[0], vnId: v.id, inner: E.stripTag(f2), dscp: 0, label: "L2→R1 700B" });
    });
  }
}

test("encap: a full-MTU inner frame is encapsulated whole (1500-byte IP packet, VXLAN over IPv6)", async () => {
  const dp = await dpFor(6);
  const { L1 } = F.locals(100);
  const { R1 } = F.remotes(100);
  const frame = F.accessFrame(L1, R1, { payloadLen: 1500 - 28 });
  assert.is(frame.length, 1500 + 18);
  const out = only(F.send(dp, F.ACC1, frame), "1500B");
  expectEncap(out.frame, { family: 6, to: F.REMOTES[0], vnId: 100, inner: E.stripTag(frame), dscp: 0, label: "1500B" });
  assert.is(out.frame.length, 1500 + 14 + 70);
});

// ------------------------------------------------------------------ DSCP and entropy

test("DSCP: outer DSCP = inner PCP << 3 unless the profile sets one (IPv4 TOS / IPv6 traffic class)", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    for (let pcp = 0; pcp < 8; pcp++) {
      for (const vnId of [100, 200, 300]) {
        const { L1 } = F.locals(vnId);
        const { R1 } = F.remotes(vnId);
        const frame = F.accessFrame(L1, R1, { pcp });
        const out = only(F.send(dp, F.ACC1, frame), `pcp ${pcp}`);
        const view = expectEncap(out.frame, { family, to: F.REMOTES[0], vnId, inner: E.stripTag(frame), dscp: pcp << 3,
                                              label: `VN ${vnId} PCP ${pcp}` });
        assert.is(view.dscp, pcp << 3);
      }
      // VN 400's profile sets qos.dscp 46 (EF): it wins over any PCP.
      const { L1 } = F.locals(400);
      const { R1 } = F.remotes(400);
      const frame = F.accessFrame(L1, R1, { pcp });
      const out = only(F.send(dp, F.ACC1, frame), `qos pcp ${pcp}`);
      expectEncap(out.frame, { family, to: F.REMOTES[0], vnId: 400, inner: E.stripTag(frame), dscp: 46, label: `qos VN PCP ${pcp}` });
    }
  }
});

test("entropy: UDP source port in 49152-65535, stable per flow, spread across flows (VXLAN, Geneve); NVGRE FlowID varies", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    for (const vnId of [100, 200, 300]) {
      const { L1 } = F.locals(vnId);
      const { R1 } = F.remotes(vnId);
      const seen = new Map<number, number>();
      const N = 256;
      for (let i = 0; i < N; i++) {
        // Flows differ in inner destination IP and L4 ports: the 5-tuple a hash of the inner headers sees.
        const to = { ...R1, ip4: `10.${vnId / 100}.${1 + (i >> 8)}.${i & 0xff}`, ip6: `2001:db8:${vnId / 100}::1:${i.toString(16)}` };
        const frame = F.accessFrame(L1, to, { srcPort: 1024 + i, dstPort: 80 + (i % 7), family: (i & 1 ? 6 : 4) as F.Family });
        const a = E.viewOverlay(only(F.send(dp, F.ACC1, frame), `flow ${i}`).frame, F.vn(vnId).profile.encap).entropy;
        const b = E.viewOverlay(only(F.send(dp, F.ACC1, frame), `flow ${i} again`).frame, F.vn(vnId).profile.encap).entropy;
        assert.is(a, b, `flow ${i}: entropy not stable (${a} then ${b})`);
        if (vnId !== 300) assert.ok(a >= 49152 && a <= 65535, `source port ${a}`);
        seen.set(a, (seen.get(a) ?? 0) + 1);
      }
      if (vnId === 300) {
        // RFC 7637 §3.2: the 8-bit FlowID adds per-flow entropy; 256 flows must not all share a few values.
        assert.ok(seen.size >= 64, `NVGRE FlowID: only ${seen.size} distinct values over ${N} flows`);
      } else {
        // 256 flows into 16384 ports: a decent hash collides a handful of times at most.
        assert.ok(seen.size >= N - 16, `UDP source port: only ${seen.size} distinct values over ${N} flows (VN ${vnId})`);
      }
    }
  }
});

test("entropy: the same flow gets the same source port in every data plane instance (worker threads share flows)", async () => {
  const a = await fixtureDp(4);
  const b = await fixtureDp(4);
  const { L1 } = F.locals(100);
  const { R1 } = F.remotes(100);
  for (let i = 0; i < 32; i++) {
    const frame = F.accessFrame(L1, R1, { srcPort: 3000 + i });
    const ea = E.viewOverlay(only(F.send(a, F.ACC1, frame), "a").frame, "vxlan").entropy;
    const eb = E.viewOverlay(only(F.send(b, F.ACC1, frame), "b").frame, "vxlan").entropy;
    assert.is(ea, eb, `flow ${i}: ${ea} in one instance, ${eb} in another`);
  }
});

test("entropy: every fragment of one inner IPv4 datagram gets the same source port (one underlay path, no reordering)", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const { R1 } = F.remotes(100);
  // Non-first fragments carry no UDP header, so a hash that used the ports of the first one would split the datagram.
  const frag = (mf: boolean, off: number, payload: Uint8Array) => E.ethernet({ dst: R1.mac, src: L1.mac, tags: [F.tagOf(100, F.ACC1)],
    type: E.ETH_IPV4, pad: true, payload: E.ipv4Packet({ src: L1.ip4, dst: R1.ip4, protocol: E.IPPROTO_UDP, id: 0x1234, df: false, mf,
                                                         fragOffset: off, payload }) });
  const first = E.udp({ src: L1.ip4, dst: R1.ip4, srcPort: 1111, dstPort: 2222, payload: new Uint8Array(1000) }).subarray(0, 64);
  const ent = (f: Uint8Array) => E.viewOverlay(only(F.send(dp, F.ACC1, f), "fragment").frame, "vxlan").entropy;
  const e = [ent(frag(true, 0, first)), ent(frag(true, 8, new Uint8Array(64))), ent(frag(false, 16, new Uint8Array(64)))];
  assert.equal(new Set(e).size, 1, `fragments got source ports ${e}`);
});

// ------------------------------------------------------------------ hairpin

test("hairpin: local → local on another port is re-tagged with the destination port's tag, not encapsulated", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    for (const vnId of [100, 200, 300, 400]) {
      const { L1, L2, L4 } = F.locals(vnId);
      for (const [from, to, inPort, outPort] of [[L1, L2, F.ACC1, F.ACC2], [L2, L1, F.ACC2, F.ACC1], [L2, L4, F.ACC2, F.ACC1]] as const) {
        for (const pcp of [0, 6]) {
          const frame = F.accessFrame(from, to, { pcp, family });
          const out = only(F.send(dp, inPort, frame), `hairpin ${from.mac}→${to.mac}`);
          assert.is(out.port, outPort);
          // The VID changes to the egress port's tag for the VN; PCP and DEI travel with the frame.
          const expected = E.insertTag(E.stripTag(frame), F.tagOf(vnId, outPort, pcp));
          eqBytes(out.frame, expected, `hairpin VN ${vnId} ${inPort}(tag ${F.vn(vnId).tags[inPort]})→${outPort}(tag ${F.vn(vnId).tags[outPort]})`);
        }
      }
    }
  }
});

test("hairpin: DEI bit is carried through the re-tag", async () => {
  const dp = await dpFor(4);
  const { L1, L2 } = F.locals(100);
  const frame = F.accessFrame(L1, L2, { pcp: 3 });
  frame[14] |= 0x10; // DEI
  const out = only(F.send(dp, F.ACC1, frame), "DEI");
  eqBytes(out.frame, E.insertTag(E.stripTag(frame), { vid: 20, pcp: 3, dei: 1 }), "DEI hairpin");
});

test("VN isolation: a destination MAC that exists only in another VN is unknown unicast in this one", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const elsewhere = F.locals(200).L2; // behind acc2, VN 200
  const remoteElsewhere = F.remotes(300).R1; // behind nve-r1, VN 300
  for (const to of [elsewhere, remoteElsewhere]) {
    const frame = F.accessFrame(L1, to);
    expectFlood(F.send(dp, F.ACC1, frame), { family: 4, vnId: 100, frame, inPort: F.ACC1, remotes: F.REMOTES, localPorts: [F.ACC2],
                                             label: `to ${to.mac} of VN ${to.vn}` });
  }
});

test("same port: a local destination behind the ingress port is dropped (same-port), never sent back", async () => {
  const dp = await dpFor(4);
  const { L1, L4 } = F.locals(100);
  dropped(F.send(dp, F.ACC1, F.accessFrame(L1, L4)), "same-port", "L1→L4 both on acc1");
});

// ------------------------------------------------------------------ flooding

/** Checks a flood: one encapsulated copy per remote on the flood list, one re-tagged copy per other local port. */
function expectFlood(s: F.Sent, o: { family: F.Family; vnId: number; frame: Uint8Array; inPort: string; remotes: F.RemoteNve[];
                                     localPorts: string[]; dscp?: number; label: string }): void {
  assert.is(s.drop, undefined, `${o.label}: dropped ${JSON.stringify(s.drops)}`);
  const up = s.outs.filter((x) => x.port === F.UPLINK);
  const local = s.outs.filter((x) => x.port !== F.UPLINK);
  assert.ok(!s.outs.some((x) => x.port === o.inPort), `${o.label}: a copy went back out of the ingress port ${o.inPort}`);
  assert.is(up.length, o.remotes.length, `${o.label}: ${up.length} overlay copies, expected ${o.remotes.length}`);
  const inner = E.stripTag(o.frame);
  const kind = F.vn(o.vnId).profile.encap;
  const byDst = new Map(up.map((x) => {
    const v = E.viewOverlay(x.frame, kind);
    const dst = v.family === 4 ? x.frame.subarray(30, 34) : x.frame.subarray(38, 54);
    return [E.hex(dst), x.frame] as const;
  }));
  for (const r of o.remotes) {
    const got = byDst.get(E.hex(E.ip(F.remoteIp(r, o.family))));
    assert.ok(got, `${o.label}: no copy to ${F.remoteIp(r, o.family)}`);
    expectEncap(got!, { family: o.family, to: r, vnId: o.vnId, inner, dscp: o.dscp ?? 0, label: `${o.label} → ${r.name}` });
  }
  assert.equal(local.map((x) => x.port).sort(), [...o.localPorts].sort(), `${o.label}: local copies`);
  for (const l of local) {
    eqBytes(l.frame, E.insertTag(inner, F.tagOf(o.vnId, l.port, (o.frame[14] >> 5) & 7)), `${o.label}: copy to ${l.port}`);
  }
}

for (const family of [4, 6] as F.Family[]) {
  test(`flood (IPv${family} underlay): broadcast, multicast and unknown unicast → every remote on the flood list + other local ports`, async () => {
    const dp = await dpFor(family);
    for (const vnId of [100, 200, 300]) {
      const { L1, L2 } = F.locals(vnId);
      const cases: [string, Uint8Array, string][] = [
        ["broadcast", F.accessFrame(L1, F.BROADCAST), F.ACC1],
        ["IPv4 multicast", F.accessFrame(L1, { mac: "01:00:5e:00:00:fb", ip4: "224.0.0.251", ip6: "ff02::fb" }), F.ACC1],
        ["IPv6 multicast", F.accessFrame(L1, { mac: "33:33:00:00:00:fb", ip4: "224.0.0.251", ip6: "ff02::fb" }, { family: 6 }), F.ACC1],
        ["unknown unicast", F.accessFrame(L1, { mac: F.unknownMac(vnId), ip4: "10.9.9.9", ip6: "2001:db8:9::9" }), F.ACC1],
        ["broadcast from acc2", F.accessFrame(L2, F.BROADCAST, { pcp: 2 }), F.ACC2],
      ];
      for (const [name, frame, inPort] of cases) {
        expectFlood(F.send(dp, inPort, frame), { family, vnId, frame, inPort, remotes: F.REMOTES,
          localPorts: F.ACCESS_PORTS.filter((p) => p !== inPort), dscp: ((frame[14] >> 5) & 7) << 3,
          label: `VN ${vnId} ${name}` });
      }
    }
  });
}

test("flood: head-end replication to 64 remotes (flood list grown at run time), still never back to the ingress port", async () => {
  const dp = await fixtureDp(4);
  const extra: F.RemoteNve[] = [];
  for (let i = 0; i < 61; i++) extra.push({ name: `x${i}`, ip4: `198.51.100.${i + 1}`, ip6: `2001:db8:eeee::${i + 1}`, host: 0 });
  dp.apply(extra.map((r) => ({ op: "flood.join", vn: 100, nve: r.ip4 })));
  const { L1 } = F.locals(100);
  const frame = F.accessFrame(L1, F.BROADCAST);
  expectFlood(F.send(dp, F.ACC1, frame), { family: 4, vnId: 100, frame, inPort: F.ACC1, remotes: [...F.REMOTES, ...extra],
    localPorts: [F.ACC2], label: "64-remote flood" });
});

test("flood-empty: a broadcast in a VN with no remote and no other local port is dropped and counted", async () => {
  const dp = await fixtureDp(4);
  dp.apply([
    { op: "vn", vn: 900, vni: 9000, profile: { encap: "vxlan", mtu: 1500 } },
    { op: "tag", port: F.ACC1, tag: 90, vn: 900 },
  ]);
  const frame = E.udpFrame({ dst: "ff:ff:ff:ff:ff:ff", src: "02:00:5e:09:01:01", tag: { vid: 90 }, srcIp: "10.9.0.1", dstIp: "10.9.255.255" });
  dropped(F.send(dp, F.ACC1, frame), "flood-empty", "lonely VN broadcast");
});

// ------------------------------------------------------------------ ARP / ND suppression

test("ARP suppression (RFC 9161): a request for a known IP is answered from the same port and tag", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    for (const vnId of [100, 200, 300]) {
      const { L1, L2 } = F.locals(vnId);
      const { R1 } = F.remotes(vnId);
      for (const [asker, port, target] of [[L1, F.ACC1, L2], [L1, F.ACC1, R1], [L2, F.ACC2, R1], [L2, F.ACC2, L1]] as const) {
        const req = E.arpFrame({ op: 1, src: asker.mac, tag: F.tagOf(vnId, port), spa: asker.ip4, tpa: target.ip4 });
        const out = only(F.send(dp, port, req), `ARP who-has ${target.ip4}`);
        assert.is(out.port, port, "reply leaves by the ingress port");
        const reply = E.ethernet({ dst: asker.mac, src: target.mac, tags: [F.tagOf(vnId, port)], type: E.ETH_ARP,
          payload: E.arp({ op: 2, sha: target.mac, spa: target.ip4, tha: asker.mac, tpa: asker.ip4 }) });
        // 46 bytes of header + ARP; a sender may pad to the 64-byte tagged minimum, with zeros.
        assert.ok(out.frame.length === 46 || out.frame.length === 64, `reply length ${out.frame.length}`);
        eqBytes(out.frame.subarray(0, 46), reply, `ARP reply VN ${vnId} for ${target.ip4}`);
        assert.ok(out.frame.subarray(46).every((b) => b === 0), "padding is zero");
      }
    }
  }
});

test("ARP suppression: unknown targets and gratuitous ARP are flooded, not answered", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const unknown = E.arpFrame({ op: 1, src: L1.mac, tag: F.tagOf(100, F.ACC1), spa: L1.ip4, tpa: "10.1.0.200" });
  expectFlood(F.send(dp, F.ACC1, unknown), { family: 4, vnId: 100, frame: unknown, inPort: F.ACC1, remotes: F.REMOTES,
                                             localPorts: [F.ACC2], label: "ARP for unknown IP" });
  const garp = E.arpFrame({ op: 1, src: L1.mac, tag: F.tagOf(100, F.ACC1), spa: L1.ip4, tpa: L1.ip4 });
  expectFlood(F.send(dp, F.ACC1, garp), { family: 4, vnId: 100, frame: garp, inPort: F.ACC1, remotes: F.REMOTES,
                                          localPorts: [F.ACC2], label: "gratuitous ARP request" });
  const garpReply = E.arpFrame({ op: 2, src: L1.mac, tag: F.tagOf(100, F.ACC1), spa: L1.ip4, tha: "ff:ff:ff:ff:ff:ff", tpa: L1.ip4 });
  expectFlood(F.send(dp, F.ACC1, garpReply), { family: 4, vnId: 100, frame: garpReply, inPort: F.ACC1, remotes: F.REMOTES,
                                               localPorts: [F.ACC2], label: "gratuitous ARP reply" });
});

test("ARP: without arpSuppress in the profile a request for a known IP is flooded", async () => {
  const dp = await dpFor(4);
  const { L1, L2 } = F.locals(400);
  const req = E.arpFrame({ op: 1, src: L1.mac, tag: F.tagOf(400, F.ACC1), spa: L1.ip4, tpa: L2.ip4 });
  expectFlood(F.send(dp, F.ACC1, req), { family: 4, vnId: 400, frame: req, inPort: F.ACC1, remotes: F.REMOTES,
                                         localPorts: [F.ACC2], dscp: 46, label: "ARP in VN 400" });
});

/** A tagged neighbor solicitation from `asker` for `target` (RFC 4861 §4.3, to the solicited-node group). */
function nsFrame(asker: F.Host, port: string, vnId: number, target: string): Uint8Array {
  const dstIp = E.solicitedNode(target);
  return E.ethernet({ dst: E.ipv6MulticastMac(dstIp), src: asker.mac, tags: [F.tagOf(vnId, port)], type: E.ETH_IPV6,
    payload: E.neighborSolicitation({ src: asker.ip6, dst: dstIp, target, sll: asker.mac }) });
}

test("ND suppression (RFC 9161): an NS for a known IPv6 address is answered with an NA from the same port and tag", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    for (const vnId of [100, 200, 300]) {
      const { L1, L2 } = F.locals(vnId);
      const { R1 } = F.remotes(vnId);
      for (const [asker, port, target] of [[L1, F.ACC1, L2], [L1, F.ACC1, R1], [L2, F.ACC2, R1]] as const) {
        const out = only(F.send(dp, port, nsFrame(asker, port, vnId, target.ip6)), `NS for ${target.ip6}`);
        assert.is(out.port, port);
        const icmpOff = 18 + 40;
        const flags = out.frame[icmpOff + 4];
        // RFC 4861 §7.2.4: a solicited NA has S=1; the target is a host, so R=0. O is the responder's choice
        // (a proxy sets it to 0, §7.2.8; RFC 9161 lets the NVE set it), so we take it from the output.
        assert.is(flags & 0x80, 0, "R flag clear");
        assert.is(flags & 0x40, 0x40, "S flag set");
        assert.is(flags & 0x1f, 0, "reserved bits zero");
        const na = E.ethernet({ dst: asker.mac, src: target.mac, tags: [F.tagOf(vnId, port)], type: E.ETH_IPV6,
          payload: E.neighborAdvertisement({ src: target.ip6, dst: asker.ip6, target: target.ip6, solicited: true,
                                             override: (flags & 0x20) !== 0, tll: target.mac }) });
        eqBytes(out.frame, na, `NA VN ${vnId} for ${target.ip6}`);
      }
    }
  }
});

test("ARP/ND suppression answers only well-formed requests (RFC 826 fields, RFC 4861 §7.1.1 NS validity)", async () => {
  const dp = await dpFor(4);
  const { L1, L2 } = F.locals(100);
  const req = E.arpFrame({ op: 1, src: L1.mac, tag: F.tagOf(100, F.ACC1), spa: L1.ip4, tpa: L2.ip4 });
  const edit = (f: Uint8Array, fn: (c: Uint8Array) => void) => { const c = f.slice(); fn(c); return c; };
  const notAnswered = (s: F.Sent, label: string) =>
    assert.not.ok(s.outs.some((o) => o.port === F.ACC1), `${label}: answered (${s.outs.map((o) => o.port)})`);
  notAnswered(F.send(dp, F.ACC1, edit(req, (c) => { c[20] = 0x86; c[21] = 0xdd; })), "ARP for protocol 0x86dd");
  notAnswered(F.send(dp, F.ACC1, edit(req, (c) => { c[22] = 8; })), "ARP with hlen 8");
  notAnswered(F.send(dp, F.ACC1, edit(req, (c) => { c[25] = 3; })), "ARP op 3");
  const nsIp = E.solicitedNode(L2.ip6);
  const ns = E.ethernet({ dst: E.ipv6MulticastMac(nsIp), src: L1.mac, tags: [F.tagOf(100, F.ACC1)], type: E.ETH_IPV6,
    payload: E.neighborSolicitation({ src: L1.ip6, dst: nsIp, target: L2.ip6, sll: L1.mac }) });
  notAnswered(F.send(dp, F.ACC1, edit(ns, (c) => { c[18 + 7] = 64; })), "NS with hop limit 64");
  notAnswered(F.send(dp, F.ACC1, E.ethernet({ dst: E.ipv6MulticastMac(nsIp), src: L1.mac, tags: [F.tagOf(100, F.ACC1)], type: E.ETH_IPV6,
    payload: E.ipv6Packet({ src: L1.ip6, dst: nsIp, nextHeader: 58, hopLimit: 255,
      payload: E.icmpv6(L1.ip6, nsIp, 135, 1, E.concat(E.be32(0), E.ipv6(L2.ip6), E.lladdrOption(1, L1.mac))) }) })), "NS with code 1");
  notAnswered(F.send(dp, F.ACC1, E.ethernet({ dst: E.ipv6MulticastMac(nsIp), src: L1.mac, tags: [F.tagOf(100, F.ACC1)], type: E.ETH_IPV6,
    payload: E.neighborSolicitation({ src: L1.ip6, dst: nsIp, target: "ff02::1", sll: L1.mac }) })), "NS for a multicast target");
  // §7.1.1: "The ICMP checksum is valid" is the first validity condition; an NS failing it was never sent by anyone.
  notAnswered(F.send(dp, F.ACC1, edit(ns, (c) => { c[18 + 40 + 2] ^= 0xff; })), "NS with a bad ICMPv6 checksum");
});

test("a truncated ARP frame is counted as truncated, not as spoofing", async () => {
  const dp = await dpFor(4);
  const { L1, L2 } = F.locals(100);
  const req = E.arpFrame({ op: 1, src: L1.mac, tag: F.tagOf(100, F.ACC1), spa: L1.ip4, tpa: L2.ip4 });
  // 40 bytes: the tag, the ARP header and sha/spa (L1's own, bound), but no tha/tpa.
  dropped(F.send(dp, F.ACC1, req.subarray(0, 40)), "truncated", "ARP cut after the sender address");
});

test("ND: an NS for an unknown target is flooded", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const ns = nsFrame(L1, F.ACC1, 100, "2001:db8:1::dead");
  expectFlood(F.send(dp, F.ACC1, ns), { family: 4, vnId: 100, frame: ns, inPort: F.ACC1, remotes: F.REMOTES, localPorts: [F.ACC2],
                                        label: "NS unknown target" });
});

// ------------------------------------------------------------------ port security

test("port security: spoofed source MAC, spoofed source IP and an inactive VNIC are dropped with their reasons", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    for (const vnId of [100, 200, 300]) {
      const { L1, L2, L3 } = F.locals(vnId);
      const { R1 } = F.remotes(vnId);
      const nobody = { ...L1, mac: "02:00:5e:99:99:99" };
      dropped(F.send(dp, F.ACC1, F.accessFrame(nobody, R1)), "spoofed-mac", `VN ${vnId}: unknown source MAC`);
      // L2's MAC exists, but behind acc2: seed §5, the source must be a VNIC on this port and VN.
      dropped(F.send(dp, F.ACC1, F.accessFrame({ ...L2, port: F.ACC1 }, R1)), "spoofed-mac", `VN ${vnId}: L2's MAC on acc1`);
      // A remote's MAC sent from a local port.
      dropped(F.send(dp, F.ACC1, F.accessFrame({ ...R1, port: F.ACC1 }, L2)), "spoofed-mac", `VN ${vnId}: remote MAC on acc1`);
      // Right MAC, someone else's IP (IPv4 and IPv6).
      dropped(F.send(dp, F.ACC1, F.accessFrame({ ...L1, ip4: L2.ip4 }, R1)), "spoofed-ip", `VN ${vnId}: L1 with L2's IPv4`);
      dropped(F.send(dp, F.ACC1, F.accessFrame({ ...L1, ip6: L2.ip6 }, R1, { family: 6 })), "spoofed-ip", `VN ${vnId}: L1 with L2's IPv6`);
      dropped(F.send(dp, F.ACC1, F.accessFrame({ ...L1, ip4: "10.77.0.1" }, R1)), "spoofed-ip", `VN ${vnId}: unbound IPv4`);
      // ARP: the sender protocol address is the source IP.
      const arpSpoof = E.arpFrame({ op: 1, src: L1.mac, tag: F.tagOf(vnId, F.ACC1), spa: L2.ip4, tpa: R1.ip4 });
      dropped(F.send(dp, F.ACC1, arpSpoof), "spoofed-ip", `VN ${vnId}: ARP with L2's IP`);
      // A link-local address that is not L1's EUI-64.
      dropped(F.send(dp, F.ACC1, F.accessFrame({ ...L1, ip6: "fe80::1" }, R1, { family: 6 })), "spoofed-ip", `VN ${vnId}: foreign fe80::1`);
      // L3 is Associated, not Activated (RFC 8394 §3): no traffic.
      dropped(F.send(dp, F.ACC1, F.accessFrame(L3, R1)), "vnic-inactive", `VN ${vnId}: associated-only VNIC`);
    }
  }
});

test("port security: ARP and ND may not claim another VNIC's address (ARP sha/spa, NA target)", async () => {
  const dp = await dpFor(4);
  const { L1, L2 } = F.locals(100);
  const { R1 } = F.remotes(100);
  // ARP from L1's MAC announcing L2's MAC as the sender hardware address.
  const sha = E.arpFrame({ op: 1, src: L1.mac, sha: L2.mac, tag: F.tagOf(100, F.ACC1), spa: L1.ip4, tpa: R1.ip4 });
  const s1 = F.send(dp, F.ACC1, sha);
  assert.is(s1.outs.length, 0, "ARP with a foreign sender MAC forwarded");
  assert.ok(s1.drop === "spoofed-mac" || s1.drop === "spoofed-ip", JSON.stringify(s1.drops));
  // An unsolicited NA from L1 (its own MAC and IPv6 source) advertising L2's address with L1's MAC: the IPv6
  // equivalent of an ARP reply with a foreign spa (RFC 4861 §4.4: the target is the address being advertised),
  // which poisons every neighbour cache in the VN if flooded.
  const na = E.ethernet({ dst: "33:33:00:00:00:01", src: L1.mac, tags: [F.tagOf(100, F.ACC1)], type: E.ETH_IPV6,
    payload: E.neighborAdvertisement({ src: L1.ip6, dst: "ff02::1", target: L2.ip6, override: true, tll: L1.mac }) });
  const s2 = F.send(dp, F.ACC1, na);
  assert.equal(s2.outs.map((o) => o.port), [], "NA claiming L2's IPv6 address was forwarded");
  assert.equal(s2.drops, { "spoofed-ip": 1 });
});

test("port security allows 0.0.0.0, :: and the EUI-64 link-local address of the source MAC", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const { R1 } = F.remotes(100);
  // DHCP discover: 0.0.0.0 → 255.255.255.255 (flooded).
  const dhcp = E.udpFrame({ dst: "ff:ff:ff:ff:ff:ff", src: L1.mac, tag: F.tagOf(100, F.ACC1), srcIp: "0.0.0.0", dstIp: "255.255.255.255",
                            srcPort: 68, dstPort: 67 });
  expectFlood(F.send(dp, F.ACC1, dhcp), { family: 4, vnId: 100, frame: dhcp, inPort: F.ACC1, remotes: F.REMOTES, localPorts: [F.ACC2],
                                          label: "DHCP from 0.0.0.0" });
  // DAD: NS from :: (RFC 4862 §5.4.2), no SLLAO; flooded or suppressed, but never a spoofing drop.
  const dadIp = E.solicitedNode(L1.ip6);
  const dad = E.ethernet({ dst: E.ipv6MulticastMac(dadIp), src: L1.mac, tags: [F.tagOf(100, F.ACC1)], type: E.ETH_IPV6,
                           payload: E.neighborSolicitation({ src: "::", dst: dadIp, target: L1.ip6 }) });
  const d = F.send(dp, F.ACC1, dad);
  assert.not.ok(d.drops["spoofed-ip"] || d.drops["spoofed-mac"], `DAD dropped as ${JSON.stringify(d.drops)}`);
  // Unicast from fe80::EUI-64(L1.mac) to R1.
  const ll = F.accessFrame({ ...L1, ip6: E.linkLocalFromMac(L1.mac) }, { ...R1, ip6: E.linkLocalFromMac(R1.mac) }, { family: 6 });
  const out = only(F.send(dp, F.ACC1, ll), "link-local");
  expectEncap(out.frame, { family: 4, to: F.REMOTES[0], vnId: 100, inner: E.stripTag(ll), dscp: 0, label: "fe80 EUI-64" });
});

test("port security off (VN 400): any source MAC/IP is forwarded", async () => {
  const dp = await dpFor(4);
  const { R1 } = F.remotes(400);
  const stranger: F.Host = { vn: 400, mac: "02:00:5e:99:99:99", ip4: "10.99.0.1", ip6: "2001:db8:99::1", port: F.ACC1 };
  const frame = F.accessFrame(stranger, R1);
  const out = only(F.send(dp, F.ACC1, frame), "no port security");
  expectEncap(out.frame, { family: 4, to: F.REMOTES[0], vnId: 400, inner: E.stripTag(frame), dscp: 46, label: "VN 400 stranger" });
});

// ------------------------------------------------------------------ access drops

test("access drops: untagged, priority-tagged (VID 0), double-tagged (802.1ad, and Q-in-Q), unknown VID, truncated", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  const { R1 } = F.remotes(100);
  const base = { dst: R1.mac, src: L1.mac, srcIp: L1.ip4, dstIp: R1.ip4 };
  dropped(F.send(dp, F.ACC1, E.udpFrame({ ...base, tag: null })), "untagged", "untagged");
  dropped(F.send(dp, F.ACC1, E.udpFrame({ ...base, tag: { vid: 0, pcp: 5 } })), "priority-tagged", "VID 0");
  dropped(F.send(dp, F.ACC1, E.udpFrame({ ...base, tags: [{ tpid: E.ETH_QINQ, vid: 10 }, { vid: 10 }] })), "double-tagged", "S-tag + C-tag");
  dropped(F.send(dp, F.ACC1, E.udpFrame({ ...base, tags: [{ vid: 10 }, { vid: 10 }] })), "double-tagged", "two C-tags");
  dropped(F.send(dp, F.ACC1, E.udpFrame({ ...base, tag: { vid: 99 } })), "unknown-vid", "VID 99 on acc1");
  // VID 20 is VN 100 on acc2, not on acc1: tags are per port (RFC 8394 Req-2).
  dropped(F.send(dp, F.ACC1, E.udpFrame({ ...base, tag: { vid: 20 } })), "unknown-vid", "acc2's tag on acc1");
  dropped(F.send(dp, F.ACC1, E.udpFrame({ ...base, tag: { vid: 4095 } })), "unknown-vid", "VID 4095 (reserved)");
  for (const n of [0, 1, 13, 14, 17]) {
    // Shorter than Ethernet + one tag + EtherType (18 bytes): nothing can be decided.
    dropped(F.send(dp, F.ACC1, E.udpFrame({ ...base, tag: { vid: 10 } }).subarray(0, n)), "truncated", `${n}-byte frame`);
  }
});

test("mtu-exceeded: an inner IP packet above the VN's MTU is dropped; exactly the MTU passes (VN 400, MTU 1400)", async () => {
  for (const family of [4, 6] as F.Family[]) {
    const dp = await dpFor(family);
    const { L1, L2 } = F.locals(400);
    const { R1 } = F.remotes(400);
    for (const innerFam of [4, 6] as F.Family[]) {
      const hdr = innerFam === 4 ? 28 : 48;
      const fits = F.accessFrame(L1, R1, { payloadLen: 1400 - hdr, family: innerFam });
      const out = only(F.send(dp, F.ACC1, fits), "1400-byte packet");
      expectEncap(out.frame, { family, to: F.REMOTES[0], vnId: 400, inner: E.stripTag(fits), dscp: 46, label: "MTU-sized" });
      dropped(F.send(dp, F.ACC1, F.accessFrame(L1, R1, { payloadLen: 1401 - hdr, family: innerFam })), "mtu-exceeded", `1401 IPv${innerFam}`);
      // Hairpin and flood obey the VN MTU as well.
      dropped(F.send(dp, F.ACC1, F.accessFrame(L1, L2, { payloadLen: 1401 - hdr, family: innerFam })), "mtu-exceeded", "hairpin 1401");
      dropped(F.send(dp, F.ACC1, F.accessFrame(L1, F.BROADCAST, { payloadLen: 1401 - hdr, family: innerFam })), "mtu-exceeded", "flood 1401");
    }
  }
});

test("frame-too-long: a frame that cannot fit its slot is counted, not cut", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(400);
  const { R1 } = F.remotes(400);
  const s = F.send(dp, F.ACC1, F.accessFrame(L1, R1, { payloadLen: 3000 }));
  assert.is(s.outs.length, 0);
  assert.equal(s.drops, { "frame-too-long": 1 });
});

test("unknown-port: a frame entering a port the data plane does not know is counted as unknown-port", async () => {
  const dp = await dpFor(4);
  const { L1 } = F.locals(100);
  dropped(F.send(dp, "nosuchport", F.accessFrame(L1, F.BROADCAST)), "unknown-port", "unknown port name");
});

test.run();
