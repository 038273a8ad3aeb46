// The configuration file's shape (INTERFACES.md). Defaults are filled by the schema.
import type { VnProfile } from "../domain/profile.js";

export interface VnConfig { id: number; name?: string; alias?: string; vni: number; profile: VnProfile }
export interface AddrConfig { mac: string; ips?: string[] }
/** A `hypervisors` entry: an {hv}, or one whose VNs are narrowed further (INTERFACES.md). */
export type HypervisorEntry = string | { id: string; vns?: (number | string)[] };
export interface PortConfig { name: string; hypervisors: HypervisorEntry[]; vns?: (number | string)[] }
export interface LimitsConfig {
  maxPayload: number; ratePerSecond: number; burst: number; maxSyncChunks: number;
  maxVnicsPerHv: number; maxAddrsPerVnic: number; maxPrefixesPerHv: number;
  minPrefixLen: { ipv4: number; ipv6: number };
}
/** The {hv} of a `hypervisors` entry. */
export const hvId = (h: HypervisorEntry): string => (typeof h === "string" ? h : h.id);
export interface NveConfig {
  nve: string;
  broker?: string;
  underlay: { port: string; ip: string; mac: string; gateway?: string; gatewayMac?: string; routerMac?: string; vlan?: number; tunnelGso?: "auto" | "off"; udpPort: number; genevePort: number };
  ports: PortConfig[];
  vns: VnConfig[];
  vnics: { vnic: string; port: string; state: "active" | "associated";
           vns: { vn: number | string; tag: number; addrs: AddrConfig[] }[] }[];
  /** routing domains (L3 service): id and L3 VNI */
  l3domains?: { id: number; vni: number }[];
  remotes: { nve: string; ip: string; routerMac?: string; vns: (number | string)[]; addrs: { vn: number | string; mac: string; ips?: string[] }[] }[];
  timers: { holdMs: number; agentHoldMs: number; tagQuarantineMs: number };
  limits: LimitsConfig;
  auth?: { passwordFile?: string; aclFile?: string; tls?: { cert: string; key: string; ca: string } };
  /** present = the NVE uses the mapping authority (PROTOCOL.md §6) */
  ima?: { id: string; operators: string[] };
  /** Prometheus endpoint (issue 13) */
  metrics?: { listen?: string };
  /** logging (issue 13) */
  log?: { level?: string; format?: string };
}
