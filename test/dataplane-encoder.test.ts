// The independent encoder (test/support/encoder.ts) must itself be right
// before it can judge the data plane. Three checks that share no code with it:
// published hex (RFC 1071's checksum example, a textbook IPv4 header), scapy
// building the same frames field by field, and tshark dissecting them with
// checksum validation on. Also proves the tshark helper catches bad frames.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import * as E from "./support/encoder.js";
import { dissectFrames, assertClean, problems, stack, tsharkAvailable } from "./support/tshark.js";
import { requireTool } from "./support/tools.js";

const U4: E.Underlay = { srcMac: "02:00:00:00:01:01", dstMac: "02:00:00:00:01:fe", src: "192.0.2.1", dst: "192.0.2.2", dscp: 40 };
const U6: E.Underlay = { srcMac: "02:00:00:00:01:01", dstMac: "02:00:00:00:01:fe", src: "2001:db8::1", dst: "2001:db8::2", dscp: 46 };
const INNER4 = E.udpFrame({ dst: "02:00:5e:00:00:02", src: "02:00:5e:00:00:01", srcIp: "10.0.0.1", dstIp: "10.0.0.2" });
const INNER6 = E.udpFrame({ dst: "02:00:5e:00:00:02", src: "02:00:5e:00:00:01", srcIp: "2001:db8:100::1", dstIp: "2001:db8:100::2" });
const OPT = { optClass: 0x0102, type: 0x05, data: E.fromHex("deadbeef") };

function eqHex(actual: Uint8Array, expected: Uint8Array, msg: string): void {
  const d = E.bytesDiff(actual, expected);
  assert.ok(d === "", `${msg}: ${d}`);
}

test("RFC 1071 §3 numerical example: checksum of 00 01 f2 03 f4 f5 f6 f7 is ~0xddf2", () => {
  assert.is(E.inetChecksum(E.fromHex("0001 f203 f4f5 f6f7")), ~0xddf2 & 0xffff);
  // Odd length: the last byte is padded with zero.
  // 0001 + f203 + f4f5 + f600 = 0x2dcf9 -> folded 0xdcfb -> complement 0x2304.
  assert.is(E.inetChecksum(E.fromHex("0001 f203 f4f5 f6")), 0x2304);
});

test("IPv4 header checksum matches a published header (45000073...b861 c0a80001 c0a800c7)", () => {
  const h = E.ipv4Packet({ src: "192.168.0.1", dst: "192.168.0.199", protocol: 17, id: 0, df: true, ttl: 64,
                           payload: new Uint8Array(0x73 - 20) }).subarray(0, 20);
  eqHex(h, E.fromHex("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7"), "IPv4 header");
  assert.is(E.inetChecksum(h), 0, "a correct header sums to zero");
});

test("addresses: IPv6 text forms, solicited-node, EUI-64 link-local, multicast MAC", () => {
  assert.is(E.hex(E.ipv6("2001:db8::1")), "20010db8000000000000000000000001");
  assert.is(E.hex(E.ipv6("::")), "0".repeat(32));
  assert.is(E.hex(E.ipv6("::ffff:192.0.2.1")), "00000000000000000000ffffc0000201");
  assert.is(E.hex(E.ipv6("fe80::1:2:3:4")), "fe800000000000000001000200030004");
  assert.throws(() => E.ipv6("1::2::3"));
  assert.throws(() => E.ipv4("1.2.3.256"));
  assert.is(E.solicitedNode("2001:db8::abcd:1234"), "ff02::1:ffcd:1234");
  // RFC 4291 App. A example style: 02:00:5e:00:00:01 -> fe80::0000:5eff:fe00:0001 (U/L bit flipped 02 -> 00).
  assert.is(E.hex(E.ipv6(E.linkLocalFromMac("02:00:5e:00:00:01"))), "fe800000000000000000" + "5efffe000001");
  assert.is(E.ipv6MulticastMac("ff02::1:ffcd:1234"), "33:33:ff:cd:12:34");
});

test("UDP checksum: verifies over both families, 0 only accepted over IPv4", () => {
  const seg4 = E.udp({ src: "10.0.0.1", dst: "10.0.0.2", srcPort: 1, dstPort: 2, payload: E.fromHex("0102") });
  assert.ok(E.udpChecksumOk("10.0.0.1", "10.0.0.2", seg4));
  const seg6 = E.udp({ src: "2001:db8::1", dst: "2001:db8::2", srcPort: 1, dstPort: 2, payload: E.fromHex("0102") });
  assert.ok(E.udpChecksumOk("2001:db8::1", "2001:db8::2", seg6));
  seg6[9] ^= 1;
  assert.not.ok(E.udpChecksumOk("2001:db8::1", "2001:db8::2", seg6));
  const zero = E.udp({ src: "2001:db8::1", dst: "2001:db8::2", srcPort: 1, dstPort: 2, payload: E.fromHex("0102"), checksum: "zero" });
  assert.not.ok(E.udpChecksumOk("2001:db8::1", "2001:db8::2", zero));
  assert.ok(E.udpChecksumOk("10.0.0.1", "10.0.0.2", E.udp({ src: "10.0.0.1", dst: "10.0.0.2", srcPort: 1, dstPort: 2,
                                                            payload: new Uint8Array(3), checksum: "zero" })));
});

test("layouts: the offsets STANDARDS.md states (VXLAN inner at 50/70, Geneve 58 with an 8-byte option, NVGRE 42)", () => {
  const vx4 = E.overlayFrame(U4, { kind: "vxlan", vni: 5000, entropy: 50000 }, INNER4);
  assert.is(vx4.length - INNER4.length, 50);
  assert.is(vx4[42], 0x08);
  assert.is(E.hex(vx4.subarray(46, 49)), "001388");
  assert.is(vx4[20] & 0x40, 0x40, "DF");
  assert.is(E.hex(vx4.subarray(36, 38)), "12b5", "dst port 4789");
  const vx6 = E.overlayFrame(U6, { kind: "vxlan", vni: 5000, entropy: 50000 }, INNER4);
  assert.is(vx6.length - INNER4.length, 70);
  const gn = E.overlayFrame(U4, { kind: "geneve", vni: 5000, entropy: 50000, geneveOptions: [OPT] }, INNER4);
  assert.is(gn.length - INNER4.length, 58);
  assert.is(gn[42], 0x02, "opt len 2 words");
  const ng = E.overlayFrame(U4, { kind: "nvgre", vni: 5000, entropy: 7 }, INNER4);
  assert.is(ng.length - INNER4.length, 42);
  assert.is(ng[23], 47);
  assert.is(E.hex(ng.subarray(34, 42)), "20006558" + "00138807");
  const v = E.viewOverlay(vx6, "vxlan");
  assert.equal([v.family, v.entropy, v.dscp, v.innerOff], [6, 50000, 46, 70]);
  assert.equal(E.viewOverlay(gn, "geneve").innerOff, 58);
  assert.equal(E.viewOverlay(ng, "nvgre").entropy, 7);
});

/** Frames built by both encoders: [name, ours, scapy expression]. */
function crossCases(): [string, Uint8Array, string][] {
  const tag = { vid: 10, pcp: 5 };
  const arpReq = E.arpFrame({ op: 1, src: "02:00:5e:00:00:01", tag, spa: "10.0.0.1", tpa: "10.0.0.2" });
  const arpRep = E.arpFrame({ op: 2, src: "02:00:5e:00:00:02", dst: "02:00:5e:00:00:01", tag, spa: "10.0.0.2",
                              tha: "02:00:5e:00:00:01", tpa: "10.0.0.1" });
  const ns = E.ethernet({ dst: "33:33:ff:00:00:02", src: "02:00:5e:00:00:01", tags: [tag], type: E.ETH_IPV6,
    payload: E.neighborSolicitation({ src: "2001:db8:100::1", dst: E.solicitedNode("2001:db8:100::2"), target: "2001:db8:100::2",
                                      sll: "02:00:5e:00:00:01" }) });
  const na = E.ethernet({ dst: "02:00:5e:00:00:01", src: "02:00:5e:00:00:02", tags: [tag], type: E.ETH_IPV6,
    payload: E.neighborAdvertisement({ src: "2001:db8:100::2", dst: "2001:db8:100::1", target: "2001:db8:100::2",
                                       solicited: true, override: true, tll: "02:00:5e:00:00:02" }) });
  const inner = "Ether(dst='02:00:5e:00:00:02',src='02:00:5e:00:00:01')/IP(src='10.0.0.1',dst='10.0.0.2',id=0,flags='DF',ttl=64)" +
    "/UDP(sport=1234,dport=5678)/Raw(bytes((0x5a+i)&0xff for i in range(18)))";
  const o4 = "Ether(src='02:00:00:00:01:01',dst='02:00:00:00:01:fe')/IP(src='192.0.2.1',dst='192.0.2.2',id=0,flags='DF',ttl=64,tos=40<<2)";
  const o6 = "Ether(src='02:00:00:00:01:01',dst='02:00:00:00:01:fe')/IPv6(src='2001:db8::1',dst='2001:db8::2',tc=46<<2,hlim=64,fl=0)";
  return [
    ["VXLAN over IPv4", E.overlayFrame(U4, { kind: "vxlan", vni: 5000, entropy: 50000 }, INNER4),
      `${o4}/UDP(sport=50000,dport=4789,chksum=0)/VXLAN(flags=0x08,vni=5000)/${inner}`],
    ["VXLAN over IPv6 (UDP checksum computed)", E.overlayFrame(U6, { kind: "vxlan", vni: 0xabcdef, entropy: 65535 }, INNER4),
      `${o6}/UDP(sport=65535,dport=4789)/VXLAN(flags=0x08,vni=0xabcdef)/${inner}`],
    ["Geneve over IPv4, no options", E.overlayFrame(U4, { kind: "geneve", vni: 6000, entropy: 49152 }, INNER4),
      `${o4}/UDP(sport=49152,dport=6081,chksum=0)/GENEVE(vni=6000,proto=0x6558)/${inner}`],
    ["Geneve over IPv6 with a critical option", E.overlayFrame(U6, { kind: "geneve", vni: 6000, entropy: 60000,
      geneveOptions: [{ ...OPT, type: 0x85 }] }, INNER4),
      `${o6}/UDP(sport=60000,dport=6081)/GENEVE(vni=6000,proto=0x6558,critical=1,optionlen=2,` +
      `options=[GeneveOptions(classid=0x0102,type=0x85,length=1,data=bytes.fromhex('deadbeef'))])/${inner}`],
    ["NVGRE over IPv4", E.overlayFrame(U4, { kind: "nvgre", vni: 7000, entropy: 0x42 }, INNER4),
      `${o4.replace("IP(", "IP(proto=47,")}/GRE(key_present=1,proto=0x6558,key=(7000<<8)|0x42)/${inner}`],
    ["NVGRE over IPv6", E.overlayFrame(U6, { kind: "nvgre", vni: 7000, entropy: 0x42 }, INNER4),
      `${o6.replace("IPv6(", "IPv6(nh=47,")}/GRE(key_present=1,proto=0x6558,key=(7000<<8)|0x42)/${inner}`],
    ["ARP request, tagged, padded", arpReq,
      "Ether(dst='ff:ff:ff:ff:ff:ff',src='02:00:5e:00:00:01')/Dot1Q(prio=5,vlan=10)/ARP(op=1,hwsrc='02:00:5e:00:00:01'," +
      "psrc='10.0.0.1',hwdst='00:00:00:00:00:00',pdst='10.0.0.2')/Padding(load=bytes(18))"],
    ["ARP reply, tagged, padded", arpRep,
      "Ether(dst='02:00:5e:00:00:01',src='02:00:5e:00:00:02')/Dot1Q(prio=5,vlan=10)/ARP(op=2,hwsrc='02:00:5e:00:00:02'," +
      "psrc='10.0.0.2',hwdst='02:00:5e:00:00:01',pdst='10.0.0.1')/Padding(load=bytes(18))"],
    ["IPv6 neighbor solicitation with SLLAO", ns,
      "Ether(dst='33:33:ff:00:00:02',src='02:00:5e:00:00:01')/Dot1Q(prio=5,vlan=10)/IPv6(src='2001:db8:100::1'," +
      "dst='ff02::1:ff00:2',hlim=255)/ICMPv6ND_NS(tgt='2001:db8:100::2')/ICMPv6NDOptSrcLLAddr(lladdr='02:00:5e:00:00:01')"],
    ["IPv6 neighbor advertisement with TLLAO", na,
      "Ether(dst='02:00:5e:00:00:01',src='02:00:5e:00:00:02')/Dot1Q(prio=5,vlan=10)/IPv6(src='2001:db8:100::2'," +
      "dst='2001:db8:100::1',hlim=255)/ICMPv6ND_NA(R=0,S=1,O=1,tgt='2001:db8:100::2')/ICMPv6NDOptDstLLAddr(lladdr='02:00:5e:00:00:02')"],
    // issue 14: the ACL cases' TCP and ICMP shapes (E.tcp, E.icmpMessage, E.l4Frame)
    ["TCP SYN over IPv4, tagged, padded", E.l4Frame({ dst: "02:00:5e:00:00:02", src: "02:00:5e:00:00:01", tag, srcIp: "10.0.0.1", dstIp: "10.0.0.2",
      protocol: E.IPPROTO_TCP, l4: E.tcp({ src: "10.0.0.1", dst: "10.0.0.2", srcPort: 40000, dstPort: 22 }) }),
      "Ether(dst='02:00:5e:00:00:02',src='02:00:5e:00:00:01')/Dot1Q(prio=5,vlan=10)/IP(src='10.0.0.1',dst='10.0.0.2',id=0,flags='DF',ttl=64)" +
      "/TCP(sport=40000,dport=22,seq=1,ack=0,flags='S',window=65535)/Padding(load=bytes(6))"],
    ["TCP SYN over IPv6", E.l4Frame({ dst: "02:00:5e:00:00:02", src: "02:00:5e:00:00:01", tag: null, srcIp: "2001:db8:100::1", dstIp: "2001:db8:100::2",
      protocol: E.IPPROTO_TCP, l4: E.tcp({ src: "2001:db8:100::1", dst: "2001:db8:100::2", srcPort: 40000, dstPort: 443 }) }),
      "Ether(dst='02:00:5e:00:00:02',src='02:00:5e:00:00:01')/IPv6(src='2001:db8:100::1',dst='2001:db8:100::2',hlim=64)" +
      "/TCP(sport=40000,dport=443,seq=1,ack=0,flags='S',window=65535)"],
    ["ICMP echo request, tagged, padded", E.l4Frame({ dst: "02:00:5e:00:00:02", src: "02:00:5e:00:00:01", tag, srcIp: "10.0.0.1", dstIp: "10.0.0.2",
      protocol: 1, l4: E.icmpMessage({ src: "10.0.0.1", dst: "10.0.0.2", type: 8 }) }),
      "Ether(dst='02:00:5e:00:00:02',src='02:00:5e:00:00:01')/Dot1Q(prio=5,vlan=10)/IP(src='10.0.0.1',dst='10.0.0.2',id=0,flags='DF',ttl=64)" +
      "/ICMP(type=8,code=0,id=1,seq=1)/Raw(bytes(8))/Padding(load=bytes(10))"],
    ["ICMPv6 echo request", E.l4Frame({ dst: "02:00:5e:00:00:02", src: "02:00:5e:00:00:01", tag: null, srcIp: "2001:db8:100::1", dstIp: "2001:db8:100::2",
      protocol: 58, l4: E.icmpMessage({ src: "2001:db8:100::1", dst: "2001:db8:100::2", type: 128 }) }),
      "Ether(dst='02:00:5e:00:00:02',src='02:00:5e:00:00:01')/IPv6(src='2001:db8:100::1',dst='2001:db8:100::2',hlim=64)" +
      "/ICMPv6EchoRequest(id=1,seq=1,data=bytes(8))"],
    ["inner IPv6 UDP frame", INNER6,
      "Ether(dst='02:00:5e:00:00:02',src='02:00:5e:00:00:01')/IPv6(src='2001:db8:100::1',dst='2001:db8:100::2',hlim=64)" +
      "/UDP(sport=1234,dport=5678)/Raw(bytes((0x5a+i)&0xff for i in range(18)))"],
  ];
}

// scapy lives in Debian's python (python3-scapy, scripts/system-deps.sh), not in any pyenv shim.
const PY = ["/usr/bin/python3", "python3"].find((p) => spawnSync(p, ["-c", "import scapy"], { stdio: "ignore" }).status === 0);
// strict: without them a run as root or in CI fails naming the tool (test/support/tools.ts)
const SCAPY = requireTool("scapy", PY !== undefined, "the scapy cross-check of every frame kind");
const TSHARK = requireTool("tshark", tsharkAvailable, "the tshark cross-checks of the encoder");

if (SCAPY) test("scapy builds byte-identical frames for every kind", () => {
  const cases = crossCases();
  const script = [
    "import sys, logging",
    "logging.getLogger('scapy.runtime').setLevel(logging.ERROR)",
    "from scapy.all import *",
    "from scapy.contrib.geneve import GENEVE, GeneveOptions",
    "for line in sys.stdin.read().split('\\n'):",
    "    if line: print(bytes(eval(line)).hex())",
  ].join("\n");
  const r = spawnSync(PY!, ["-c", script], { input: cases.map((c) => c[2]).join("\n"), encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.is(lines.length, cases.length);
  cases.forEach(([name, ours], i) => eqHex(ours, E.fromHex(lines[i]), `${name} (ours vs scapy)`));
});

if (TSHARK) test("tshark dissects every kind cleanly, with the fields we put in", () => {
  const cases = crossCases();
  const r = dissectFrames(cases.map((c) => c[1]), {
    fields: ["vxlan.vni", "geneve.vni", "geneve.option.class", "gre.key", "arp.opcode", "icmpv6.type", "icmpv6.nd.na.flag.s",
             "vlan.id", "udp.checksum.status", "ip.checksum.status", "icmpv6.checksum.status"],
  });
  assertClean(r, "encoder frames");
  const st = r.frames.map(stack);
  assert.is(st[0], "eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:udp:data");
  assert.is(st[1], "eth:ethertype:ipv6:udp:vxlan:eth:ethertype:ip:udp:data");
  assert.is(st[2], "eth:ethertype:ip:udp:geneve:eth:ethertype:ip:udp:data");
  assert.is(st[3], "eth:ethertype:ipv6:udp:geneve:eth:ethertype:ip:udp:data");
  assert.is(st[4], "eth:ethertype:ip:gre:eth:ethertype:ip:udp:data");
  assert.is(st[5], "eth:ethertype:ipv6:gre:eth:ethertype:ip:udp:data");
  assert.is(st[6], "eth:ethertype:vlan:ethertype:arp");
  assert.is(st[8], "eth:ethertype:vlan:ethertype:ipv6:icmpv6");
  assert.equal(r.frames[0].fields["vxlan.vni"], ["5000"]);
  assert.equal(r.frames[1].fields["vxlan.vni"], [String(0xabcdef)]);
  // Wireshark checksum status: 0 Bad, 1 Good, 2 Unverified, 3 Not present.
  assert.equal(r.frames[1].fields["udp.checksum.status"].slice(0, 1), ["1"], "outer IPv6 UDP checksum verified good");
  assert.equal(r.frames[0].fields["ip.checksum.status"].slice(0, 1), ["1"], "outer IPv4 header checksum good");
  assert.equal(r.frames[3].fields["geneve.option.class"], ["0x0102"]);
  assert.equal(r.frames[4].fields["gre.key"], ["0x" + ((7000 << 8) | 0x42).toString(16).padStart(8, "0")]);
  assert.equal(r.frames[7].fields["arp.opcode"], ["2"]);
  assert.equal(r.frames[9].fields["icmpv6.type"], ["136"]);
  assert.equal(r.frames[9].fields["icmpv6.checksum.status"], ["1"]);
  assert.equal(r.frames[6].fields["vlan.id"], ["10"]);
});

if (TSHARK) test("the tshark helper catches what it must: bad checksums and truncation are reported", () => {
  const good = E.overlayFrame(U4, { kind: "vxlan", vni: 5000, entropy: 50000 }, INNER4);
  const badIp = good.slice();
  badIp[24] ^= 0xff; // IPv4 header checksum
  const good6 = E.overlayFrame(U6, { kind: "geneve", vni: 5000, entropy: 50000 }, INNER4);
  const badUdp6 = good6.slice();
  badUdp6[60] ^= 0x01; // UDP checksum (14 + 40 + 6)
  const truncated = good.slice(0, 60);
  const na = E.ethernet({ dst: "02:00:5e:00:00:01", src: "02:00:5e:00:00:02", type: E.ETH_IPV6,
    payload: E.neighborAdvertisement({ src: "2001:db8:100::2", dst: "2001:db8:100::1", target: "2001:db8:100::2", solicited: true }) });
  na[14 + 40 + 2] ^= 0x10; // ICMPv6 checksum
  const r = dissectFrames([good, badIp, badUdp6, truncated, na]);
  assert.equal(problems(r.frames[0]), []);
  assert.match(problems(r.frames[1]).join(";"), /Bad checksum/);
  assert.match(problems(r.frames[2]).join(";"), /Bad checksum/);
  assert.ok(r.frames[3].malformed, "truncated frame flagged malformed");
  assert.match(problems(r.frames[4]).join(";"), /[Bb]ad checksum|Checksum/);
  assert.throws(() => assertClean(r), /tshark frame 2/);
});

test.run();
