// ICMPv6 neighbour discovery (RFC 4861 §4.3, §4.4), offsets from the ICMPv6 header.
//  type(1) code(1) checksum(2) | NS: reserved(4) | NA: R S O flags + reserved(4)
//  target address(16) | options: type(1) length(1, in 8-byte units) link-layer address(6)
export const ICMP6_TYPE: u32 = 0;
export const ICMP6_CODE: u32 = 1;
export const ICMP6_CSUM: u32 = 2;
export const ICMP6_FLAGS: u32 = 4;
export const ND_TARGET: u32 = 8;
export const ND_OPTS: u32 = 24;
export const ND_NS: u32 = 135;
export const ND_NA: u32 = 136;
export const ND_OPT_TARGET_LLADDR: u32 = 2;
export const NA_FLAG_SOLICITED: u32 = 0x40000000;
export const NA_FLAG_OVERRIDE: u32 = 0x20000000;
/** An NA with one target link-layer option: 24 + 8 bytes. */
export const NA_LEN: u32 = 32;
/** RFC 4861 §4.4: the Router flag of a neighbour advertisement. */
export const NA_FLAG_ROUTER: u32 = 0x80000000;
/** RFC 4443 §3.3: Time Exceeded; code 0: hop limit exceeded in transit. */
export const ICMP6_TIME_EXCEEDED: u32 = 3;
/** RFC 4443 §2.4 (c): an error message does not exceed the minimum IPv6 MTU (RFC 8200 §5). */
export const ICMP6_ERROR_MAX: u32 = 1280;
/** RFC 4443 §4.1, §4.2: Echo Request (128) and Echo Reply (129). */
export const ICMP6_ECHO: u32 = 128;
export const ICMP6_ECHO_REPLY: u32 = 129;
