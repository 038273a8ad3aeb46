// Geneve (RFC 8926 §3.4).
//
//   0                   1                   2                   3
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//  |        Virtual Network Identifier (VNI)       |    Reserved   |
//  |                    Variable-Length Options                    |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// Option (§3.5): class (16) | type (8, high bit = critical) | R R R | length (5, in 4-byte words).

export const GENEVE_VER_OPTLEN: u32 = 0;
export const GENEVE_FLAGS: u32 = 1;
export const GENEVE_PROTO: u32 = 2;
export const GENEVE_VNI: u32 = 4;
export const GENEVE_HLEN: u32 = 8;
export const GENEVE_FLAG_O: u32 = 0x80;
export const GENEVE_FLAG_C: u32 = 0x40;
export const GENEVE_OPT_CRITICAL: u32 = 0x80;
export const GENEVE_PORT: u32 = 6081;
