// Every frame that does not leave is counted under exactly one named reason
// (STYLE.md: "every drop has a named error counter declared in one table").
// The names are exported to the host through dropNames(); the order here is
// the counter index.

export const D_TRUNCATED: u32 = 0;
export const D_UNKNOWN_PORT: u32 = 1;
export const D_UNTAGGED: u32 = 2;
export const D_PRIORITY_TAGGED: u32 = 3;
export const D_DOUBLE_TAGGED: u32 = 4;
export const D_UNKNOWN_VID: u32 = 5;
export const D_SPOOFED_MAC: u32 = 6;
export const D_SPOOFED_IP: u32 = 7;
export const D_VNIC_INACTIVE: u32 = 8;
export const D_MTU_EXCEEDED: u32 = 9;
export const D_SAME_PORT: u32 = 10;
export const D_FLOOD_EMPTY: u32 = 11;
export const D_FRAME_TOO_LONG: u32 = 12;
export const D_NOT_OUR_MAC: u32 = 13;
export const D_NOT_IP: u32 = 14;
export const D_UNDERLAY_TAGGED: u32 = 15;
export const D_BAD_IP_HEADER: u32 = 16;
export const D_BAD_IP_CHECKSUM: u32 = 17;
export const D_NOT_OUR_IP: u32 = 18;
export const D_FRAGMENT: u32 = 19;
export const D_NOT_OVERLAY: u32 = 20;
export const D_BAD_UDP_LENGTH: u32 = 21;
export const D_BAD_UDP_CHECKSUM: u32 = 22;
export const D_VXLAN_FLAGS: u32 = 23;
export const D_GENEVE_VERSION: u32 = 24;
export const D_GENEVE_OAM: u32 = 25;
export const D_GENEVE_PROTOCOL: u32 = 26;
export const D_GENEVE_OPTION_LENGTH: u32 = 27;
export const D_GENEVE_CRITICAL_OPTION: u32 = 28;
export const D_NVGRE_FLAGS: u32 = 29;
export const D_NVGRE_PROTOCOL: u32 = 30;
export const D_NVGRE_RESERVED_VSID: u32 = 31;
export const D_UNKNOWN_VNI: u32 = 32;
export const D_UNKNOWN_VTEP: u32 = 33;
export const D_INNER_TAGGED: u32 = 34;
export const D_SPLIT_HORIZON: u32 = 35;
export const D_DST_INACTIVE: u32 = 36;
export const D_BAD_VNET_HEADER: u32 = 37;
export const D_BAD_GSO_SIZE: u32 = 38;
export const D_GSO_UNSUPPORTED: u32 = 39;
export const D_BAD_ARP: u32 = 40;
export const D_ARP_NOT_FOR_US: u32 = 41;
export const D_BAD_ND: u32 = 42;
export const D_NO_NEXT_HOP: u32 = 43;
export const D_ACL_DENY: u32 = 44;
export const D_POLICED: u32 = 45;
export const D_LEARN_LIMIT: u32 = 46;
export const D_NO_ROUTE: u32 = 47;
export const D_TTL_EXCEEDED: u32 = 48;
export const NUM_DROPS: u32 = 49;

const NAMES =
  "truncated,unknown-port,untagged,priority-tagged,double-tagged,unknown-vid,spoofed-mac,spoofed-ip," +
  "vnic-inactive,mtu-exceeded,same-port,flood-empty,frame-too-long,not-our-mac,not-ip,underlay-tagged," +
  "bad-ip-header,bad-ip-checksum,not-our-ip,fragment,not-overlay,bad-udp-length,bad-udp-checksum," +
  "vxlan-flags,geneve-version,geneve-oam,geneve-protocol,geneve-option-length,geneve-critical-option," +
  "nvgre-flags,nvgre-protocol,nvgre-reserved-vsid,unknown-vni,unknown-vtep,inner-tagged,split-horizon," +
  "dst-inactive,bad-vnet-header,bad-gso-size,gso-unsupported,bad-arp,arp-not-for-us,bad-nd,no-next-hop," +
  "acl-deny,policed,learn-limit,no-route,ttl-exceeded";

/** UTF-16 code units of the comma-separated reason names, for the host to decode once. */
export function dropNamesPtr(): usize { return changetype<usize>(NAMES); }
export function dropNamesLen(): u32 { return <u32>NAMES.length; }
