// Open-addressing hash table with 64-bit keys (linear probing, backward-shift
// deletion so no tombstones accumulate under churn). Used for the MAC table
// (key = (VN index + 1) << 48 | MAC) and the VNI map (key = VNI).
// Slot: u64 key (0 = empty) | u32 value | u32 aux = 16 bytes.
// Updates happen between batches on a single thread, so a reader never sees
// a half-written slot (issue 2: "updates never expose a half-written entry").
import { alloc } from "../state";

export const H64_SLOT: u32 = 16;

export class Table64 {
  base: usize = 0;
  mask: u32 = 0;
  count: u32 = 0;
  limit: u32 = 0; // refuse inserts beyond 7/8 load: probes stay short
  shift: u32 = 0; // 64 - log2(slots): fibHome's shift
}

/**
 * The home slot of a key in a table of 2^(64 - shift) slots: Fibonacci
 * hashing (Knuth, TAOCP 6.4: the top bits of key * 2^64/phi), one multiply
 * where mix64 spent two and three shift-xors (issue 18). Measured by linear-
 * probing 1,000,000 MAC keys (the design load) into 2^21 slots: mean probe
 * length 1.00 (sequential MACs of one OUI), 1.02 (two OUIs), 1.46 (random
 * MACs), 1.89 (1,000 VNs x 1,000 sequential MACs), longest 32; mix64 gave
 * 1.46 for each, longest 40 (bench/README.md). The IP table keeps mix64:
 * sequential IPv4 addresses gave a mean of 3.85 with this.
 */
@inline export function fibHome(key: u64, shift: u64): u32 {
  return <u32>((key * 0x9e3779b97f4a7c15) >> shift);
}

export function t64Init(t: Table64, log2: u32): void {
  if (log2 < 1) log2 = 1; // fibHome takes at least one bit
  const n: u32 = 1 << log2;
  t.base = alloc(<usize>n * H64_SLOT);
  t.mask = n - 1;
  t.count = 0;
  t.limit = n - (n >> 3);
  t.shift = 64 - log2;
}

@inline export function t64Home(t: Table64, key: u64): u32 {
  return fibHome(key, <u64>t.shift);
}

/** The slot holding `key`, or 0. */
@inline export function t64Find(t: Table64, key: u64): usize {
  return t64FindFrom(t, key, t64Home(t, key));
}

/** t64Find with the home slot `i` (= t64Home(t, key)) already computed. */
@inline export function t64FindFrom(t: Table64, key: u64, i: u32): usize {
  return t64FindIn(t.base, t.mask, key, i);
}

/**
 * The probe itself, on a table given by its base and mask: the per-frame
 * lookups pass plain globals (tables/index.ts) rather than the Table64's
 * fields, which V8 reloads from linear memory after every store.
 */
@inline export function t64FindIn(base: usize, mask: u32, key: u64, i: u32): usize {
  // The home slot is tested before the loop: most lookups end there, and V8
  // puts a stack check on every loop iteration (bench/README.md finding 7).
  const s0 = base + (<usize>i << 4);
  const k0 = load<u64>(s0);
  if (k0 == key) return s0;
  if (k0 == 0) return 0;
  i = (i + 1) & mask;
  while (true) {
    const s = base + (<usize>i << 4);
    const k = load<u64>(s);
    if (k == key) return s;
    if (k == 0) return 0;
    i = (i + 1) & mask;
  }
}

/** Inserts or updates; false when the table is full. */
export function t64Put(t: Table64, key: u64, val: u32, aux: u32): bool {
  let i = t64Home(t, key);
  while (true) {
    const s = t.base + (<usize>i << 4);
    const k = load<u64>(s);
    if (k == key || k == 0) {
      if (k == 0) {
        if (t.count >= t.limit) return false;
        t.count++;
      }
      store<u32>(s, val, 8);
      store<u32>(s, aux, 12);
      store<u64>(s, key); // key last: the slot is complete before it is found
      return true;
    }
    i = (i + 1) & t.mask;
  }
}

export function t64Del(t: Table64, key: u64): bool {
  const s0 = t64Find(t, key);
  if (s0 == 0) return false;
  let i = <u32>((s0 - t.base) >> 4);
  // backward-shift: move later members of the cluster into the hole when
  // their home position does not lie cyclically between the hole and them
  let j = i;
  while (true) {
    j = (j + 1) & t.mask;
    const sj = t.base + (<usize>j << 4);
    const kj = load<u64>(sj);
    if (kj == 0) break;
    const h = t64Home(t, kj);
    const between = i <= j ? (h > i && h <= j) : (h > i || h <= j);
    if (between) continue;
    const si = t.base + (<usize>i << 4);
    store<u64>(si, load<u64>(sj, 8), 8);
    store<u64>(si, kj);
    i = j;
  }
  store<u64>(t.base + (<usize>i << 4), 0);
  t.count--;
  return true;
}
