// The configuration file's shape (INTERFACES.md). Defaults are filled by the schema.
import type { VnProfile } from "../dataplane/ops.js";

export interface VnConfig { id: number; name?: string; alias?: string; vni: number; profile: VnProfile }
export interface AddrConfig { mac: string; ips?: string[] }
export interface NveConfig {
  nve: string;
  broker?: string;
  underlay: { port: string; ip: string; mac: string; gateway?: string; gatewayMac?: string; udpPort: number; genevePort: number };
  ports: { name: string; hypervisors: string[] }[];
  vns: VnConfig[];
  vnics: { vnic: string; port: string; state: "active" | "associated";
           vns: { vn: number | string; tag: number; addrs: AddrConfig[] }[] }[];
  remotes: { nve: string; ip: string; vns: (number | string)[]; addrs: { vn: number | string; mac: string; ips?: string[] }[] }[];
  timers: { holdMs: number; agentHoldMs: number; tagQuarantineMs: number };
  limits: { maxPayload: number };
  auth?: { passwordFile?: string; aclFile?: string; tls?: { cert: string; key: string; ca: string } };
  /** present = the NVE uses the mapping authority (PROTOCOL.md §6) */
  ima?: { id: string; operators: string[] };
}
