// NVGRE (RFC 7637 §3.2): GRE (RFC 2784/2890) with the Key bit set.
//
//   0                   1                   2                   3
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |0| |1|0|   Reserved0     | Ver |   Protocol Type 0x6558        |
//  |        Virtual Subnet ID (VSID)               |    FlowID     |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// C (checksum) and S (sequence) must be 0, K must be 1: the first two
// bytes are exactly 0x20 0x00. VSIDs 0-0xFFF and 0xFFFFFF are reserved.

export const NVGRE_FLAGS: u32 = 0;
export const NVGRE_PROTO: u32 = 2;
export const NVGRE_VSID: u32 = 4;
export const NVGRE_FLOWID: u32 = 7;
export const NVGRE_HLEN: u32 = 8;
export const NVGRE_FLAGS_K: u32 = 0x2000;
export const NVGRE_VSID_RESERVED_MAX: u32 = 0xfff;
export const NVGRE_VSID_RESERVED_ALL: u32 = 0xffffff;
