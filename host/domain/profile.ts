// A VN's profile (PROTOCOL.md §2 "vn", INTERFACES.md `vns[].profile`): one
// shared fact of the configuration file, the control and IMA protocols, the
// store and the data plane's op contract (host/dataplane/ops.ts), so it lives
// below all of them. Its JSON schema is config/schema.ts profileSchema.

export type Encap = "vxlan" | "geneve" | "nvgre";

export interface VnProfile {
  encap: Encap;
  service?: "l2" | "l3";
  mtu: number;
  portSecurity?: boolean;
  arpSuppress?: boolean;
  learn?: "explicit" | "glean";
  qos?: { pcp?: number; dscp?: number };
}
