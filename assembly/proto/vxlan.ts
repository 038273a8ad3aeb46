// VXLAN (RFC 7348 §5).
//
//   0                   1                   2                   3
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |R|R|R|R|I|R|R|R|            Reserved                           |
//  |                VXLAN Network Identifier (VNI) |   Reserved    |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// The I flag must be 1; the other bits are sent as 0 and ignored on receipt.

export const VXLAN_FLAGS: u32 = 0;
export const VXLAN_VNI: u32 = 4;
export const VXLAN_HLEN: u32 = 8;
export const VXLAN_FLAG_I: u32 = 0x08;
export const VXLAN_PORT: u32 = 4789;
