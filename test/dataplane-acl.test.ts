// The VN profile's ACL in the data plane (issue 14; PROTOCOL.md §5 `acl`,
// `aclDefault`): first match wins, no match takes the default, rules apply
// from a VNIC (whatever the destination) and to a VNIC (locally switched or
// decapsulated), ARP and ND are not the ACL's, a deny is dropped as
// `acl-deny` and counted on its rule. Every case runs with the fast paths on
// and off (assembly/pipeline/fast.ts) and must give the same bytes and
// counters; expected frames come from the independent encoder.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as E from "./support/encoder.js";
import * as F from "./support/frames.js";
import { fixtureDp, eqBytes, dropped, flowLabelOf } from "./support/dp-fixture.js";
import { DataPlane, DataPlaneError } from "../host/dataplane/dataplane.js";
import type { AclRule, DpOp } from "../host/dataplane/ops.js";
import { canonProfile } from "../host/ima/core.js";
import { ProtocolError } from "../host/protocol/errors.js";

const VN = 100;
const ACL: AclRule[] = [
  { action: "deny", proto: "tcp", dstPort: 22 },                          // 0
  { action: "allow", proto: "tcp", dstPort: "80-90" },                    // 1
  { action: "deny", dir: "to-vnic", proto: "udp", dstPort: 9999 },        // 2
  { action: "deny", proto: "icmp", icmpType: 8, src: "10.1.0.0/16" },     // 3
  { action: "allow", proto: "icmp" },                                     // 4
  { action: "allow", proto: "udp" },                                      // 5
  { action: "deny", src: "2001:db8:1::/48" },                             // 6
];

function aclOp(acl: AclRule[] = ACL, aclDefault: "allow" | "deny" = "deny"): DpOp {
  const v = F.vn(VN);
  return { op: "vn", vn: VN, vni: v.vni, profile: { ...v.profile, acl, aclDefault } };
}

async function aclDp(family: F.Family, fast: boolean): Promise<DataPlane> {
  const dp = await fixtureDp(family);
  dp.apply([aclOp()]);
  dp.fastPaths(fast);
  return dp;
}

const { L1, L2 } = F.locals(VN);
const { R1 } = F.remotes(VN);
type H = { mac: string; ip4: string; ip6: string };

function tcpFrame(from: H, to: H, dstPort: number, fam: F.Family, tag: E.Tag | null): Uint8Array {
  const [s, d] = fam === 4 ? [from.ip4, to.ip4] : [from.ip6, to.ip6];
  return E.l4Frame({ dst: to.mac, src: from.mac, tag, srcIp: s, dstIp: d, protocol: E.IPPROTO_TCP,
    l4: E.tcp({ src: s, dst: d, srcPort: 40000, dstPort }) });
}
function icmpFrame(from: H, to: H, type: number, tag: E.Tag | null): Uint8Array {
  return E.l4Frame({ dst: to.mac, src: from.mac, tag, srcIp: from.ip4, dstIp: to.ip4, protocol: 1,
    l4: E.icmpMessage({ src: from.ip4, dst: to.ip4, type }) });
}
const tag1 = F.tagOf(VN, F.ACC1);

/** `out` is exactly `frame` (tag stripped) in VN 100's VXLAN toward remote 0. */
function isEncap(out: { port: string; frame: Uint8Array }, frame: Uint8Array, family: F.Family, label: string): void {
  assert.is(out.port, F.UPLINK, label);
  const view = E.viewOverlay(out.frame, "vxlan");
  const u = { ...F.underlayTo(F.REMOTES[0], family, 0), flowLabel: flowLabelOf(view, "vxlan", label) };
  eqBytes(out.frame, E.overlayFrame(u, { kind: "vxlan", vni: F.vn(VN).vni, entropy: view.entropy }, E.stripTag(frame)), label);
}

function one(s: F.Sent, label: string): { port: string; frame: Uint8Array } {
  assert.is(s.drop, undefined, `${label}: dropped as ${JSON.stringify(s.drops)}`);
  assert.is(s.outs.length, 1, `${label}: ${s.outs.length} outputs`);
  return s.outs[0];
}

function aclCounts(dp: DataPlane): { default: number; rules: Record<string, number> } {
  return (dp.counters() as unknown as { acl: Record<string, { default: number; rules: Record<string, number> }> }).acl[String(VN)];
}

for (const family of [4, 6] as F.Family[]) {
  for (const fast of [true, false]) {
    const how = `IPv${family} underlay, fast paths ${fast ? "on" : "off"}`;

    test(`acl from a VNIC: allow, deny and default, first match wins, each deny counted on its rule (${how})`, async () => {
      const dp = await aclDp(family, fast);
      const allow80 = tcpFrame(L1, R1, 80, 4, tag1);
      isEncap(one(F.send(dp, F.ACC1, allow80), "tcp/80"), allow80, family, "tcp/80 allowed by rule 1");
      dropped(F.send(dp, F.ACC1, tcpFrame(L1, R1, 22, 4, tag1)), "acl-deny", "tcp/22 (rule 0)");
      dropped(F.send(dp, F.ACC1, tcpFrame(L1, R1, 443, 4, tag1)), "acl-deny", "tcp/443 (no rule: default deny)");
      // rule 2 is to-vnic only: from the VNIC, udp/9999 reaches rule 5 (allow)
      const u9999 = F.accessFrame(L1, R1, { dstPort: 9999 });
      isEncap(one(F.send(dp, F.ACC1, u9999), "udp/9999 out"), u9999, family, "udp/9999 from the VNIC");
      dropped(F.send(dp, F.ACC1, icmpFrame(L1, R1, 8, tag1)), "acl-deny", "icmp echo from 10.1/16 (rule 3)");
      const reply = icmpFrame(L1, R1, 0, tag1);
      isEncap(one(F.send(dp, F.ACC1, reply), "icmp reply"), reply, family, "icmp echo reply (rule 4)");
      // IPv6: rule 1 has no family, rule 6 only IPv6 sources of 2001:db8:1::/48
      const t6 = tcpFrame(L1, R1, 85, 6, tag1);
      isEncap(one(F.send(dp, F.ACC1, t6), "tcp6/85"), t6, family, "tcp6/85 (rule 1)");
      dropped(F.send(dp, F.ACC1, tcpFrame(L1, R1, 443, 6, tag1)), "acl-deny", "tcp6/443 (rule 6)");
      const c = aclCounts(dp);
      assert.equal(c, { default: 1, rules: { 0: 1, 1: 0, 2: 0, 3: 1, 4: 0, 5: 0, 6: 1 } }, "per-rule deny counts");
    });

    test(`acl to a VNIC: decapsulated and locally switched frames, flood copies (${how})`, async () => {
      const dp = await aclDp(family, fast);
      const inner = (dstPort: number, to: H = L1) => E.udpFrame({ dst: to.mac, src: R1.mac, tag: null, srcIp: R1.ip4, dstIp: to.ip4, dstPort });
      // decapsulated: udp/9999 to L1 is denied by rule 2 (to-vnic); udp/5678 is delivered with L1's tag
      dropped(F.send(dp, F.UPLINK, F.fromRemote(F.REMOTES[0], family, VN, inner(9999))), "acl-deny", "decap udp/9999 (rule 2)");
      const ok = one(F.send(dp, F.UPLINK, F.fromRemote(F.REMOTES[0], family, VN, inner(5678))), "decap udp/5678");
      assert.is(ok.port, F.ACC1);
      eqBytes(ok.frame, E.insertTag(inner(5678), F.tagOf(VN, F.ACC1)), "decap udp/5678 (rule 5)");
      dropped(F.send(dp, F.UPLINK, F.fromRemote(F.REMOTES[0], family, VN, tcpFrame(R1, L1, 22, 4, null))), "acl-deny", "decap tcp/22 (rule 0)");
      // locally switched: L1 -> L2 udp/9999 passes rule 5 from L1, then rule 2 denies it to L2
      dropped(F.send(dp, F.ACC1, F.accessFrame(L1, L2, { dstPort: 9999 })), "acl-deny", "hairpin udp/9999 (rule 2 to L2)");
      const h = F.accessFrame(L1, L2, { dstPort: 53 });
      const ho = one(F.send(dp, F.ACC1, h), "hairpin udp/53");
      assert.is(ho.port, F.ACC2);
      eqBytes(ho.frame, E.insertTag(E.stripTag(h), F.tagOf(VN, F.ACC2)), "hairpin udp/53 re-tagged for acc2");
      // a broadcast udp/9999: the remote copies go, the local copy (to acc2's VNICs) is denied by rule 2
      const b = F.accessFrame(L1, F.BROADCAST, { dstPort: 9999 });
      const s = F.send(dp, F.ACC1, b);
      assert.equal(s.drops, {}, "the frame left: no drop counted");
      assert.ok(s.outs.length > 0 && s.outs.every((o) => o.port === F.UPLINK), `only remote copies: ${s.outs.map((o) => o.port)}`);
      const c = aclCounts(dp);
      assert.equal(c.rules["2"], 2, "rule 2 denied the decapsulated and the hairpinned frame");
      assert.equal(c.rules["0"], 1, "rule 0 denied the decapsulated tcp/22");
    });

    test(`acl: ARP and ND follow port security, not the ACL, even under a deny-all default (${how})`, async () => {
      const dp = await fixtureDp(family);
      dp.apply([aclOp([], "deny")]);
      dp.fastPaths(fast);
      // ARP request for L2 (known): suppression answers it (RFC 9161)
      const req = E.arpFrame({ op: 1, src: L1.mac, tag: tag1, spa: L1.ip4, tpa: L2.ip4 });
      const r = one(F.send(dp, F.ACC1, req), "arp request");
      eqBytes(r.frame, E.arpFrame({ op: 2, src: L2.mac, dst: L1.mac, tag: tag1, spa: L2.ip4, tha: L1.mac, tpa: L1.ip4 }), "arp reply");
      // NS for L2's IPv6 address: answered too
      const dst = E.solicitedNode(L2.ip6);
      const ns = E.ethernet({ dst: E.ipv6MulticastMac(dst), src: L1.mac, tags: [tag1], type: E.ETH_IPV6,
        payload: E.neighborSolicitation({ src: L1.ip6, dst, target: L2.ip6, sll: L1.mac }) });
      const na = one(F.send(dp, F.ACC1, ns), "neighbour solicitation");
      eqBytes(na.frame, E.ethernet({ dst: L1.mac, src: L2.mac, tags: [tag1], type: E.ETH_IPV6,
        payload: E.neighborAdvertisement({ src: L2.ip6, dst: L1.ip6, target: L2.ip6, solicited: true, override: true, tll: L2.mac }) }), "NA");
      // and IP is denied by the default
      dropped(F.send(dp, F.ACC1, F.accessFrame(L1, R1)), "acl-deny", "udp under deny-all");
      assert.equal(aclCounts(dp), { default: 1, rules: {} });
    });
  }
}

test("acl: a malformed rule is refused with one error naming its key, and the profile in force stays", async () => {
  const dp = await fixtureDp(4);
  dp.apply([aclOp([{ action: "deny", proto: "tcp", dstPort: 22 }], "allow")]);
  const bad: [AclRule[], string, RegExp][] = [
    [[{ action: "deny", proto: "tcp", dstPort: "90-80" }], "profile.acl[0].dstPort", /runs backwards/],
    [[{ action: "allow" }, { action: "deny", dstPort: 22 }], "profile.acl[1].dstPort", /ports need a "proto"/],
    [[{ action: "deny", proto: "tcp", src: "10.0.0.1/8" }], "profile.acl[0].src", /zero host bits/],
    [[{ action: "deny", proto: "icmp", src: "2001:db8::/32" }], "profile.acl[0].src", /IPv6 prefix in a rule that is IPv4/],
    [[{ action: "drop" as "deny" }], "profile.acl[0].action", /"allow" or "deny"/],
    [[{ action: "deny", proto: "udp", icmpType: 3 }], "profile.acl[0].icmpType", /needs "proto": "icmp"/],
    [[{ action: "deny", proto: 300 as unknown as number }], "profile.acl[0].proto", /0\.\.255/],
    [[{ action: "deny", port: 22 } as unknown as AclRule], "profile.acl[0].port", /unknown key/],
  ];
  for (const [acl, field, re] of bad) {
    let err: unknown;
    try { dp.apply([aclOp(acl)]); } catch (e) { err = e; }
    assert.instance(err, DataPlaneError, `${field}: refused`);
    assert.is((err as DataPlaneError).field, field);
    assert.match((err as Error).message, re);
  }
  // the first profile is still in force: tcp/22 denied by its rule 0, tcp/80 passes (default allow)
  dropped(F.send(dp, F.ACC1, tcpFrame(L1, R1, 22, 4, tag1)), "acl-deny", "tcp/22 after the refusals");
  assert.is(one(F.send(dp, F.ACC1, tcpFrame(L1, R1, 80, 4, tag1)), "tcp/80").port, F.UPLINK);
});

test("acl, qos, learn: the IMA's profile check (vn.create, vn.set-profile) names the key with bad-request, and keeps every key of a good profile", () => {
  for (const [profile, field, re] of [
    [{ encap: "vxlan", acl: [{ action: "allow" }, { action: "deny", proto: "tcp", srcPort: "1-2-3" }] }, "profile.acl[1].srcPort", /not a port/],
    [{ encap: "vxlan", qos: { rateMbps: 10, burstKb: 0.5 } }, "profile.qos.burstKb", /less than one frame/],
    [{ encap: "vxlan", learn: "glean", maxLearnedPerPort: 100000 }, "profile.maxLearnedPerPort", /1 to 65536/],
  ] as [Record<string, unknown>, string, RegExp][]) {
    let err: unknown;
    try { canonProfile(profile); } catch (e) { err = e; }
    assert.instance(err, ProtocolError, field);
    assert.is((err as ProtocolError).code, "bad-request");
    assert.is((err as ProtocolError).field, field);
    assert.match((err as Error).message, re);
  }
  const good = { encap: "vxlan", learn: "glean", learnAgeMs: 60000, maxLearnedPerPort: 8, qos: { pcp: 3, rateMbps: 100, burstKb: 256 },
    acl: ACL, aclDefault: "deny" } as const;
  const c = canonProfile(good);
  assert.equal([c.learnAgeMs, c.maxLearnedPerPort, c.qos, c.acl, c.aclDefault], [60000, 8, good.qos, ACL, "deny"]);
});

test("acl: a profile change takes effect at once, its counters start from 0, removing the ACL stops it", async () => {
  const dp = await fixtureDp(4);
  dp.apply([aclOp()]);
  dropped(F.send(dp, F.ACC1, tcpFrame(L1, R1, 22, 4, tag1)), "acl-deny", "before");
  dp.apply([aclOp([{ action: "deny", proto: "tcp", dstPort: "20-25" }], "allow")]);
  assert.equal(aclCounts(dp), { default: 0, rules: { 0: 0 } });
  dropped(F.send(dp, F.ACC1, tcpFrame(L1, R1, 23, 4, tag1)), "acl-deny", "tcp/23 under the new rule");
  assert.is(one(F.send(dp, F.ACC1, tcpFrame(L1, R1, 443, 4, tag1)), "tcp/443").port, F.UPLINK);
  dp.apply([{ op: "vn", vn: VN, vni: F.vn(VN).vni, profile: F.vn(VN).profile }]);
  assert.is(one(F.send(dp, F.ACC1, tcpFrame(L1, R1, 23, 4, tag1)), "tcp/23 without an ACL").port, F.UPLINK);
  assert.is(aclCounts(dp), undefined, "no ACL, no counters");
});

test.run();
