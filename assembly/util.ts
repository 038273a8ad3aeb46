// Byte-order and checksum helpers. Wasm is little-endian; every wire field is
// network byte order (big-endian), so loads and stores go through bswap.

/**
 * A 16-bit network-order constant as a little-endian load sees it: wire fields
 * compared with a constant are loaded raw and compared with raw16(C), folded
 * at compile time (wasm has no byte-swap instruction: bench/README.md finding 6).
 */
@inline export function raw16(c: u32): u32 { return <u32>bswap<u16>(<u16>c); }

@inline export function ld8(p: usize): u32 { return <u32>load<u8>(p); }
@inline export function ld16(p: usize): u32 { return <u32>bswap<u16>(load<u16>(p)); }
@inline export function ld32(p: usize): u32 { return bswap<u32>(load<u32>(p)); }
@inline export function st8(p: usize, v: u32): void { store<u8>(p, <u8>v); }
@inline export function st16(p: usize, v: u32): void { store<u16>(p, bswap<u16>(<u16>v)); }
@inline export function st32(p: usize, v: u32): void { store<u32>(p, bswap<u32>(v)); }

/** A 48-bit MAC read as an integer, first octet most significant. */
@inline export function ldMac(p: usize): u64 {
  return (<u64>ld16(p) << 32) | <u64>ld32(p + 2);
}
@inline export function stMac(p: usize, m: u64): void {
  st16(p, <u32>(m >> 32));
  st32(p + 2, <u32>m);
}

/**
 * Ones' complement sum (RFC 1071) of `len` bytes at `p`, added to `acc`, not
 * folded. Sums 32-bit little-endian words into a 64-bit accumulator; the
 * byte-swap at fold time makes the result the big-endian sum (RFC 1071 §2(B):
 * the sum is byte-order independent up to a final swap).
 */
@inline export function csumAdd(acc: u64, p: usize, len: u32): u64 {
  let s: u64 = 0;
  let i: u32 = 0;
  while (i + 8 <= len) {
    const w = load<u64>(p + i);
    s += (w & 0xffffffff) + (w >> 32);
    i += 8;
  }
  if (i + 4 <= len) { s += <u64>load<u32>(p + i); i += 4; }
  if (i + 2 <= len) { s += <u64>load<u16>(p + i); i += 2; }
  if (i < len) s += <u64>load<u8>(p + i);
  // fold the little-endian sum to 16 bits, then swap to network order
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return acc + <u64>bswap<u16>(<u16>s);
}

/**
 * Folds a 64-bit accumulator of 16-bit big-endian words to 16 bits (not
 * complemented): the ones' complement sum with end-around carry (RFC 1071
 * §2). Each fold adds the value to itself rotated by half its width and
 * keeps the top half: the top half's sum plus the carry out of the bottom
 * half's, which is the end-around carry (Linux's csum_fold). Two folds
 * (64 -> 32 -> 16) of four instructions where the mask-shift-add folds took
 * four of three and were one dependent chain twice as long (issue 18,
 * session 10); the same result for every input (0 only for 0).
 */
@inline export function csumFold(s: u64): u32 {
  return csumFold32(<u32>((s + rotr<u64>(s, 32)) >> 32));
}

/**
 * csumFold for a sum below 2^32 (u32), one fold: an encapsulated copy's IPv4
 * header checksum (encap.ts, floodfast.ts) and csumFold's last step.
 */
@inline export function csumFold32(s: u32): u32 {
  return (s + rotr<u32>(s, 16)) >> 16;
}

/** 64-bit mixer (a murmur3/splitmix finaliser) for table hashes and the flow hash. */
@inline export function mix64(x: u64): u64 {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccd;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53;
  x ^= x >> 33;
  return x;
}

/**
 * Copies 64 bytes with four 16-byte SIMD moves: an IPv4 tunnel's prebuilt
 * outer header (at most 50 bytes) and the 12 inner MAC bytes written after it.
 */
@inline export function copy64(dst: usize, src: usize): void {
  v128.store(dst, v128.load(src));
  v128.store(dst + 16, v128.load(src + 16));
  v128.store(dst + 32, v128.load(src + 32));
  v128.store(dst + 48, v128.load(src + 48));
}

/** Copies 96 bytes with six 16-byte SIMD moves: the prebuilt outer header plus slack. */
@inline export function copy96(dst: usize, src: usize): void {
  v128.store(dst, v128.load(src));
  v128.store(dst + 16, v128.load(src + 16));
  v128.store(dst + 32, v128.load(src + 32));
  v128.store(dst + 48, v128.load(src + 48));
  v128.store(dst + 64, v128.load(src + 64));
  v128.store(dst + 80, v128.load(src + 80));
}
