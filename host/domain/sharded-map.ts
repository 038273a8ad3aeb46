// A Map<string, V> split over a fixed number of smaller Maps by a hash of the
// key. Why: V8 grows a Map by rehashing it whole into a table twice the size,
// inside the one set() that fills it. For the NVE's per-VNIC and per-address
// indexes that one set() is a stall of the control plane's only thread: one
// Map of 2^20 string keys took 187 ms at its last doubling on this machine
// (Node 20), 89 ms at 2^19, 22 ms at 2^17; the model's four per-VNIC Maps
// doubling in the same request made a ~10 ms turn at 8,192 VNICs in the paced
// bench (bench/README.md "Session 13: pace15", issue 15: p99 < 5 ms). Split
// over SHARDS, each doubling rehashes 1/SHARDS of the entries, and the shards
// cross their thresholds at different requests (their sizes differ by the
// hash's spread), so no request pays more than one small rehash.
//
// Iteration visits the shards in turn, each in its insertion order: not the
// global insertion order of a Map. Callers that need an order sort.

/** A power of two: 2^20 keys make shards of 16,384 (a ~3 ms doubling at most). */
export const SHARDS = 64;

/**
 * FNV-1a over the key's first 4 and last 8 UTF-16 code units: the NVE's keys
 * differ in their ends (a UUID's random tail, a MAC's last octets, the VN and
 * the address of a VN|IP key), so a bounded number of code units spreads
 * them (test/sharded-map.test.ts); this hash costs ~50 ns per lookup here.
 */
function shardOf(key: string): number {
  let h = 0x811c9dc5;
  const n = key.length;
  const head = n < 12 ? n : 4;
  for (let i = 0; i < head; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  for (let i = n < 12 ? n : n - 8; i < n; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h ^ (h >>> 15)) & (SHARDS - 1);
}

export class ShardedMap<V> implements Map<string, V> {
  private readonly shards: Map<string, V>[] = Array.from({ length: SHARDS }, () => new Map<string, V>());
  private count = 0;

  constructor(entries?: Iterable<readonly [string, V]>) {
    if (entries) for (const [k, v] of entries) this.set(k, v);
  }

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    return this.shards[shardOf(key)].get(key);
  }

  has(key: string): boolean {
    return this.shards[shardOf(key)].has(key);
  }

  set(key: string, value: V): this {
    const s = this.shards[shardOf(key)];
    const n = s.size;
    s.set(key, value);
    this.count += s.size - n;
    return this;
  }

  delete(key: string): boolean {
    if (!this.shards[shardOf(key)].delete(key)) return false;
    this.count--;
    return true;
  }

  clear(): void {
    for (const s of this.shards) s.clear();
    this.count = 0;
  }

  forEach(fn: (value: V, key: string, map: Map<string, V>) => void, thisArg?: unknown): void {
    for (const s of this.shards) for (const [k, v] of s) fn.call(thisArg, v, k, this);
  }

  *entries(): IterableIterator<[string, V]> {
    for (const s of this.shards) yield* s.entries();
  }

  *keys(): IterableIterator<string> {
    for (const s of this.shards) yield* s.keys();
  }

  *values(): IterableIterator<V> {
    for (const s of this.shards) yield* s.values();
  }

  [Symbol.iterator](): IterableIterator<[string, V]> {
    return this.entries();
  }

  get [Symbol.toStringTag](): string {
    return "ShardedMap";
  }
}
