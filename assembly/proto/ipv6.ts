// IPv6 (RFC 8200) fixed header.
//
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |Version| Traffic Class |           Flow Label                  |
//  |         Payload Length        |  Next Header  |   Hop Limit   |
//  |                    Source Address (16 bytes)                  |
//  |                 Destination Address (16 bytes)                |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

export const IP6_VTCFL: u32 = 0;
export const IP6_PLEN: u32 = 4;
export const IP6_NXT: u32 = 6;
export const IP6_HLIM: u32 = 7;
export const IP6_SRC: u32 = 8;
export const IP6_DST: u32 = 24;
export const IP6_HLEN: u32 = 40;

export const IPPROTO_FRAGMENT: u32 = 44;
