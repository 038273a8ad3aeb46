// What a request handler gets: the requester, its port, the open transaction,
// the catalog and the service's settings. Handlers return a thunk that builds the
// response once the transaction is finished (tags are allocated in finish()).
import type { VnConfig } from "../config/types.js";
import type { VnCatalog } from "./catalog.js";
import type { Txn } from "./txn.js";
import type { SyncVnic } from "../protocol/types.js";

/** Per-{hv} limits (INTERFACES.md `limits`, PROTOCOL.md §2 Authority): on by default. */
export interface Limits {
  /** VNICs one End Device may hold (limit-exceeded beyond) */
  maxVnicsPerHv: number;
  /** MACs + IPs one VNIC may hold, over all its VNs */
  maxAddrsPerVnic: number;
  /** requests per second per End Device, 0 = unlimited (rate-limited beyond) */
  ratePerSecond: number;
  /** the token bucket's depth (requests accepted at once after a quiet time) */
  burst: number;
  /** chunks of one sync (limit-exceeded beyond) */
  maxSyncChunks: number;
  /** ranges (CIDR prefixes) one End Device may hold */
  maxPrefixesPerHv: number;
  /** shorter prefixes are bad-request (a /0 always is) */
  minPrefixLen: { ipv4: number; ipv6: number };
}

export const DEFAULT_LIMITS: Limits = {
  maxVnicsPerHv: 4096, maxAddrsPerVnic: 256, ratePerSecond: 200, burst: 400, maxSyncChunks: 64,
  maxPrefixesPerHv: 64, minPrefixLen: { ipv4: 8, ipv6: 32 },
};

export interface Settings {
  nve: string;
  bootId: string;
  holdMs: number;
  agentHoldMs: number;
  tagQuarantineMs: number;
  maxPayload: number;
  limits: Limits;
}

/** One unfinished sync of an End Device (PROTOCOL.md §2 sync). */
export interface OpenSync {
  syncId: string;
  /**
   * The chunks taken in, in order: request id (an agent's retry of a chunk is
   * taken once), how many entries, the entries (VNs resolved to `{ id }`) as
   * JSON text, VNICs it named first. As text a chunk is one object to the
   * garbage collector instead of about ten per entry: up to maxSyncChunks of
   * them, held until `final` or holdMs, were marked by every major GC, a
   * stall for every hypervisor (issue 10 soak).
   */
  chunks: { id: string; entries: number; text: string; added: string[] }[];
  /** distinct VNICs so far (bounded by maxVnicsPerHv before `final`) */
  vnicIds: Set<string>;
  /** monotonic time of the last chunk (discarded holdMs after it) */
  at: number;
}

/** Sync bookkeeping per End Device: the open sync, the answers of the last finished ones, the ones discarded. */
export interface SyncState {
  open: Map<string, OpenSync>;
  /** hv → the last few finished syncs and the answer of their final chunk (a replay gets it again) */
  finished: Map<string, { syncId: string; reply: Record<string, unknown> }[]>;
  /** hv → syncIds discarded unfinished (holdMs): later chunks of them are refused */
  discarded: Map<string, string[]>;
}

export interface HandlerCtx {
  hv: string;
  port: string;
  tx: Txn;
  now: number;
  /** monotonic milliseconds (in-process timers; `now` is wall-clock, for persisted deadlines) */
  mono: number;
  catalog: VnCatalog;
  settings: Settings;
  syncs: SyncState;
  /** not-authorized (field) unless the requester may use the VN (PROTOCOL.md §2 Authority) */
  authorize(v: VnConfig, field: string): void;
}

export type Reply = () => Record<string, unknown>;
