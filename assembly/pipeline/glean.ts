// Gleaning (PROTOCOL.md §5 `learn: "glean"`, seed §4.2 method 1): on an
// access port of such a VN, a source MAC the NVE does not know, and a source
// IP (ARP, IPv4, ND) a gleaned MAC is not bound to yet, become bindings of
// that port's VAP. The data plane only reports them, in the learn area below
// (one process() call's worth, drained by the host once per batch: no host
// call per frame); the host (host/control/glean.ts) decides, stores,
// programs every worker and announces them to the IMA like signalled ones.
//
// What the data plane decides itself, per frame:
// - a source signalled for a VNIC behind another port is never learned
//   over: `spoofed-mac`, with or without port security;
// - an unknown source on a VAP that holds maxLearnedPerPort gleaned
//   bindings (the host sets the VAP full, setLearnFull): `learn-limit`;
// - a gleaned source passes port security (it is associated, by gleaning);
//   a source IP bound to a signalled VNIC's MAC is still `spoofed-ip`.
// - a gleaned MAC seen on its port is reported again (LR_SEEN) once per
//   quarter of learnAgeMs, so the host can age it without a call per frame;
//   the time of the last report is kept in the MAC entry's spare word.
//
// Learn record (LEARN_REC bytes): u32 VN index, u16 port, u8 kind (LR_*),
// u8 0, u64 the MAC (first octet most significant), 16 bytes the IP (IPv4
// in the first 4). At most LEARN_MAX per batch; the rest is counted in
// learnLost (the frames still pass: a later frame reports it again).
import { alloc, vnPtr, MAX_VNS, MAX_PORTS, VN_FEAT, FEAT_GLEAN } from "../state";
import { macRaw, macKey, macFindFrom, macHome, ip4Lookup, ip6Lookup, MK_KIND, MK_LOCAL, MK_REMOTE, ML_PORT_SHIFT, ML_PORT_MASK,
         NO_HOME, macRawOf } from "../tables/index";
import { ldMac } from "../util";
import { ETHERTYPE_IPV4, ETHERTYPE_ARP, ETHERTYPE_IPV6 } from "../proto/ethernet";
import { ARP_SHA, ARP_SPA, ARP_LEN } from "../proto/arp";
import { IPPROTO_ICMPV6 } from "../proto/ipv4";
import { ND_NS, ND_NA } from "../proto/icmp6";
import { nowMs } from "./qos";
import { t64Put } from "../tables/hash64";
import { macTab, ML_ACTIVE } from "../tables/index";
import * as D from "../drops";

/** MAC value bit of a gleaned binding (tables/index.ts leaves bits 22..28 free). */
export const ML_GLEAN: u32 = 0x10000000;
export const LEARN_MAX: u32 = 64;
export const LEARN_REC: u32 = 32;
export const LR_MAC: u32 = 1;
export const LR_IP4: u32 = 2;
export const LR_IP6: u32 = 3;
export const LR_SEEN: u32 = 4;
/** glean()'s result for a frame that goes on with port security satisfied. */
export const GLEAN_PASS: u32 = 0xfffffffe;
/** ... for a frame that goes on through the usual checks (a signalled source on its own port). */
export const GLEAN_ON: u32 = 0xffffffff;

let area: usize = 0;
let full: usize = 0; // MAX_VNS x MAX_PORTS bytes: 1 = the VAP holds its cap of gleaned bindings
let refreshMs: usize = 0; // MAX_VNS x f64: how often a gleaned MAC on its port is reported again
export let learnCount: u32 = 0;
export let learnLost: u64 = 0;

export function gleanInit(): void {
  area = alloc(<usize>LEARN_MAX * LEARN_REC);
  full = alloc(<usize>MAX_VNS * MAX_PORTS);
  refreshMs = alloc(<usize>MAX_VNS * 8);
}
export function learnReset(): void { learnCount = 0; }
export function learnPtr(): usize { return area; }

/** learn: glean on (ageMs: learnAgeMs) or off for VN vn. */
export function setGlean(vn: u32, on: bool, ageMs: f64): i32 {
  if (vn >= MAX_VNS) return 2;
  store<f64>(refreshMs + (<usize>vn << 3), ageMs / 4);
  const e = vnPtr(vn);
  const f = <u32>load<u8>(e, VN_FEAT) & ~FEAT_GLEAN;
  store<u8>(e, <u8>(on ? f | FEAT_GLEAN : f), VN_FEAT);
  return 0;
}

/** The (port, VN) VAP holds maxLearnedPerPort gleaned bindings (on) or has room again. */
export function setLearnFull(vn: u32, port: u32, on: bool): i32 {
  if (vn >= MAX_VNS || port >= MAX_PORTS) return 2;
  store<u8>(full + <usize>vn * MAX_PORTS + port, on ? 1 : 0);
  return 0;
}

function report(vn: u32, port: u32, kind: u32, mac: u64, ip: usize, ipLen: u32): void {
  if (learnCount >= LEARN_MAX) { learnLost++; return; }
  const r = area + <usize>learnCount * LEARN_REC;
  // the same report as the last one (a burst from one new source): once per batch is enough
  if (learnCount > 0) {
    const q = r - LEARN_REC;
    if (load<u32>(q) == vn && <u32>load<u16>(q, 4) == port && <u32>load<u8>(q, 6) == kind && load<u64>(q, 8) == mac &&
        (ipLen == 0 || memory.compare(q + 16, ip, ipLen) == 0)) return;
  }
  store<u32>(r, vn);
  store<u16>(r, <u16>port, 4);
  store<u8>(r, <u8>kind, 6);
  store<u8>(r, 0, 7);
  store<u64>(r, mac, 8);
  store<u64>(r, 0, 16);
  store<u64>(r, 0, 24);
  if (ipLen != 0) memory.copy(r + 16, ip, ipLen);
  learnCount++;
}

/**
 * A frame from an access port of a gleaning VN (pipeline/access.ts), after
 * the VN is known and before port security: GLEAN_PASS (learned or being
 * learned: port security is satisfied), GLEAN_ON (a signalled source on its
 * own port: the usual checks follow), or a drop reason. `sv`: the source's
 * MAC entry value (0 unknown); `home`: its MAC key's home slot from the
 * prefetch pass (or NO_HOME).
 */
export function glean(vn: u32, port: u32, p: usize, sv: u32, etype: u32, l3: usize, l3len: u32, home: u32): u32 {
  const src = ldMac(p + 6);
  const kind = sv & MK_KIND;
  if (kind == MK_LOCAL && (sv & ML_GLEAN) == 0) {
    // signalled for a VNIC: behind this port it is that VNIC's own traffic;
    // behind another, never learned over (PROTOCOL.md §5)
    return ((sv >> ML_PORT_SHIFT) & ML_PORT_MASK) == port ? GLEAN_ON : D.D_SPOOFED_MAC;
  }
  // a MAC held behind another NVE may be a VNIC signalled there: this NVE
  // cannot tell, so it is not learned over either (a gleaned host that moves
  // between NVEs is learned again once the other NVE has aged it out)
  if (kind == MK_REMOTE) return D.D_SPOOFED_MAC;
  if (kind == 0 && load<u8>(full + <usize>vn * MAX_PORTS + port) != 0) return D.D_LEARN_LIMIT;
  const moved = kind == MK_LOCAL && ((sv >> ML_PORT_SHIFT) & ML_PORT_MASK) != port;
  if (kind == 0 || moved) report(vn, port, LR_MAC, src, 0, 0);
  else {
    // a gleaned MAC on its own port: seen again (for its age), at most once per quarter age
    const key = macKey(vn, macRaw(p + 6));
    const s = macFindFrom(key, home != NO_HOME ? home : macHome(key));
    if (s != 0) {
      const now = nowMs();
      const sec = <u32>(now / 1000);
      const every = load<f64>(refreshMs + (<usize>vn << 3));
      if (<f64>(sec - load<u32>(s, 12)) * 1000 >= every) {
        store<u32>(s, sec, 12);
        report(vn, port, LR_SEEN, src, 0, 0);
      }
    }
  }
  return gleanIp(vn, port, src, etype, l3, l3len);
}

/**
 * The source IP a gleaning source claims (ARP sender, IPv4 source, ND
 * source): reported when not bound to it yet; `spoofed-ip` when bound to a
 * MAC signalled for a VNIC (a gleaned owner is a move, the host decides).
 */
function gleanIp(vn: u32, port: u32, src: u64, etype: u32, l3: usize, l3len: u32): u32 {
  let ip: usize = 0;
  let is6 = false;
  if (etype == ETHERTYPE_ARP) {
    if (l3len < ARP_LEN) return GLEAN_PASS;
    if (ldMac(l3 + ARP_SHA) != src) return D.D_SPOOFED_MAC; // the sender hardware address is the source's
    if (load<u32>(l3 + ARP_SPA) != 0) ip = l3 + ARP_SPA; // 0.0.0.0: an RFC 5227 probe claims nothing
  } else if (etype == ETHERTYPE_IPV4) {
    if (l3len >= 20 && load<u32>(l3 + 12) != 0) ip = l3 + 12;
  } else if (etype == ETHERTYPE_IPV6) {
    // ND only (RFC 4861 NS/NA, hop limit 255): the address a node uses on the link
    if (l3len >= 48 && <u32>load<u8>(l3 + 6) == IPPROTO_ICMPV6 && <u32>load<u8>(l3 + 7) == 255) {
      const t = <u32>load<u8>(l3 + 40);
      if ((t == ND_NS || t == ND_NA) && !(load<u64>(l3 + 8) == 0 && load<u64>(l3 + 16) == 0)) { ip = l3 + 8; is6 = true; }
    }
  }
  if (ip == 0) return GLEAN_PASS;
  const owner = is6 ? ip6Lookup(vn, ip) : ip4Lookup(vn, ip);
  if (owner == src) return GLEAN_PASS;
  if (owner != u64.MAX_VALUE) {
    // bound to another MAC: signalled (a local VNIC without the glean bit, or remote) is not ours to take
    const k = macKey(vn, macRawOf(owner));
    const s = macFindFrom(k, macHome(k));
    const ov = s == 0 ? 0 : load<u32>(s, 8);
    if ((ov & MK_KIND) != MK_LOCAL || (ov & ML_GLEAN) == 0) return D.D_SPOOFED_IP;
  }
  report(vn, port, is6 ? LR_IP6 : LR_IP4, src, ip, is6 ? 16 : 4);
  return GLEAN_PASS;
}

/** A gleaned binding of the (port, VN) VAP: local, active, the VAP's tag, marked ML_GLEAN (host: mac.local with glean). */
export function setMacGleaned(vn: u32, hi: u32, lo: u32, port: u32, tag: u32): i32 {
  if (vn >= MAX_VNS || port >= MAX_PORTS || tag > 4094) return 2;
  const m = (<u64>(hi & 0xffff) << 32) | <u64>lo;
  // seen now: the first report of it again is a quarter age away
  return t64Put(macTab, macKey(vn, macRawOf(m)), MK_LOCAL | ML_ACTIVE | ML_GLEAN | (port << ML_PORT_SHIFT) | tag, <u32>(nowMs() / 1000)) ? 0 : 1;
}

