// Open-addressing hash table keyed by (a 32-bit tag word, a 16-byte address):
// the IP binding table (tag = VN index + 1, bit 31 set for IPv6; value = MAC)
// and the remote-NVE table (tag = family; value = remote index).
// Slot (32 bytes): u32 tag (0 = empty) | u32 pad | 16-byte address | u64 value.
// IPv4 addresses sit in the first 4 bytes, the other 12 are zero.
import { mix64 } from "../util";
import { alloc } from "../state";

export const HIP_SLOT: u32 = 32;

export class TableIp {
  base: usize = 0;
  mask: u32 = 0;
  count: u32 = 0;
  limit: u32 = 0;
}

export function tipInit(t: TableIp, log2: u32): void {
  const n: u32 = 1 << log2;
  t.base = alloc(<usize>n * HIP_SLOT);
  t.mask = n - 1;
  t.count = 0;
  t.limit = n - (n >> 3);
}

@inline function home(t: TableIp, tag: u32, a0: u64, a1: u64): u32 {
  return tipHome(t.mask, tag, a0, a1);
}
@inline export function tipHome(mask: u32, tag: u32, a0: u64, a1: u64): u32 {
  return <u32>mix64(a0 ^ mix64(a1 ^ <u64>tag)) & mask;
}

@inline function same(s: usize, tag: u32, a0: u64, a1: u64): bool {
  return load<u32>(s) == tag && load<u64>(s, 8) == a0 && load<u64>(s, 16) == a1;
}

/** The slot for (tag, address at p: 16 bytes, or 4 for IPv4), or 0. */
@inline export function tipFind(t: TableIp, tag: u32, a0: u64, a1: u64): usize {
  return tipFindIn(t.base, t.mask, tag, a0, a1);
}

/** tipFind on a table given by its base and mask (plain globals on the per-frame paths: tables/index.ts). */
@inline export function tipFindIn(base: usize, mask: u32, tag: u32, a0: u64, a1: u64): usize {
  return tipFindInFrom(base, mask, tag, a0, a1, tipHome(mask, tag, a0, a1));
}

/** tipFindIn with the home slot `i` already computed (the prefetch pass's: pipeline/prefetch.ts). */
@inline export function tipFindInFrom(base: usize, mask: u32, tag: u32, a0: u64, a1: u64, i: u32): usize {
  // The home slot is tested before the loop, as t64FindIn does (most lookups
  // end there, and V8 puts a stack check on every loop iteration: bench/
  // README.md finding 7), each test its own `if` (`a && b` became setcc
  // chains: finding 16). Issue 18: the remote NVE lookup of every decap,
  // port security's and the ARP reply's IP lookups.
  const s0 = base + (<usize>i << 5);
  const k0 = load<u32>(s0);
  if (k0 == 0) return 0;
  if (k0 == tag) {
    if (load<u64>(s0, 8) == a0) {
      if (load<u64>(s0, 16) == a1) return s0;
    }
  }
  i = (i + 1) & mask;
  while (true) {
    const s = base + (<usize>i << 5);
    const k = load<u32>(s);
    if (k == 0) return 0;
    if (k == tag) {
      if (load<u64>(s, 8) == a0) {
        if (load<u64>(s, 16) == a1) return s;
      }
    }
    i = (i + 1) & mask;
  }
}

export function tipPut(t: TableIp, tag: u32, a0: u64, a1: u64, val: u64): bool {
  let i = home(t, tag, a0, a1);
  while (true) {
    const s = t.base + (<usize>i << 5);
    const k = load<u32>(s);
    if (k == 0) {
      if (t.count >= t.limit) return false;
      t.count++;
      store<u64>(s, a0, 8);
      store<u64>(s, a1, 16);
      store<u64>(s, val, 24);
      store<u32>(s, tag); // tag last: complete before visible
      return true;
    }
    if (same(s, tag, a0, a1)) { store<u64>(s, val, 24); return true; }
    i = (i + 1) & t.mask;
  }
}

export function tipDel(t: TableIp, tag: u32, a0: u64, a1: u64): bool {
  const s0 = tipFind(t, tag, a0, a1);
  if (s0 == 0) return false;
  let i = <u32>((s0 - t.base) >> 5);
  let j = i;
  while (true) {
    j = (j + 1) & t.mask;
    const sj = t.base + (<usize>j << 5);
    const kj = load<u32>(sj);
    if (kj == 0) break;
    const h = home(t, kj, load<u64>(sj, 8), load<u64>(sj, 16));
    const between = i <= j ? (h > i && h <= j) : (h > i || h <= j);
    if (between) continue;
    const si = t.base + (<usize>i << 5);
    memory.copy(si, sj, 32);
    i = j;
  }
  store<u32>(t.base + (<usize>i << 5), 0);
  t.count--;
  return true;
}
