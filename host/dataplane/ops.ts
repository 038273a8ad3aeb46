// The data plane's programming contract: every table change is one of these
// plain, JSON-serialisable operations. The control plane (host/control), the
// static configuration (host/config) and the worker pool (host/io) all speak
// it, so one list of ops can be applied to an in-process DataPlane or posted to
// every worker thread and acknowledged only when all of them have it.
//
// VNs are named by their VN id (1..16777215, PROTOCOL.md §2); ports by name;
// MACs as "02:00:5e:00:00:01"; IPs as text (IPv4 or IPv6, or a CIDR prefix).

import type { VnProfile } from "../domain/profile.js";
// The profile is a domain type (host/domain/profile.ts); re-exported as part of the op contract.
export type { Encap, VnProfile, AclRule } from "../domain/profile.js";

export type DpOp =
  /** The underlay: our source MAC/IP, the next hop, the VXLAN UDP port, the port it lives on. */
  | { op: "underlay"; port: string; ip: string; mac: string; gatewayMac: string; udpPort?: number; genevePort?: number }
  /**
   * Remote NVE `nve`'s own next-hop MACs on the underlay (issue 11; host/underlay/routes.ts):
   * one (the remote itself on the same subnet, or its route's gateway), up to 8 of
   * an equal-cost multipath route (each frame takes one by its flow hash), or none
   * (unresolved: its frames are dropped as no-next-hop). Without one, the
   * underlay's gatewayMac applies. Kept across the remote's comings and goings.
   */
  | { op: "nexthop"; nve: string; macs: string[] }
  /** An access (802.1Q trunk) port toward one or more hypervisors. */
  | { op: "port"; port: string }
  /** Create or update a VN (its profile may change while traffic flows). */
  | { op: "vn"; vn: number; vni: number; profile: VnProfile }
  | { op: "vn.del"; vn: number }
  /** (port, tag) -> VN: a VAP in the Connected state (RFC 8394 §3). */
  | { op: "tag"; port: string; tag: number; vn: number }
  | { op: "tag.del"; port: string; tag: number }
  /** A MAC of a local VNIC behind `port`; `active` false = Associated (no traffic). */
  | { op: "mac.local"; vn: number; mac: string; port: string; active: boolean;
      /** a binding gleaned on the port's VAP (PROTOCOL.md §5 learn: glean), not signalled for a VNIC */
      glean?: boolean;
      /** the VNIC the MAC belongs to: a VNIC's MACs in a VN share one qos.rateMbps bucket (none: the MAC has its own) */
      vnic?: string }
  /** The (port, VN) VAP holds maxLearnedPerPort gleaned bindings (full) or has room again. */
  | { op: "learn.full"; vn: number; port: string; full: boolean }
  /**
   * Every local binding of one port in one op (a restart reprograms them all,
   * issue 4): the same as `{op:"mac.local", vn: vn[k], mac: mac[k], port,
   * active: active[k], vnic: vnic?.[k]}` for each k, then `{op:"ip", vn: vn[k], ip, mac: mac[k]}`
   * for each ip of ips[ipStart[k] .. ipStart[k+1]) (ipStart has one more entry
   * than mac). Flat arrays instead of a million small objects: cheap to build,
   * to post to the packet I/O workers and to collect.
   */
  | { op: "local.bulk"; port: string; vn: number[]; mac: string[]; active: boolean[]; ipStart: number[]; ips: string[];
      /** vnic[k]: mac[k]'s VNIC (mac.local `vnic`) */
      vnic?: string[] }
  /** A MAC behind the remote NVE whose underlay address is `nve`. */
  | { op: "mac.remote"; vn: number; mac: string; nve: string }
  | { op: "mac.del"; vn: number; mac: string }
  /** An IP (or prefix) bound to a MAC in a VN (port security, ARP/ND suppression). */
  | { op: "ip"; vn: number; ip: string; mac: string }
  | { op: "ip.del"; vn: number; ip: string }
  /** Remote NVE `nve` serves the VN: it is on the VN's flood list; `routerMac`: its router MAC (the `vtep` record, PROTOCOL.md §6). */
  | { op: "flood.join"; vn: number; nve: string; routerMac?: string }
  /** A routing domain (PROTOCOL.md §6 `l3domain`): its L3 VNI and this NVE's router MAC on it (host/dataplane/l3.ts). */
  | { op: "l3domain"; id: number; vni: number; routerMac: string }
  | { op: "l3domain.del"; id: number }
  | { op: "flood.leave"; vn: number; nve: string };

/** Anything that can take a list of ops atomically (between two batches). */
export interface DataPlaneProgrammer {
  /** Resolves once every data plane instance has applied all of `ops`. Rejects, applying none, on a bad op. */
  apply(ops: DpOp[]): Promise<void>;
}
