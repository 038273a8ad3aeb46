// UDP (RFC 768): src port 0, dst port 2, length 4, checksum 6.
// The checksum covers a pseudo-header (RFC 768 for IPv4, RFC 8200 §8.1 for IPv6).
export const UDP_SPORT: u32 = 0;
export const UDP_DPORT: u32 = 2;
export const UDP_LEN: u32 = 4;
export const UDP_CSUM: u32 = 6;
export const UDP_HLEN: u32 = 8;

/** Entropy source ports (RFC 7348 §5): the dynamic range 49152-65535. */
export const SPORT_BASE: u32 = 49152;
export const SPORT_MASK: u32 = 0x3fff;
