// ICMP for IPv4 (RFC 792), the error the routed path sends (pipeline/route.ts).
//
//   0                   1                   2                   3
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//  |     Type      |     Code      |          Checksum             |
//  |                             unused                            |
//  |      Internet Header + 64 bits of Original Data Datagram      |
//  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

export const IPPROTO_ICMP: u32 = 1;
export const ICMP_HLEN: u32 = 8;
/** Time Exceeded; code 0: time to live exceeded in transit. */
export const ICMP_TIME_EXCEEDED: u32 = 11;
/** RFC 792: the quote is the original header and the first 64 bits of its data. */
export const ICMP_QUOTE_DATA: u32 = 8;
/** Echo (8) and Echo Reply (0). */
export const ICMP_ECHO: u32 = 8;
export const ICMP_ECHO_REPLY: u32 = 0;
