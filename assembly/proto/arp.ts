// ARP for IPv4 over Ethernet (RFC 826), offsets from the start of the ARP packet.
//  htype(2)=1 ptype(2)=0x0800 hlen(1)=6 plen(1)=4 op(2) sha(6) spa(4) tha(6) tpa(4)
export const ARP_HTYPE: u32 = 0;
export const ARP_PTYPE: u32 = 2;
export const ARP_HLEN_PLEN: u32 = 4;
export const ARP_OP: u32 = 6;
export const ARP_SHA: u32 = 8;
export const ARP_SPA: u32 = 14;
export const ARP_THA: u32 = 18;
export const ARP_TPA: u32 = 24;
export const ARP_LEN: u32 = 28;
export const ARP_OP_REQUEST: u32 = 1;
export const ARP_OP_REPLY: u32 = 2;
