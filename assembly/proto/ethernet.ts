// Ethernet II and IEEE 802.1Q (STANDARDS.md "Wire formats").
//
//   0                   6                  12      14
//  +-------------------+------------------+-------+---------
//  | destination MAC   | source MAC       | type  | payload
//  +-------------------+------------------+-------+---------
//  802.1Q: type = TPID 0x8100 at 12, TCI at 14 (PCP 15-13 | DEI 12 | VID 11-0),
//  the encapsulated EtherType at 16. 802.1ad S-tag: TPID 0x88a8 (or the
//  pre-standard 0x9100) followed by a C-tag.

export const ETH_DST: u32 = 0;
export const ETH_SRC: u32 = 6;
export const ETH_TYPE: u32 = 12;
export const ETH_HLEN: u32 = 14;

export const DOT1Q_TCI: u32 = 14;
export const DOT1Q_TYPE: u32 = 16;
export const DOT1Q_HLEN: u32 = 18;

export const ETHERTYPE_IPV4: u32 = 0x0800;
export const ETHERTYPE_ARP: u32 = 0x0806;
export const ETHERTYPE_IPV6: u32 = 0x86dd;
export const ETHERTYPE_VLAN: u32 = 0x8100;
export const ETHERTYPE_QINQ: u32 = 0x88a8;
export const ETHERTYPE_QINQ_OLD: u32 = 0x9100;
export const ETHERTYPE_TEB: u32 = 0x6558; // Transparent Ethernet Bridging (Geneve, NVGRE)

export const VID_MASK: u32 = 0x0fff;
export const PCP_SHIFT: u32 = 13;

/** The smallest frame on the wire without FCS: 60 bytes (64 with an 802.1Q tag). */
export const MIN_FRAME_TAGGED: u32 = 64;

// Shape helpers, shared by the prefetch pass (pipeline/prefetch.ts), the fast
// paths (pipeline/fast.ts) and the full path (pipeline/access.ts), so the
// 802.1Q parse is written once (issue 16). Wire fields are loaded raw and
// compared with byte-swapped constants (util.ts raw16: no byte swap per
// frame); one `if` per check, since Binaryen turns `a || b` into `a | b`,
// setcc chains in V8 (bench/README.md finding 16).

/** The raw TPID at 12 is an 802.1Q C-tag's (0x8100). The caller ensures len >= DOT1Q_HLEN. */
@inline export function dot1qTagged(p: usize): bool {
  return <u32>load<u16>(p + ETH_TYPE) == <u32>bswap<u16>(<u16>ETHERTYPE_VLAN);
}

/** A raw EtherType that is itself a tag (C-tag, S-tag or pre-standard S-tag): after a C-tag, the frame is double-tagged. */
@inline export function isTagTypeRaw(et: u32): bool {
  if (et == <u32>bswap<u16>(<u16>ETHERTYPE_VLAN)) return true;
  if (et == <u32>bswap<u16>(<u16>ETHERTYPE_QINQ)) return true;
  return et == <u32>bswap<u16>(<u16>ETHERTYPE_QINQ_OLD);
}

/** The TCI of an 802.1Q-tagged frame, in host order (PCP 15-13 | DEI 12 | VID 11-0). */
@inline export function dot1qTci(p: usize): u32 { return <u32>bswap<u16>(load<u16>(p + DOT1Q_TCI)); }

/** The raw EtherType after the tag. */
@inline export function dot1qTypeRaw(p: usize): u32 { return <u32>load<u16>(p + DOT1Q_TYPE); }
