// The NVE's persistent state behind one interface (STYLE.md: "a store interface
// comes with one shared conformance suite that every implementation runs";
// test/support/store-conformance.ts). Implementations: memory.ts (tests,
// `--memory-store`) and lmdb.ts (the NVE's default, on disk).
//
// Contract:
// - Collections are named key/value maps of JSON-able records; keys are strings.
// - Reads are synchronous (as lmdb-js reads are) and return copies: mutating a
//   returned record never changes the store.
// - `transaction(fn)` runs `fn` synchronously against a writer that sees its own
//   writes; if `fn` throws, nothing of it is written (atomic across collections,
//   PROTOCOL.md §2 "all-or-nothing"). The promise resolves once the writes are
//   durable, which is when the NVE may answer (§2). Transactions apply in call order.
// - Deadlines are absolute wall-clock milliseconds (Date.now() scale), never
//   durations, so a timer survives a restart: the NVE re-arms from the `timers` it loads.
// - The store carries a schema version; opening a store written with another
//   version fails with StoreSchemaError instead of misreading it.

import type { VnProfile } from "../domain/profile.js";

export const STORE_SCHEMA_VERSION = 1;

/** One VNIC (RFC 8394 §3 TSI) and everything it contains (seed §3.1): VN → MAC → IPs. */
export interface VnicRecord {
  vnic: string;
  /** the End Device ({hv}) that owns it */
  hv: string;
  /** the NVE port it is behind */
  port: string;
  /** Associated (no traffic) or Activated (RFC 8394 §3); Init = no record */
  state: "associated" | "active";
  vns: { vn: number; addrs: { mac: string; ips: string[] }[] }[];
  /** set while departing by migration (PROTOCOL.md §2 vnic.deactivate): absolute deadline */
  hold?: { until: number };
}

/**
 * A private deep copy of a VNIC record, field by field: the handlers edit a
 * copy of the post-state record (Txn.edit, acquire), once per attach, and
 * structuredClone cost several times more CPU and garbage (issue 15: its
 * serializer per request). Every field of VnicRecord is copied; a record
 * with a `hold` keeps its own copy of it.
 */
export function copyVnic(r: VnicRecord): VnicRecord {
  const vns = new Array<VnicRecord["vns"][number]>(r.vns.length);
  for (let i = 0; i < vns.length; i++) {
    const b = r.vns[i];
    const addrs = new Array<{ mac: string; ips: string[] }>(b.addrs.length);
    for (let j = 0; j < addrs.length; j++) addrs[j] = { mac: b.addrs[j].mac, ips: b.addrs[j].ips.slice() };
    vns[i] = { vn: b.vn, addrs };
  }
  const out: VnicRecord = { vnic: r.vnic, hv: r.hv, port: r.port, state: r.state, vns };
  if (r.hold) out.hold = { until: r.hold.until };
  return out;
}

/** A VAP in the Connected state (RFC 8394 §3): (port, VN) → Local_Tag. Key `${port}|${vn}`. */
export interface VapRecord { port: string; vn: number; tag: number }
/** A freed tag not reusable before `until` (absolute ms). Key `${port}|${tag}`. */
export interface QuarantineRecord { port: string; tag: number; vn: number; until: number }
/** An End Device's liveness as last seen (PROTOCOL.md §3). Key: hv. */
export interface HvRecord { hv: string; online: boolean; since: number }
/** A pending deadline (absolute ms). Key: `${kind}|${subject}`. */
export interface TimerRecord { kind: "migration-hold" | "agent-hold"; subject: string; due: number }

/**
 * A VN of the catalog learned from the IMA (PROTOCOL.md §6 `nvo3/v1/ima/vn/{id}`),
 * cached so a restarted NVE forwards before the IMA answers (issue 4). Key: String(id).
 */
export interface VnRecord { id: number; name?: string; alias?: string; vni: number; profile: VnProfile }
/** A remote binding learned from the IMA (§6 `ima/bind/{id}/{mac}`), cached likewise. Key: `${vn}|${mac}`. */
export interface RemoteRecord { vn: number; mac: string; nve: string; ip: string; ips: string[]; seq: number }
/** A remote NVE on a VN's flood list (§6 `ima/vtep/{id}/{nve}`), cached likewise. Key: `${vn}|${nve}`. */
export interface VtepRecord { vn: number; nve: string; ip: string }

/** A binding gleaned on a VAP (PROTOCOL.md §5 learn: glean; host/control/glean.ts). Key: `${vn}|${mac}`. */
export interface LearnedRecord { vn: number; mac: string; port: string; ips: string[]; seen: number }

export interface Collections {
  vnics: VnicRecord;
  vaps: VapRecord;
  quarantine: QuarantineRecord;
  hvs: HvRecord;
  timers: TimerRecord;
  vns: VnRecord;
  remotes: RemoteRecord;
  vteps: VtepRecord;
  learned: LearnedRecord;
  meta: unknown;
}
export type CollectionName = keyof Collections;
export const COLLECTIONS: CollectionName[] = ["vnics", "vaps", "quarantine", "hvs", "timers", "vns", "remotes", "vteps", "learned", "meta"];

export interface StoreReader {
  get<C extends CollectionName>(c: C, key: string): Collections[C] | undefined;
  /** Every entry whose key starts with `prefix` (all when omitted), sorted by key (UTF-16 code unit order). */
  list<C extends CollectionName>(c: C, prefix?: string): [string, Collections[C]][];
}

export interface StoreWriter extends StoreReader {
  put<C extends CollectionName>(c: C, key: string, value: Collections[C]): void;
  del(c: CollectionName, key: string): void;
}

export interface Store extends StoreReader {
  /** The schema version the open store holds (equals STORE_SCHEMA_VERSION once opened). */
  readonly schemaVersion: number;
  transaction<T>(fn: (tx: StoreWriter) => T): Promise<T>;
  /**
   * Optional, for pipelining (group commit): as transaction(), but resolves as soon
   * as the change is applied in call order and visible to reads, with `durable`
   * resolving once it is on disk (rejecting if it could not be committed). A caller
   * may run its next transaction before `durable`, but must not acknowledge before it.
   */
  commit?<T>(fn: (tx: StoreWriter) => T): Promise<{ result: T; durable: Promise<void> }>;
  /**
   * Optional, for a store on disk: the id of its last committed write
   * transaction, which every commit changes and a restart keeps (LMDB's
   * txnid). The data plane's table image is used only when it was taken at
   * this id (issue 15; host/control/dp-image.ts).
   */
  lastTxnId?(): number;
  close(): Promise<void>;
}

/**
 * The same store with each write watched from its start to its end: `start`
 * is called as a transaction or a pipelined commit begins and returns what is
 * called when it ends (a transaction returned or threw; a commit is durable,
 * or was refused). The commit-time metrics (host/metrics) and the table
 * image's quiet tracking (host/control/dp-image.ts) both watch the store this
 * way. A proxy, not a copy: the store keeps its own `this` for everything else.
 */
export function watchWrites(store: Store, start: () => () => void): Store {
  const transaction = async <T>(fn: (tx: StoreWriter) => T): Promise<T> => {
    const end = start();
    try { return await store.transaction(fn); } finally { end(); }
  };
  const commit = async <T>(fn: (tx: StoreWriter) => T) => {
    const end = start();
    let r: { result: T; durable: Promise<void> };
    try { r = await store.commit!(fn); } catch (e) { end(); throw e; }
    r.durable.then(end, end);
    return r;
  };
  return new Proxy(store, {
    get(t, k) {
      if (k === "transaction") return transaction;
      if (k === "commit") return t.commit ? commit : undefined;
      const v = Reflect.get(t, k, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });
}

export class StoreSchemaError extends Error {
  constructor(public found: unknown, public expected: number, where: string) {
    super(`${where}: store schema version ${JSON.stringify(found)} is not the supported version ${expected}`);
  }
}

export const keys = {
  vap: (port: string, vn: number) => `${port}|${vn}`,
  quarantine: (port: string, tag: number) => `${port}|${tag}`,
  timer: (kind: TimerRecord["kind"], subject: string) => `${kind}|${subject}`,
  remote: (vn: number, mac: string) => `${vn}|${mac}`,
  vtep: (vn: number, nve: string) => `${vn}|${nve}`,
};
