// Message shapes of nvo3-hv/1 (PROTOCOL.md §2, §4). Validated by schemas.ts.
import type { VnProfile } from "../domain/profile.js";

export type VnRef = { name: string } | { id: number } | { alias: string };
export interface VnFull { id: number; name?: string; alias?: string }
export interface Addr { mac: string; ips?: string[] }
export type DeactivateReason = "shutdown" | "migration" | "suspend";
export type VnicState = "active" | "associated";
export interface SyncVnic { vnic: string; state: VnicState; vns: { vn: VnRef | VnFull; tag?: number; addrs: Addr[] }[] }

export type Request =
  | { id: string; op: "hello"; agent: string; capabilities?: string[] }
  | { id: string; op: "vn.connect"; vnic: string; vn: VnRef; tag?: number; activate?: boolean }
  | { id: string; op: "vn.disconnect"; vnic: string; vn: VnRef }
  | { id: string; op: "addr.associate"; vnic: string; vn: VnRef; addrs: Addr[] }
  | { id: string; op: "addr.disassociate"; vnic: string; vn: VnRef; addrs: Addr[] }
  | { id: string; op: "vnic.attach"; vnic: string; vn: VnRef; addrs: Addr[]; tag?: number; migration?: boolean }
  | { id: string; op: "vnic.activate"; vnic: string; migration?: boolean }
  | { id: string; op: "vnic.deactivate"; vnic: string; reason: DeactivateReason }
  | { id: string; op: "vn.profile"; vn: VnRef }
  | { id: string; op: "sync"; syncId: string; vnics: SyncVnic[]; final: boolean }
  | { id: string; op: "show"; cursor?: string; limit?: number };

export type RequestOf<O extends Request["op"]> = Extract<Request, { op: O }>;

export interface ConnectResult { tag: number; vn: VnFull; vni: number; mtu: number; profile: VnProfile }
export interface HelloResult { nve: string; bootId: string; protocol: number; holdMs: number; maxPayload: number }

export type Event =
  | { event: "vn.disconnected"; vnic: string; vn: VnFull; reason: string }
  | { event: "addr.disassociated"; vnic: string; vn: VnFull; addrs: Addr[]; reason: string }
  | { event: "vn.profile"; vn: VnFull; profile: VnProfile }
  | { event: "nve.draining" };

export const PROTOCOL_VERSION = 1;
