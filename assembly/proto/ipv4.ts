// IPv4 (RFC 791) as the outer header of an encapsulated frame.
//
//   0                   1                   2                   3
//   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |Version|  IHL  |   DSCP    |ECN|          Total Length         |
//  |         Identification        |Flags|      Fragment Offset    |
//  |  Time to Live |    Protocol   |         Header Checksum       |
//  |                       Source Address                          |
//  |                    Destination Address                        |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// Offsets are relative to the IP header.

export const IP4_VER_IHL: u32 = 0;
export const IP4_TOS: u32 = 1;
export const IP4_TOTLEN: u32 = 2;
export const IP4_ID: u32 = 4;
export const IP4_FRAG: u32 = 6;
export const IP4_TTL: u32 = 8;
export const IP4_PROTO: u32 = 9;
export const IP4_CSUM: u32 = 10;
export const IP4_SRC: u32 = 12;
export const IP4_DST: u32 = 16;
export const IP4_HLEN: u32 = 20;

export const IP4_DF: u32 = 0x4000;
export const IP4_MF: u32 = 0x2000;
export const IP4_OFFMASK: u32 = 0x1fff;

export const IPPROTO_UDP: u32 = 17;
export const IPPROTO_GRE: u32 = 47;
export const IPPROTO_ICMPV6: u32 = 58;
export const IPPROTO_TCP: u32 = 6;

// Shape helpers (issue 16: the parse written once), for the prefetch pass and
// the fast paths: raw loads against byte-swapped constants.

/** Version 4 with a 20-byte header (no options): the shape the fast paths take. */
@inline export function ip4Plain(ip: usize): bool { return <u32>load<u8>(ip + IP4_VER_IHL) == 0x45; }

/** Neither a later fragment nor one with more to come (MF clear, offset 0; RFC 791). */
@inline export function ip4Whole(ip: usize): bool {
  return (<u32>load<u16>(ip + IP4_FRAG) & <u32>bswap<u16>(<u16>(IP4_MF | IP4_OFFMASK))) == 0;
}
