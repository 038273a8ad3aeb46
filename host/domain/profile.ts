// A VN's profile (PROTOCOL.md §2 "vn", INTERFACES.md `vns[].profile`): one
// shared fact of the configuration file, the control and IMA protocols, the
// store and the data plane's op contract (host/dataplane/ops.ts), so it lives
// below all of them. Its JSON schema is config/schema.ts profileSchema.

export type Encap = "vxlan" | "geneve" | "nvgre";

export interface VnProfile {
  encap: Encap;
  service?: "l2" | "l3";
  /** service "l3" (PROTOCOL.md §5): the anycast gateway ("10.0.0.1/24": address in its subnet) and the routing domain */
  gateway?: { ips: string[]; mac: string };
  l3domain?: number;
  mtu: number;
  portSecurity?: boolean;
  arpSuppress?: boolean;
  learn?: "explicit" | "glean";
  /** learn: glean (PROTOCOL.md §5): a learned binding's age without traffic (default 300000) and the per-port cap (default 1024). */
  learnAgeMs?: number;
  maxLearnedPerPort?: number;
  qos?: { pcp?: number; dscp?: number; rateMbps?: number; burstKb?: number };
  /** PROTOCOL.md §5: an ordered, first-match rule list (compiled by ./acl.ts) and what no match gets (default allow). */
  acl?: AclRule[];
  aclDefault?: "allow" | "deny";
}

export interface AclRule {
  action: "allow" | "deny";
  dir?: "from-vnic" | "to-vnic" | "both";
  proto?: "tcp" | "udp" | "icmp" | "icmp6" | number;
  src?: string;
  dst?: string;
  srcPort?: number | string;
  dstPort?: number | string;
  icmpType?: number;
}
