// The in-memory Store: for tests and `nvedge run` without a persistent store.
// A MemoryBacking outlives the Store objects opened on it, so tests can
// "restart" an NVE (PROTOCOL.md §3) by opening a new store on the same backing.
import {
  COLLECTIONS, STORE_SCHEMA_VERSION, StoreSchemaError,
  type CollectionName, type Collections, type Store, type StoreWriter,
} from "./store.js";
import { ShardedMap } from "../domain/sharded-map.js";

export type MemoryBacking = Map<CollectionName, Map<string, unknown>>;

export function newMemoryBacking(): MemoryBacking {
  return new Map(COLLECTIONS.map((c) => [c, collection(c)]));
}

/** The VNICs' collection holds one record per VNIC: sharded, so that no commit pays its whole rehash (host/domain/sharded-map.ts). */
function collection(c: CollectionName): Map<string, unknown> {
  return c === "vnics" ? new ShardedMap<unknown>() : new Map();
}

/**
 * A deep copy of a stored value. Records are plain JSON-like data: copied
 * field by field, several times faster than structuredClone for the small
 * records of an attach (issue 15: the memory store's copies were ~6 % of the
 * NVE's CPU per attach); anything else (a Map, a typed array, a Date, a
 * cycle's host object) goes through structuredClone as before.
 */
function copy<T>(v: T): T {
  if (typeof v !== "object" || v === null) return v;
  return plain(v, 0) as T;
}

function plain(v: unknown, depth: number): unknown {
  if (typeof v !== "object" || v === null) return v;
  if (depth > 32) return structuredClone(v); // deeper than any record: let structuredClone handle (or refuse) it
  if (Array.isArray(v)) {
    const out = new Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = plain(v[i], depth + 1);
    return out;
  }
  if (Object.getPrototypeOf(v) !== Object.prototype) return structuredClone(v);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = plain((v as Record<string, unknown>)[k], depth + 1);
  return out;
}
const DELETED = Symbol("deleted");

function sortedEntries(m: Map<string, unknown>, prefix: string): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [k, v] of m) if (k.startsWith(prefix)) out.push([k, v]);
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

export class MemoryStore implements Store {
  readonly schemaVersion: number;
  private closed = false;

  private constructor(private data: MemoryBacking) {
    this.schemaVersion = STORE_SCHEMA_VERSION;
  }

  static async open(opts: { backing?: MemoryBacking; schemaVersion?: number } = {}): Promise<MemoryStore> {
    const data = opts.backing ?? newMemoryBacking();
    for (const c of COLLECTIONS) if (!data.has(c)) data.set(c, collection(c));
    const want = opts.schemaVersion ?? STORE_SCHEMA_VERSION;
    const meta = data.get("meta")!;
    const found = meta.get("schemaVersion");
    if (found === undefined) meta.set("schemaVersion", want);
    else if (found !== want) throw new StoreSchemaError(found, want, "memory store");
    return new MemoryStore(data);
  }

  private col(c: CollectionName): Map<string, unknown> {
    if (this.closed) throw new Error("store is closed");
    const m = this.data.get(c);
    if (!m) throw new Error(`unknown collection "${c}"`);
    return m;
  }

  get<C extends CollectionName>(c: C, key: string): Collections[C] | undefined {
    return copy(this.col(c).get(key)) as Collections[C] | undefined;
  }

  list<C extends CollectionName>(c: C, prefix = ""): [string, Collections[C]][] {
    return sortedEntries(this.col(c), prefix).map(([k, v]) => [k, copy(v) as Collections[C]]);
  }

  async transaction<T>(fn: (tx: StoreWriter) => T): Promise<T> {
    const pending = new Map<CollectionName, Map<string, unknown>>();
    const store = this;
    const tx: StoreWriter = {
      get(c, key) {
        const p = pending.get(c)?.get(key);
        if (p === DELETED) return undefined;
        return p !== undefined ? copy(p) as never : store.get(c, key);
      },
      list(c, prefix = "") {
        const merged = new Map(store.col(c));
        for (const [k, v] of pending.get(c) ?? []) v === DELETED ? merged.delete(k) : merged.set(k, v);
        return sortedEntries(merged, prefix).map(([k, v]) => [k, copy(v)]) as never;
      },
      put(c, key, value) {
        store.col(c);
        if (typeof key !== "string" || key === "") throw new Error(`bad key ${JSON.stringify(key)}`);
        if (value === undefined) throw new Error("put of undefined: use del");
        if (!pending.has(c)) pending.set(c, new Map());
        pending.get(c)!.set(key, copy(value));
      },
      del(c, key) {
        store.col(c);
        if (!pending.has(c)) pending.set(c, new Map());
        pending.get(c)!.set(key, DELETED);
      },
    };
    const result = fn(tx); // throws → pending discarded, nothing written
    if (result instanceof Promise) throw new Error("transaction callbacks must be synchronous");
    for (const [c, m] of pending) {
      const target = this.col(c);
      for (const [k, v] of m) v === DELETED ? target.delete(k) : target.set(k, v);
    }
    return result;
  }


  async close(): Promise<void> {
    this.closed = true;
  }
}
