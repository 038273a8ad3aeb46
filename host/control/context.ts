// What a request handler gets: the requester, its port, the open transaction,
// the catalog and the service's settings. Handlers return a thunk that builds the
// response once the transaction is finished (tags are allocated in finish()).
import type { VnCatalog } from "./catalog.js";
import type { Txn } from "./txn.js";
import type { SyncVnic } from "../protocol/types.js";

export interface Limits {
  /** VNICs one End Device may hold (limit-exceeded beyond) */
  maxVnicsPerHv: number;
  /** MACs + IPs one VNIC may hold in one VN */
  maxAddrsPerVnic: number;
  /** requests per second per End Device, 0 = unlimited (rate-limited beyond) */
  ratePerSecond: number;
  rateBurst: number;
}

export const DEFAULT_LIMITS: Limits = { maxVnicsPerHv: 16384, maxAddrsPerVnic: 4096, ratePerSecond: 0, rateBurst: 0 };

export interface Settings {
  nve: string;
  bootId: string;
  holdMs: number;
  agentHoldMs: number;
  tagQuarantineMs: number;
  maxPayload: number;
  limits: Limits;
}

export interface HandlerCtx {
  hv: string;
  port: string;
  tx: Txn;
  now: number;
  catalog: VnCatalog;
  settings: Settings;
  /** sync chunks collected per End Device until `final` */
  syncs: Map<string, { syncId: string; vnics: SyncVnic[] }>;
}

export type Reply = () => Record<string, unknown>;
