// The forwarding tables and the keys they use.
//   macTab:    (VN, MAC) -> local VNIC (port, tag, active) or remote (tunnel)
//   ipTab:     (VN, IP)  -> MAC            (port security, ARP/ND suppression)
//   vniTab:    (encap, VNI/VSID) -> VN     (decapsulation)
//   remoteTab: underlay IP -> remote NVE   (the flood-list source check)
//   prefixes:  (VN, IP prefix) -> MAC      (a VNIC that terminates a range, PROTOCOL.md §2 `ip`)
import { Table64, t64FindIn } from "./hash64";
import { TableIp, tipFindIn, tipFindInFrom, tipHome } from "./haship";
import { fibHome } from "./hash64";
import { alloc, vnPtr, VN_SALT } from "../state";
import { mix64 } from "../util";
import { MAX_BATCH } from "../abi";

export const macTab = new Table64();
export const ipTab = new TableIp();
export const vniTab = new Table64();
export const remoteTab = new TableIp();

// MAC value: kind in bits 31-30.
export const MK_LOCAL: u32 = 0x40000000;
export const MK_REMOTE: u32 = 0x80000000;
export const MK_KIND: u32 = 0xc0000000;
export const ML_ACTIVE: u32 = 0x20000000;
export const ML_PORT_SHIFT: u32 = 16;
export const ML_PORT_MASK: u32 = 0x3f;
export const ML_TAG_MASK: u32 = 0xfff;
export const MR_TUN_MASK: u32 = 0x00ffffff;

export const IP6_TAG: u32 = 0x80000000;

// MAC key: (VN index + 1) << 48 | the MAC's 6 bytes as they lie in the frame,
// read little-endian (first octet least significant). Wasm has no byte-swap
// instruction (bswap is 4-6 ALU ops, bench/README.md finding 6), so the
// per-frame lookups use the raw load; the control path converts once.

/** The 6 MAC bytes at p as a raw little-endian integer (reads 8 bytes: the caller ensures p + 8 is in the frame). */
@inline export function macRaw(p: usize): u64 { return load<u64>(p) & 0xffffffffffff; }
/** The raw form of a MAC held as an integer with its first octet most significant. */
@inline export function macRawOf(m: u64): u64 { return bswap<u64>(m) >> 16; }
/**
 * macRawOf for the per-frame paths, as one byte shuffle (pshufb) where
 * bswap<u64> is a dozen shifts, masks and rotates in wasm (finding 6; issue
 * 18: port security's and the ARP reply's bound MAC). Bytes 6 and 7 stay in
 * place, so for any m: macWire(m) == macRaw(p) exactly when m == ldMac(p)
 * (an m of more than 48 bits, e.g. a lookup's u64.MAX_VALUE, equals no raw
 * MAC); below 2^48 it is macRawOf(m).
 */
@inline export function macWire(m: u64): u64 {
  const v = i64x2.splat(m);
  return i64x2.extract_lane(i8x16.shuffle(v, v, 5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 0);
}

@inline export function macKey(vn: u32, mac: u64): u64 {
  return (<u64>(vn + 1) << 48) | mac;
}

/**
 * Each table's base and mask as plain globals, for the per-frame lookups: a
 * field of a Table64/TableIp lives in linear memory, and V8 loads it again
 * after every store the pipeline makes (a store might alias it), so each
 * lookup began with two dependent loads more than the C's (bench/README.md
 * finding 15). Set once, after the tables are laid out (tableGlobalsInit).
 */
export let macBase: usize = 0;
export let macMask: u32 = 0;
export let macShift: u64 = 0;
export let ipBase: usize = 0;
export let ipMask: u32 = 0;
export let vniBase: usize = 0;
export let vniMask: u32 = 0;
export let vniShift: u64 = 0;
export let remoteBase: usize = 0;
export let remoteMask: u32 = 0;
export function tableGlobalsInit(): void {
  macBase = macTab.base; macMask = macTab.mask; macShift = <u64>macTab.shift;
  ipBase = ipTab.base; ipMask = ipTab.mask;
  vniBase = vniTab.base; vniMask = vniTab.mask; vniShift = <u64>vniTab.shift;
  remoteBase = remoteTab.base; remoteMask = remoteTab.mask;
}

/** The home slot of a MAC key (t64Home on macTab). */
@inline export function macHome(key: u64): u32 { return fibHome(key, macShift); }

/** t64FindFrom on macTab: the slot holding `key`, or 0, probing from home slot `i`. */
@inline export function macFindFrom(key: u64, i: u32): usize { return t64FindIn(macBase, macMask, key, i); }

/** The address of the IP-table slot an IPv4 lookup of the 4 bytes at p in vn starts at (ip4Lookup's home). */
@inline export function ip4HomeSlot(vn: u32, p: usize): usize {
  return ipBase + (<usize>ip4Home(vn, p) << 5);
}

/**
 * The IP-table home of the IPv4 address at p in vn (its slot: ipBase + home
 * * 32): tipHome(ipMask, vn + 1, a0, 0) = mix64(a0 ^ mix64(vn + 1)) & mask,
 * its inner mix64 read from the VN's entry (VN_SALT, control.ts setVn): one
 * mix64 per lookup where two were (issue 18, session 10). For a live VN only
 * (the per-frame paths ask for the VNs whose profile checks IP bindings).
 */
@inline export function ip4Home(vn: u32, p: usize): u32 {
  return <u32>mix64(<u64>load<u32>(p) ^ load<u64>(vnPtr(vn), VN_SALT)) & ipMask;
}

/** t64Find on vniTab: the slot of `key` (vniKey/vniKeyAt), or 0. */
@inline export function vniFind(key: u64): usize { return t64FindIn(vniBase, vniMask, key, fibHome(key, vniShift)); }

/** tipFind on remoteTab: the slot of the remote NVE at (family tag, address), or 0. */
@inline export function remoteFind(tag: u32, a0: u64, a1: u64): usize { return tipFindIn(remoteBase, remoteMask, tag, a0, a1); }


/**
 * Each batch frame's record (FR_SIZE bytes), written by the prefetch pass
 * (pipeline/prefetch.ts) so the main pass parses and hashes nothing again:
 *   +0  the source MAC's home slot (an underlay frame: its VN)
 *   +4  the destination MAC's home slot (an underlay frame: the inner one's;
 *       a broadcast ARP request under port security: its sender IP's IP-table home)
 *   +8  FR_VN: an access frame with the fast path's 802.1Q shape: its VN + 1 (0: none)
 *   +12 FR_IP: the IP-table home of the IPv4 source (port security) or the ARP target
 *   +16 FR_P: the frame's address (slotBase + i * SLOT_SIZE + off), read by
 *       the fast paths only when +8 (access) or +0 (underlay) says the pass
 *       parsed the frame. Loaded rather than recomputed: V8's instruction
 *       selection folded each `p + k` of the fast paths into its own `lea`
 *       of i, off and slotBase, so those three lived on the stack and the
 *       address was rebuilt at 15 places (bench/README.md, fifth round).
 * NO_HOME where none was computed.
 */
export let macHomes: usize = 0;
export const NO_HOME: u32 = 0xffffffff;
export const FR_SIZE: u32 = 32;
export const FR_VN: u32 = 8;
export const FR_IP: u32 = 12;
export const FR_P: u32 = 16;
/** Frame i's record. */
@inline export function frameRec(i: u32): usize { return macHomes + <usize>i * FR_SIZE; }
/** The prefetch pass's list of table slot addresses to load (up to 4 per frame: 2 MAC, 2 IP). */
export let warmList: usize = 0;
/** The access frames whose IP-table slots the prefetch pass lists too (a u32 each). */
export let ipWarmList: usize = 0;
export function macHomesInit(): void {
  macHomes = alloc(<usize>MAX_BATCH * FR_SIZE);
  warmList = alloc(<usize>MAX_BATCH * 16);
  ipWarmList = alloc(<usize>MAX_BATCH * 4);
}

/**
 * The home of an underlay frame's inner destination that the prefetch pass
 * computed (pipeline/prefetch.ts prefetchBatch keeps the frame's VN in the source's
 * place), or NO_HOME when it computed none for VN `vn`.
 */
@inline export function underlayHome(hh: usize, vn: u32): u32 {
  return load<u32>(hh) == vn ? load<u32>(hh, 4) : NO_HOME;
}

/** The MAC entry's value (0 when (vn, mac) is unknown), the probe starting at the home slot the prefetch pass computed (or NO_HOME: none). */
@inline export function macLookupHome(vn: u32, mac: u64, home: u32): u32 {
  const key = macKey(vn, mac);
  const s = macFindFrom(key, home != NO_HOME ? home : macHome(key));
  return s == 0 ? 0 : load<u32>(s, 8);
}

/**
 * macLookupHome for a home the prefetch pass always computes (the fast
 * paths' lookups: a frame with a fast-path VN has both homes in its record):
 * no NO_HOME test and no hashing code on the path (issue 18).
 */
@inline export function macLookupAt(vn: u32, mac: u64, home: u32): u32 {
  const s = macFindFrom(macKey(vn, mac), home);
  return s == 0 ? 0 : load<u32>(s, 8);
}

/**
 * vniTab's key: the encapsulation and the VNI/VSID's three bytes as they lie
 * on the wire, read little-endian, so a frame's key needs no byte swap
 * (bench/README.md finding 6). vniKey from a VNI number, vniKeyAt from the
 * three bytes at p (the 8-byte VXLAN/Geneve/NVGRE header's bytes 4..6).
 */
@inline export function vniKey(enc: u32, vni: u32): u64 { return (<u64>enc << 24) | <u64>(bswap<u32>(vni) >> 8); }
@inline export function vniKeyAt(enc: u32, p: usize): u64 { return (<u64>enc << 24) | <u64>(load<u32>(p) & 0xffffff); }

/** ip4Lookup probing from home slot `home` (ip4Home of the same vn and address), or computing it when NO_HOME. */
@inline export function ip4LookupHome(vn: u32, p: usize, home: u32): u64 {
  const a0 = <u64>load<u32>(p);
  const s = tipFindInFrom(ipBase, ipMask, vn + 1, a0, 0, home != NO_HOME ? home : tipHome(ipMask, vn + 1, a0, 0));
  if (s != 0) return load<u64>(s, 24);
  return prefixCount == 0 ? u64.MAX_VALUE : prefixLookup(vn + 1, p, 4);
}

/**
 * ip4LookupHome for a home the prefetch pass is known to have computed
 * (never NO_HOME): port security's source check on the IPv4 fast path
 * (pipeline/prefetch.ts warmIpSlots computes it for every such frame). The
 * fallback's hashing (two mix64) and its test leave the fast path, as the
 * MAC lookups' did (issue 18, sixth round).
 */
@inline export function ip4LookupAt(vn: u32, p: usize, home: u32): u64 {
  const s = tipFindInFrom(ipBase, ipMask, vn + 1, <u64>load<u32>(p), 0, home);
  if (s != 0) return load<u64>(s, 24);
  return prefixCount == 0 ? u64.MAX_VALUE : prefixLookup(vn + 1, p, 4);
}

/** MAC bound to the IPv4 address at p (network order) in vn, or u64.MAX_VALUE. */
@inline export function ip4Lookup(vn: u32, p: usize): u64 {
  const s = tipFindIn(ipBase, ipMask, vn + 1, <u64>load<u32>(p), 0);
  if (s != 0) return load<u64>(s, 24);
  return prefixCount == 0 ? u64.MAX_VALUE : prefixLookup(vn + 1, p, 4);
}

@inline export function ip6Lookup(vn: u32, p: usize): u64 {
  const s = tipFindIn(ipBase, ipMask, (vn + 1) | IP6_TAG, load<u64>(p), load<u64>(p, 8));
  if (s != 0) return load<u64>(s, 24);
  return prefixCount == 0 ? u64.MAX_VALUE : prefixLookup((vn + 1) | IP6_TAG, p, 16);
}

// Prefix bindings: few (load balancers' VIP ranges), scanned only after an
// exact lookup missed. Entry: u32 tag | u32 prefix length | 16-byte address | u64 MAC.
export const MAX_PREFIXES: u32 = 1024;
export let prefixBase: usize = 0;
export let prefixCount: u32 = 0;
export function prefixInit(): void { prefixBase = alloc(<usize>MAX_PREFIXES * 32); }
export function setPrefixCount(n: u32): void { prefixCount = n; }

/**
 * The MAC of the longest prefix of `tag`'s family and VN that holds the
 * address at p (alen bytes), or u64.MAX_VALUE: longest-prefix match
 * (PROTOCOL.md §2 Authority, "lookups take the longest prefix"), whatever the
 * order the host wrote the entries in. Every entry is looked at (they are few
 * and this runs only after the exact lookup missed); no allocation.
 */
function prefixLookup(tag: u32, p: usize, alen: u32): u64 {
  let best: i32 = -1;
  let mac: u64 = u64.MAX_VALUE;
  for (let i: u32 = 0; i < prefixCount; i++) {
    const e = prefixBase + (<usize>i << 5);
    if (load<u32>(e) != tag) continue;
    const plen = load<u32>(e, 4);
    if (<i32>plen <= best) continue; // cannot beat the match already found
    let ok = true;
    let bits = plen;
    for (let b: u32 = 0; b < alen && bits > 0; b++) {
      const m: u32 = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
      if (((<u32>load<u8>(p + b) ^ <u32>load<u8>(e + 8 + b)) & m) != 0) { ok = false; break; }
      bits = bits >= 8 ? bits - 8 : 0;
    }
    if (ok) {
      best = <i32>plen;
      mac = load<u64>(e, 24);
    }
  }
  return mac;
}
