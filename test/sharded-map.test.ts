// host/domain/sharded-map.ts: a Map<string, V> split by key hash, so that no
// single set() rehashes a whole per-VNIC index (issue 15, the paced p99).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ShardedMap, SHARDS } from "../host/domain/sharded-map.js";

test("sharded map: every operation answers as a Map's does, over a random mix of sets, overwrites, deletes and clears", () => {
  const m = new ShardedMap<number>(), ref = new Map<string, number>();
  let seed = 12345;
  const rnd = (n: number) => ((seed = Math.imul(seed, 1103515245) + 12345 >>> 0) % n);
  for (let i = 0; i < 20_000; i++) {
    const k = `00000000-0000-4000-8000-${rnd(3000).toString(16).padStart(12, "0")}`;
    const op = rnd(100);
    if (op < 55) { assert.is(m.set(k, i), m, "set returns the map"); ref.set(k, i); }
    else if (op < 85) assert.is(m.delete(k), ref.delete(k), `delete ${k}`);
    else if (op < 99) { assert.is(m.get(k), ref.get(k), `get ${k}`); assert.is(m.has(k), ref.has(k), `has ${k}`); }
    else { m.clear(); ref.clear(); }
    assert.is(m.size, ref.size, "size after each operation");
  }
  const sorted = (it: Iterable<[string, number]>) => [...it].sort((a, b) => (a[0] < b[0] ? -1 : 1));
  assert.equal(sorted(m), sorted(ref), "iteration: each entry once, with its latest value");
  assert.equal(sorted(m.entries()), sorted(ref.entries()));
  assert.equal([...m.keys()].sort(), [...ref.keys()].sort());
  assert.equal([...m.values()].sort((a, b) => a - b), [...ref.values()].sort((a, b) => a - b));
  const seen: [string, number][] = [];
  m.forEach(function (this: unknown, v, k, map) { assert.is(map, m); assert.is(this, seen); seen.push([k, v]); }, seen);
  assert.equal(sorted(seen), sorted(ref));
  assert.equal(sorted(new ShardedMap(ref)), sorted(ref), "built from entries");
  assert.is(Object.prototype.toString.call(m), "[object ShardedMap]");
});

test("sharded map: keys that differ only in their last characters (UUIDs, MACs, VN|IP keys) spread over every shard, none over twice its share", () => {
  for (const key of [
    (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`,
    (i: number) => `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, "0")}:${((i >> 8) & 255).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`,
    (i: number) => `7|10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
  ]) {
    const m = new ShardedMap<number>();
    const n = SHARDS * 1000;
    for (let i = 0; i < n; i++) m.set(key(i), i);
    const sizes = (m as unknown as { shards: Map<string, number>[] }).shards.map((s) => s.size);
    assert.is(sizes.length, SHARDS);
    assert.is(sizes.reduce((a, b) => a + b, 0), n);
    assert.ok(Math.min(...sizes) > 500 && Math.max(...sizes) < 2000, `shard sizes ${Math.min(...sizes)}..${Math.max(...sizes)} for keys like ${key(1)}`);
  }
});

test.run();
