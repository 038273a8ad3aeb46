/*
 * The native baseline of `npm run bench` (issue 2: "throughput within 0.9x of
 * the same work in native C on the same machine"). This is the data plane's
 * per-frame work transcribed from assembly/ into plain C, function by
 * function, with the same memory layout (one arena laid out in the order of
 * assembly/state.ts layoutFixed, cache-line aligned regions, the same table
 * slot formats), the same hashes (fibHome, mix64), the same open-addressing tables and
 * load, the same prebuilt tunnel templates, counters and output descriptors.
 * It is not a second implementation to trust: bench/dataplane.ts compares its
 * output bytes with the wasm's for the first batch of every case and refuses
 * to report a ratio when they differ.
 *
 * Built at bench time with `cc -O3 -march=native` (bench/dataplane.ts).
 * Usage: dpbench BASE CASE DUMP RUN_MS WARMUP_MS [--serve]
 *   BASE  the tables (written by bench/dataplane.ts buildWorld)
 *   CASE  one case: VN profile, tunnels, flood list, tags, frame pool
 *   DUMP  where the outputs of the first batch go, for the byte comparison
 * With --serve it prints {"ready":true} once the tables are built and the
 * dump written, then runs one round per line it reads on stdin, until EOF.
 * Each round prints one JSON line: {"case", "mpps", "nsPerFrame", "medianNsPerFrame",
 * "meanNsPerFrame", "batches", "frames", "outputs"}; mpps and nsPerFrame come
 * from the 10th-percentile batch time (bench/dataplane.ts timing()).
 *
 * Timing: like the wasm side, the frames of a batch are copied from the pool
 * into the slots outside the timed region; only process(256) is timed, batch
 * by batch.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t i32;

/* What the wasm force-inlines (@inline in assembly/), inlined here too. */
#define AI static inline __attribute__((always_inline))

/* The constants: the memory ABI (assembly/abi.ts, state.ts, tables/, the trace
 * record, the drop indices) and the wire formats (assembly/proto/), generated
 * from assembly/ by scripts/abi.mjs. */
#include "abi.h"
#include "wire.h"

/* ---------------------------------------------------------------- memory */

/* The arena stands in for the wasm linear memory: out-desc data pointers are
 * offsets into it, as in the wasm. */
static u8 *M;
static size_t heapTop = 64;
static const size_t ARENA = (size_t)1 << 30;

static u8 *alloc(size_t size) {
  size_t p = heapTop;
  heapTop += size + 64;
  if (heapTop > ARENA) { fprintf(stderr, "dpbench: arena exhausted\n"); exit(1); }
  size_t a = (p + 63) & ~(size_t)63;
  memset(M + a, 0, size);
  return M + a;
}

/* little-endian raw loads/stores (wasm load<T>/store<T>) */
static inline u16 rd16(const u8 *p) { u16 v; memcpy(&v, p, 2); return v; }
static inline u32 rd32(const u8 *p) { u32 v; memcpy(&v, p, 4); return v; }
static inline u64 rd64(const u8 *p) { u64 v; memcpy(&v, p, 8); return v; }
static inline void wr16(u8 *p, u16 v) { memcpy(p, &v, 2); }
static inline void wr32(u8 *p, u32 v) { memcpy(p, &v, 4); }
static inline void wr64(u8 *p, u64 v) { memcpy(p, &v, 8); }
/* byte-swapped constants: wire fields compared as they lie in memory */
#define RAW16(c) ((u32)__builtin_bswap16((u16)(c)))

/* assembly/util.ts */
static inline u32 ld16(const u8 *p) { return __builtin_bswap16(rd16(p)); }
static inline u32 ld32(const u8 *p) { return __builtin_bswap32(rd32(p)); }
static inline void st8(u8 *p, u32 v) { *p = (u8)v; }
static inline void st16(u8 *p, u32 v) { wr16(p, __builtin_bswap16((u16)v)); }
static inline void st32(u8 *p, u32 v) { wr32(p, __builtin_bswap32(v)); }
static inline u64 ldMac(const u8 *p) { return ((u64)ld16(p) << 32) | (u64)ld32(p + 2); }
static inline void stMac(u8 *p, u64 m) { st16(p, (u32)(m >> 32)); st32(p + 2, (u32)m); }
/* assembly/tables/index.ts: the MAC table keys a MAC by its 6 bytes as they
   lie in the frame, read little-endian (wasm has no byte swap; x86 loads it
   the same way). macRawOf converts the first-octet-most-significant form. */
static inline u64 macRaw(const u8 *p) { return rd64(p) & 0xffffffffffffULL; }
static inline u64 macRawOf(u64 m) { return __builtin_bswap64(m) >> 16; }

AI u64 csumAdd(u64 acc, const u8 *p, u32 len) {
  u64 s = 0;
  u32 i = 0;
  while (i + 8 <= len) {
    u64 w = rd64(p + i);
    s += (w & 0xffffffffu) + (w >> 32);
    i += 8;
  }
  if (i + 4 <= len) { s += rd32(p + i); i += 4; }
  if (i + 2 <= len) { s += rd16(p + i); i += 2; }
  if (i < len) s += p[i];
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return acc + (u64)__builtin_bswap16((u16)s);
}

static inline u32 csumFold(u64 s) {
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return (u32)s;
}

static inline u64 mix64(u64 x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

static inline void copy96(u8 *dst, const u8 *src) { memcpy(dst, src, 96); }

/* ---------------------------------------------------------------- state.ts */

static u8 *slotBase, *inDescBase, *outDescBase, *hdrBase, *scratch, *portKind, *vlanMap, *vnBase,
  *tunBase, *floodPool, *vtepBits, *vnPortTag, *globalCtr, *dropCtr, *portCtr, *vnCtr, *traceBase, *remoteIps, *prefixBase;
static u32 tunCap, floodPoolCap, prefixCount;

static void layoutFixed(u32 tunLog2, u32 floodCap) {
  slotBase = alloc((size_t)SLOT_SIZE * MAX_BATCH);
  inDescBase = alloc((size_t)IN_DESC * MAX_BATCH);
  outDescBase = alloc((size_t)OUT_DESC * MAX_OUT);
  hdrBase = alloc((size_t)HDR_SLOT * MAX_OUT);
  scratch = alloc(SCRATCH_SIZE);
  portKind = alloc(MAX_PORTS);
  vlanMap = alloc((size_t)MAX_PORTS * 4096 * 2);
  vnBase = alloc((size_t)MAX_VNS * VN_SIZE);
  tunCap = 1u << tunLog2;
  tunBase = alloc((size_t)tunCap * TUN_SIZE + 128);
  floodPoolCap = floodCap;
  floodPool = alloc((size_t)floodCap * 4);
  vtepBits = alloc((size_t)MAX_VNS * MAX_REMOTES / 8);
  vnPortTag = alloc((size_t)MAX_VNS * MAX_PORTS * 2);
  globalCtr = alloc(8 * 8);
  dropCtr = alloc((size_t)NUM_DROPS * 8);
  portCtr = alloc((size_t)MAX_PORTS * PORT_CTR * 8);
  vnCtr = alloc((size_t)MAX_VNS * VN_CTR * 8);
  traceBase = alloc((size_t)MAX_BATCH * TRACE_REC);
}

static inline u8 *vnPtr(u32 vn) { return vnBase + (size_t)vn * VN_SIZE; }
static inline u8 *tunPtr(u32 t) { return tunBase + (size_t)t * TUN_SIZE; }
static inline void ctrInc(u8 *base, u32 idx, u64 by) {
  u8 *p = base + ((size_t)idx << 3);
  wr64(p, rd64(p) + by);
}
/* state.ts tagOf: the tag VN vn uses on port now (0: the VAP is disconnected) */
static inline u32 tagOf(u32 vn, u32 port) { return rd16(vnPortTag + (((size_t)vn * MAX_PORTS + port) << 1)); }
static inline int vtepAllowed(u32 vn, u32 r) {
  size_t bit = (size_t)vn * MAX_REMOTES + r;
  return (vtepBits[bit >> 3] & (u8)(1u << (bit & 7))) != 0;
}

/* ---------------------------------------------------------------- tables */

typedef struct { u8 *base; u32 mask, count, limit, shift; } Table;
static Table macTab, ipTab, vniTab, remoteTab;

static void tabInit(Table *t, u32 log2, u32 slot) {
  u32 n = 1u << log2;
  t->base = alloc((size_t)n * slot);
  t->mask = n - 1;
  t->count = 0;
  t->limit = n - (n >> 3);
  t->shift = 64 - log2;
}

/* tables/hash64.ts fibHome: a MAC or VNI key's home, one multiply (Fibonacci hashing) */
static inline u32 fibHome(const Table *t, u64 key) { return (u32)((key * 0x9e3779b97f4a7c15ull) >> t->shift); }

/* tables/hash64.ts */
static inline u8 *t64FindFrom(const Table *t, u64 key, u32 i) {
  for (;;) {
    u8 *s = t->base + ((size_t)i << 4);
    u64 k = rd64(s);
    if (k == key) return s;
    if (k == 0) return 0;
    i = (i + 1) & t->mask;
  }
}
static inline u8 *t64Find(const Table *t, u64 key) { return t64FindFrom(t, key, fibHome(t, key)); }

static int t64Put(Table *t, u64 key, u32 val, u32 aux) {
  u32 i = fibHome(t, key);
  for (;;) {
    u8 *s = t->base + ((size_t)i << 4);
    u64 k = rd64(s);
    if (k == key || k == 0) {
      if (k == 0) {
        if (t->count >= t->limit) return 0;
        t->count++;
      }
      wr32(s + 8, val);
      wr32(s + 12, aux);
      wr64(s, key);
      return 1;
    }
    i = (i + 1) & t->mask;
  }
}

/* tables/haship.ts */
static inline u32 tipHome(const Table *t, u32 tag, u64 a0, u64 a1) {
  return (u32)mix64(a0 ^ mix64(a1 ^ (u64)tag)) & t->mask;
}

static inline u8 *tipFind(const Table *t, u32 tag, u64 a0, u64 a1) {
  u32 i = tipHome(t, tag, a0, a1);
  for (;;) {
    u8 *s = t->base + ((size_t)i << 5);
    u32 k = rd32(s);
    if (k == 0) return 0;
    if (k == tag && rd64(s + 8) == a0 && rd64(s + 16) == a1) return s;
    i = (i + 1) & t->mask;
  }
}

static int tipPut(Table *t, u32 tag, u64 a0, u64 a1, u64 val) {
  u32 i = tipHome(t, tag, a0, a1);
  for (;;) {
    u8 *s = t->base + ((size_t)i << 5);
    u32 k = rd32(s);
    if (k == 0) {
      if (t->count >= t->limit) return 0;
      t->count++;
      wr64(s + 8, a0);
      wr64(s + 16, a1);
      wr64(s + 24, val);
      wr32(s, tag);
      return 1;
    }
    if (k == tag && rd64(s + 8) == a0 && rd64(s + 16) == a1) { wr64(s + 24, val); return 1; }
    i = (i + 1) & t->mask;
  }
}

/* tables/index.ts */
static inline u64 macKey(u32 vn, u64 mac) { return ((u64)(vn + 1) << 48) | mac; }
/* tables/index.ts vniKey / vniKeyAt: the VNI's wire bytes read little-endian */
static inline u64 vniKey(u32 enc, u32 vni) { return ((u64)enc << 24) | (__builtin_bswap32(vni) >> 8); }
static inline u64 vniKeyAt(u32 enc, const u8 *p) { return ((u64)enc << 24) | (rd32(p) & 0xffffff); }
/* pipeline/prefetch.ts -> access lookups: each frame's two home slots */
static u32 macHomes[2 * MAX_BATCH];
static inline u32 macLookupHome(u32 vn, u64 mac, u32 home) {
  u64 key = macKey(vn, mac);
  u8 *s = t64FindFrom(&macTab, key, home != NO_HOME ? home : fibHome(&macTab, key));
  return s == 0 ? 0 : rd32(s + 8);
}

static u64 prefixLookup(u32 tag, const u8 *p, u32 alen) {
  for (u32 i = 0; i < prefixCount; i++) {
    u8 *e = prefixBase + ((size_t)i << 5);
    if (rd32(e) != tag) continue;
    u32 plen = rd32(e + 4);
    int ok = 1;
    u32 bits = plen;
    for (u32 b = 0; b < alen && bits > 0; b++) {
      u32 m = bits >= 8 ? 0xff : (0xffu << (8 - bits)) & 0xff;
      if ((((u32)p[b] ^ (u32)e[8 + b]) & m) != 0) { ok = 0; break; }
      bits = bits >= 8 ? bits - 8 : 0;
    }
    if (ok) return rd64(e + 24);
  }
  return UINT64_MAX;
}

static inline u64 ip4Lookup(u32 vn, const u8 *p) {
  u8 *s = tipFind(&ipTab, vn + 1, (u64)rd32(p), 0);
  if (s != 0) return rd64(s + 24);
  return prefixCount == 0 ? UINT64_MAX : prefixLookup(vn + 1, p, 4);
}

static inline u64 ip6Lookup(u32 vn, const u8 *p) {
  u8 *s = tipFind(&ipTab, (vn + 1) | IP6_TAG, rd64(p), rd64(p + 8));
  if (s != 0) return rd64(s + 24);
  return prefixCount == 0 ? UINT64_MAX : prefixLookup((vn + 1) | IP6_TAG, p, 16);
}

/* ---------------------------------------------------------------- pipeline/emit.ts, common.ts */

static u32 outCount, curIn, curPort, consumed, worstFanout = 64;
static i32 curVn = -1;
int traceOn = 0; /* external, as the wasm's mutable global: never folded away */

static inline void setCur(u32 port, i32 vn) { curPort = port; curVn = vn; }
static inline void trace(u32 field, u32 v) {
  if (traceOn) wr32(traceBase + (size_t)curIn * TRACE_REC + field, v);
}

static void drop(u32 reason) {
  ctrInc(dropCtr, reason, 1);
  ctrInc(globalCtr, GC_DROPPED, 1);
  ctrInc(portCtr + ((size_t)curPort * PORT_CTR << 3), PC_DROPS, 1);
  if (curVn >= 0) ctrInc(vnCtr + ((size_t)curVn * VN_CTR << 3), VC_DROPS, 1);
  trace(TR_DROP, reason + 1);
}

static void dropNoPort(u32 reason) {
  ctrInc(dropCtr, reason, 1);
  ctrInc(globalCtr, GC_DROPPED, 1);
  trace(TR_DROP, reason + 1);
}

static inline u8 *nextHdr(void) { return hdrBase + (size_t)outCount * HDR_SLOT; }

static inline void commit(u32 port, u32 hdrLen, const u8 *data, u32 dataLen, u32 vn) {
  u8 *d = outDescBase + (size_t)outCount * OUT_DESC;
  /* the six fields as two 8-byte stores, as emit.ts commit writes them */
  wr64(d, (u64)(port & 0xffff) | (u64)(hdrLen & 0xffff) << 16 | (u64)(u32)(data - M) << 32);
  wr64(d + 8, (u64)(dataLen & 0xffff) | (u64)(curIn & 0xffff) << 16 | (u64)vn << 32);
  outCount++;
  u8 *pc = portCtr + ((size_t)port * PORT_CTR << 3);
  ctrInc(pc, PC_TX_FRAMES, 1);
  ctrInc(pc, PC_TX_BYTES, (u64)(hdrLen + dataLen));
  ctrInc(vnCtr + ((size_t)vn * VN_CTR << 3), VC_TX, 1);
}

static inline void emitTagged(u32 port, u32 tag, u32 pcpDei, const u8 *macs, const u8 *data, u32 dataLen, u32 vn) {
  u8 *h = nextHdr();
  u32 tci = ((pcpDei & 0xf000) | tag) & 0xffff;
  wr64(h, rd64(macs));
  /* the source MAC's tail, 0x8100 and the TCI as one 8-byte store (emit.ts emitTagged) */
  wr64(h + 8, (u64)rd32(macs + 8) | (u64)(RAW16(ETHERTYPE_VLAN) | (((tci << 8) | (tci >> 8)) & 0xffff) << 16) << 32);
  commit(port, 16, data, dataLen, vn);
}

AI u32 flowHash(const u8 *macs, u32 etype, const u8 *l3, u32 l3len) {
  u64 h = rd64(macs) ^ ((u64)rd32(macs + 8) << 21);
  if (etype == ETHERTYPE_IPV4 && l3len >= 20) {
    h = mix64(h ^ rd64(l3 + 12));
    u32 ihl = ((u32)l3[0] & 0xf) << 2;
    u32 proto = l3[9];
    u32 frag = ld16(l3 + 6) & 0x3fff;
    if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP) && frag == 0 && ihl >= 20 && l3len >= ihl + 4) {
      h ^= ((u64)rd32(l3 + ihl) * 0x9e3779b97f4a7c15ull) ^ proto;
    }
  } else if (etype == ETHERTYPE_IPV6 && l3len >= 40) {
    h = mix64(h ^ rd64(l3 + 8) ^ (rd64(l3 + 16) << 1) ^ (rd64(l3 + 24) << 2) ^ (rd64(l3 + 32) << 3));
    u32 nh = l3[6];
    if ((nh == IPPROTO_TCP || nh == IPPROTO_UDP) && l3len >= 44) {
      h ^= ((u64)rd32(l3 + 40) * 0x9e3779b97f4a7c15ull) ^ nh;
    }
  }
  h = mix64(h);
  return (u32)(h ^ (h >> 32));
}

/* ---------------------------------------------------------------- pipeline/encap.ts */

AI void emitEncap(u32 t, const u8 *p, u32 len, u32 pcp, u32 hash, u32 vn) {
  u8 *e = tunPtr(t);
  u8 *h = nextHdr();
  u32 hl = e[0];
  u32 kind = e[1];
  /* encap.ts: an IPv4 tunnel's header and the inner MACs fit in 64 bytes */
  if (kind == TK_VXLAN4 || kind == TK_GENEVE4 || kind == TK_NVGRE4) memcpy(h, e + TUN_HDR, 64);
  else copy96(h, e + TUN_HDR);
  wr64(h + hl, rd64(p));
  wr32(h + hl + 8, rd32(p + 8));
  const u8 *data = p + 16;
  u32 dataLen = len - 16;
  u32 innerLen = len - 4;
  int fixed = (e[8] & 1) != 0;
  u32 tos = fixed ? 0 : (pcp << 5);
  u32 sport = SPORT_BASE | (hash & SPORT_MASK);
  if (kind == TK_VXLAN4 || kind == TK_GENEVE4 || kind == TK_NVGRE4) {
    u32 tot;
    if (kind == TK_NVGRE4) {
      tot = 28 + innerLen;
      st8(h + 41, hash >> 8);
    } else {
      tot = 36 + innerLen;
      st16(h + 34, sport);
      st16(h + 38, 16 + innerLen);
    }
    if (!fixed) st8(h + 15, tos);
    st16(h + 16, tot);
    u32 sum = csumFold((u64)rd16(e + 2) + (u64)tot + (u64)tos);
    st16(h + 24, ~sum & 0xffff);
  } else {
    u32 flow = hash & 0xfffff;
    if (!fixed) {
      st8(h + 14, 0x60 | (tos >> 4));
      st8(h + 15, ((tos & 0xf) << 4) | (flow >> 16));
    } else {
      st8(h + 15, ((u32)h[15] & 0xf0) | (flow >> 16));
    }
    st16(h + 16, flow & 0xffff);
    if (kind == TK_NVGRE6) {
      st16(h + 18, 8 + innerLen);
      st8(h + 61, hash >> 8);
    } else {
      u32 ulen = 16 + innerLen;
      st16(h + 18, ulen);
      st16(h + 54, sport);
      st16(h + 58, ulen);
      u64 s = (u64)rd32(e + 4) + (u64)ulen;
      s = csumAdd(s, h + 54, 28);
      s = csumAdd(s, data, dataLen);
      u32 c = ~csumFold(s) & 0xffff;
      if (c == 0) c = 0xffff;
      st16(h + 60, c);
    }
  }
  commit(rd16(e + 10), hl + 12, data, dataLen, vn);
}

/* ---------------------------------------------------------------- pipeline/suppress.ts */

static void arpReply(u32 port, u32 tci, const u8 *p, u64 mac, u32 vn) {
  u8 *h = nextHdr();
  const u8 *a = p + 18;
  memcpy(h, p + 6, 6);
  stMac(h + 6, mac);
  st16(h + 12, ETHERTYPE_VLAN);
  st16(h + 14, tci);
  st16(h + 16, ETHERTYPE_ARP);
  u8 *r = h + 18;
  st32(r, 0x00010800);
  st32(r + 4, 0x06040000 | ARP_OP_REPLY);
  stMac(r + ARP_SHA, mac);
  wr32(r + ARP_SPA, rd32(a + ARP_TPA));
  memcpy(r + 18, a + ARP_SHA, 6);
  wr32(r + ARP_TPA, rd32(a + ARP_SPA));
  memset(h + 46, 0, 18);
  commit(port, 64, p, 0, vn);
}

static int isDadOrNotNs(const u8 *l3, u32 l3len) {
  if (l3len < 40 + 24) return 1;
  if ((u32)l3[6] != IPPROTO_ICMPV6 || (u32)l3[7] != 255) return 1;
  if ((u32)l3[40] != ND_NS || (u32)l3[41] != 0) return 1;
  u32 plen = ld16(l3 + 4);
  if (plen < 24 || 40u + plen > l3len) return 1;
  if (l3[48] == 0xff) return 1;
  if (rd64(l3 + 8) == 0 && rd64(l3 + 16) == 0) return 1;
  u64 s = (u64)plen + (u64)IPPROTO_ICMPV6;
  s = csumAdd(s, l3 + 8, 32);
  s = csumAdd(s, l3 + 40, plen);
  return csumFold(s) != 0xffff;
}

static void ndReply(u32 port, u32 tci, const u8 *p, u64 mac, u32 vn) {
  u8 *h = nextHdr();
  const u8 *ns = p + 18;
  memcpy(h, p + 6, 6);
  stMac(h + 6, mac);
  st16(h + 12, ETHERTYPE_VLAN);
  st16(h + 14, tci);
  st16(h + 16, ETHERTYPE_IPV6);
  u8 *ip = h + 18;
  st32(ip, 0x60000000);
  st16(ip + 4, NA_LEN);
  ip[6] = (u8)IPPROTO_ICMPV6;
  ip[7] = 255;
  memcpy(ip + 8, ns + 48, 16);
  memcpy(ip + 24, ns + 8, 16);
  u8 *ic = ip + 40;
  st32(ic, ND_NA << 24);
  st32(ic + 4, NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE);
  memcpy(ic + 8, ns + 48, 16);
  ic[24] = (u8)ND_OPT_TARGET_LLADDR;
  ic[25] = 1;
  stMac(ic + 26, mac);
  u64 s = (u64)NA_LEN + (u64)IPPROTO_ICMPV6;
  s = csumAdd(s, ip + 8, 32);
  s = csumAdd(s, ic, NA_LEN);
  st16(ic + 2, ~csumFold(s) & 0xffff);
  commit(port, 18 + 40 + NA_LEN, p, 0, vn);
}

/* ---------------------------------------------------------------- pipeline/access.ts */

static void flood(u32 port, u32 tci, const u8 *p, u32 len, u32 vn, u8 *v, u32 etype, const u8 *l3, u32 l3len) {
  trace(TR_ACTION, AC_FLOOD);
  u32 before = outCount;
  u32 n = rd32(v + VN_FLOOD_N);
  if (n > 0) {
    u32 hash = flowHash(p, etype, l3, l3len);
    u32 pcp = tci >> 13;
    u8 *list = floodPool + ((size_t)rd32(v + VN_FLOOD_PTR) << 2);
    for (u32 i = 0; i < n; i++) emitEncap(rd32(list + ((size_t)i << 2)), p, len, pcp, hash, vn);
  }
  u32 nl = v[VN_NLOCAL];
  for (u32 i = 0; i < nl; i++) {
    u32 e = rd32(v + VN_LOCAL + ((size_t)i << 2));
    u32 lp = e >> 16;
    if (lp == port) continue;
    emitTagged(lp, e & 0xfff, tci, p, p + 16, len - 16, vn);
  }
  if (outCount == before) { drop(D_FLOOD_EMPTY); return; }
  ctrInc(vnCtr + ((size_t)vn * VN_CTR << 3), VC_FLOOD, 1);
}

/* access.ts ip6Owned: bound to the MAC, or its fe80::/64 modified EUI-64 address (RFC 4291 App. A) */
static int ip6Owned(u32 vn, const u8 *p, u64 src) {
  if (rd32(p) == 0x80fe && rd32(p + 4) == 0) {
    u64 eui = ((src >> 24) << 40) | ((u64)0xfffe << 24) | (src & 0xffffff);
    if (__builtin_bswap64(rd64(p + 8)) == (eui ^ ((u64)0x02 << 56))) return 1;
  }
  return ip6Lookup(vn, p) == src;
}

#define SRC_OK 0xffffffffu

/* access.ts sourceIpCheck: SRC_OK or the drop reason */
static u32 sourceIpCheck(u32 vn, u64 src, u32 etype, const u8 *l3, u32 l3len) {
  if (etype == ETHERTYPE_IPV4) {
    if (l3len < 20) return D_TRUNCATED;
    if (rd32(l3 + 12) == 0) return SRC_OK;
    return ip4Lookup(vn, l3 + 12) == src ? SRC_OK : D_SPOOFED_IP;
  }
  if (etype == ETHERTYPE_ARP) {
    if (l3len < ARP_LEN) return D_TRUNCATED;
    if (ldMac(l3 + ARP_SHA) != src) return D_SPOOFED_MAC;
    if (rd32(l3 + ARP_SPA) == 0) return SRC_OK;
    return ip4Lookup(vn, l3 + ARP_SPA) == src ? SRC_OK : D_SPOOFED_IP;
  }
  if (etype == ETHERTYPE_IPV6) {
    if (l3len < 40) return D_TRUNCATED;
    u64 a0 = rd64(l3 + 8);
    u64 a1 = rd64(l3 + 16);
    if (!(a0 == 0 && a1 == 0) && !ip6Owned(vn, l3 + 8, src)) return D_SPOOFED_IP;
    if ((u32)l3[6] == IPPROTO_ICMPV6 && l3len >= 40 + 24 && (u32)l3[40] == ND_NA) {
      if (!ip6Owned(vn, l3 + 48, src)) return D_SPOOFED_IP;
    }
    return SRC_OK;
  }
  return SRC_OK;
}

/* ---------------------------------------------------------------- pipeline/acl.ts (issue 14)
 * The case's VN ACL as assembly/pipeline/acl.ts lays it out and evaluates it:
 * the from-VNIC list alone (a "both" rule is in it), each rule's tests as
 * the lanes of two 4 x u32 vector compares before one branch (GCC vector
 * extensions here, wasm SIMD there): (F & MASK) - LO <= SPAN lane by lane
 * for F = [family | protocol << 8, source port, destination port, ICMP
 * type], and the pre-masked prefixes. Loaded from the
 * optional block after a case's frames (bench/dataplane.ts writeAcl). Only
 * the from-VNIC direction of the access path is mirrored: the bench's ACL
 * case is encapsulation. */
#define ACL_MAX 4096u
#define ACL_HAS_PROTO 1u
#define ACL_HAS_SPORT 2u
#define ACL_HAS_DPORT 4u
#define ACL_HAS_ICMP 8u
#define ACL_ANY 0xffffffffu
#define ACL_UNKNOWN 0x10000u
#define ACL_PASS (-1)
#define ACL_DEFAULT 0x10000
#define ACL_OK 0xffffffffu
#define D_ACL_DENY_INDEX 44u /* assembly/drops.ts acl-deny */
typedef u32 u32x4 __attribute__((vector_size(16)));
typedef struct { u32x4 mask, lo, span, mask4, net4; u8 src[16], srcMask[16], dst[16], dstMask[16]; u32 index, action, pad[2]; } AclRule;
static AclRule aclFrom[ACL_MAX] __attribute__((aligned(64)));
static u64 aclHits[ACL_MAX], aclDefaultHits, aclDenyDrops;
static u32 aclNFrom, aclDeny, aclDirs, aclNTo;

static void aclPrefix(u8 *net, u8 *mask, const u8 *a, u32 plen) {
  for (u32 b = 0; b < 16; b++) {
    u32 bits = plen >= (b + 1) * 8 ? 8 : plen > b * 8 ? plen - b * 8 : 0;
    mask[b] = (u8)((0xff00u >> bits) & 0xff);
    net[b] = a[b] & mask[b];
  }
}

static inline int allTrue(u32x4 m) { return m[0] & m[1] & m[2] & m[3] & 1; }

static int aclScan4(u32x4 f, u32x4 a) {
  for (u32 k = 0; k < aclNFrom; k++) {
    const AclRule *r = &aclFrom[k];
    u32x4 ok = (((f & r->mask) - r->lo) <= r->span) & ((a & r->mask4) == r->net4);
    if (allTrue(ok)) return (int)k;
  }
  return -1;
}

static int aclScan6(u32x4 f, const u8 *a) {
  u32x4 s, t;
  memcpy(&s, a, 16);
  memcpy(&t, a + 16, 16);
  for (u32 k = 0; k < aclNFrom; k++) {
    const AclRule *r = &aclFrom[k];
    u32x4 sm, sn, tm, tn;
    memcpy(&sm, r->srcMask, 16); memcpy(&sn, r->src, 16); memcpy(&tm, r->dstMask, 16); memcpy(&tn, r->dst, 16);
    u32x4 ok = (((f & r->mask) - r->lo) <= r->span) & ((s & sm) == sn) & ((t & tm) == tn);
    if (allTrue(ok)) return (int)k;
  }
  return -1;
}

/* acl.ts aclEval (from the VNIC): the deciding rule's index, ACL_DEFAULT, ACL_PASS, or -2/-3 (an unreadable header) */
static int aclEval(u32 etype, const u8 *l3, u32 l3len) {
  if ((aclDirs & 1) == 0) return ACL_PASS;
  u32 proto, l4len = 0;
  const u8 *l4 = 0;
  int is4 = etype == ETHERTYPE_IPV4;
  if (is4) {
    if (l3len < 20) return -2;
    u32 vi = l3[0], ihl = (vi & 0xf) << 2;
    if ((vi >> 4) != 4 || ihl < 20) return -3;
    if (ihl > l3len) return -2;
    proto = l3[9];
    if ((rd16(l3 + 6) & 0xff1f) == 0) { l4 = l3 + ihl; l4len = l3len - ihl; }
  } else if (etype == ETHERTYPE_IPV6) {
    if (l3len < 40) return -2;
    if ((l3[0] >> 4) != 6) return -3;
    proto = l3[6]; l4 = l3 + 40; l4len = l3len - 40;
    if (proto == IPPROTO_ICMPV6 && l4len >= 1 && l4[0] >= 133 && l4[0] <= 137) return ACL_PASS;
  } else return ACL_PASS;
  u32 sport = ACL_UNKNOWN, dport = ACL_UNKNOWN, itype = ACL_UNKNOWN;
  if (l4) {
    if (l4len >= 4) { sport = ld16(l4); dport = ld16(l4 + 2); }
    if (l4len >= 1) itype = l4[0];
  }
  u32x4 f = { (is4 ? 4u : 6u) | (proto << 8), sport, dport, itype };
  int k = is4 ? aclScan4(f, (u32x4){ rd32(l3 + 12), rd32(l3 + 16), 0, 0 }) : aclScan6(f, l3 + 8);
  if (k >= 0) return aclFrom[k].action ? (int)aclFrom[k].index : ACL_PASS;
  return aclDeny ? ACL_DEFAULT : ACL_PASS;
}

/* acl.ts aclCheck: ACL_OK or the drop reason, the deny counted on its rule */
static u32 aclCheck(u32 etype, const u8 *l3, u32 l3len) {
  int k = aclEval(etype, l3, l3len);
  if (k == ACL_PASS) return ACL_OK;
  if (k == -2) return D_TRUNCATED;
  if (k == -3) return D_BAD_IP_HEADER;
  if (k == ACL_DEFAULT) aclDefaultHits++; else aclHits[k]++;
  return D_ACL_DENY_INDEX;
}

/* common.ts drop for acl-deny, whose index lies past this mirror's drop table */
static void aclDrop(u32 reason) {
  if (reason != D_ACL_DENY_INDEX) { drop(reason); return; }
  aclDenyDrops++;
  ctrInc(globalCtr, GC_DROPPED, 1);
  ctrInc(portCtr + ((size_t)curPort * PORT_CTR << 3), PC_DROPS, 1);
  if (curVn >= 0) ctrInc(vnCtr + ((size_t)curVn * VN_CTR << 3), VC_DROPS, 1);
}

/* The optional ACL block after a case's frames: u32 default (1 deny), u32 n, then per rule
 * u32 family, dirs, action, has, proto, icmpType, sLo, sHi, dLo, dHi, srcPlen (0xff none),
 * 16 bytes, dstPlen, 16 bytes (host/dataplane/acl.ts CompiledRule). acl.ts setAclRule's layout. */
static void loadAcl(const u8 *p, const u8 *end) {
  aclNFrom = 0; aclDeny = 0; aclDirs = 0; aclNTo = 0;
  if (end - p < 8) return;
  aclDeny = rd32(p);
  u32 n = rd32(p + 4);
  p += 8;
  if (n > ACL_MAX || (size_t)(end - p) < (size_t)n * 80) { fprintf(stderr, "dpbench: bad ACL block\n"); exit(1); }
  for (u32 k = 0; k < n; k++, p += 80) {
    u32 family = rd32(p), dirs = rd32(p + 4), has = rd32(p + 12), proto = rd32(p + 16);
    if (dirs & 2) aclNTo++;
    if ((dirs & 1) == 0) continue;
    AclRule *r = &aclFrom[aclNFrom++];
    memset(r, 0, sizeof *r);
    u32 pm = (family ? 0xffu : 0) | ((has & ACL_HAS_PROTO) ? 0xff00u : 0);
    u32 sLo = rd32(p + 24), sHi = rd32(p + 28), dLo = rd32(p + 32), dHi = rd32(p + 36);
    int hs = (has & ACL_HAS_SPORT) != 0, hd = (has & ACL_HAS_DPORT) != 0, hi = (has & ACL_HAS_ICMP) != 0;
    r->mask = (u32x4){ pm, ACL_ANY, ACL_ANY, ACL_ANY };
    r->lo = (u32x4){ (family | (proto << 8)) & pm, hs ? sLo : 0, hd ? dLo : 0, hi ? rd32(p + 20) : 0 };
    r->span = (u32x4){ 0, hs ? sHi - sLo : ACL_ANY, hd ? dHi - dLo : ACL_ANY, hi ? 0 : ACL_ANY };
    u32 sp = rd32(p + 40), dp = rd32(p + 60);
    if (sp != 0xff) aclPrefix(r->src, r->srcMask, p + 44, sp);
    if (dp != 0xff) aclPrefix(r->dst, r->dstMask, p + 64, dp);
    r->mask4 = (u32x4){ rd32(r->srcMask), rd32(r->dstMask), 0, 0 };
    r->net4 = (u32x4){ rd32(r->src), rd32(r->dst), 0, 0 };
    r->index = k;
    r->action = rd32(p + 8);
  }
  aclDirs = (aclNFrom || aclDeny) ? 1 : 0;
}

static void accessFrame(u32 port, const u8 *p, u32 len) {
  setCur(port, -1);
  if (len < DOT1Q_HLEN) { drop(D_TRUNCATED); return; }
  u32 tpid = ld16(p + 12);
  if (tpid == ETHERTYPE_QINQ || tpid == ETHERTYPE_QINQ_OLD) { drop(D_DOUBLE_TAGGED); return; }
  if (tpid != ETHERTYPE_VLAN) { drop(D_UNTAGGED); return; }
  u32 tci = ld16(p + 14);
  u32 vid = tci & 0x0fff;
  u32 etype = ld16(p + 16);
  if (etype == ETHERTYPE_VLAN || etype == ETHERTYPE_QINQ || etype == ETHERTYPE_QINQ_OLD) { drop(D_DOUBLE_TAGGED); return; }
  if (vid == 0) { drop(D_PRIORITY_TAGGED); return; }
  u32 vn1 = rd16(vlanMap + (((size_t)port << 12) + vid) * 2);
  if (vn1 == 0) { drop(D_UNKNOWN_VID); return; }
  u32 vn = vn1 - 1;
  setCur(port, (i32)vn);
  trace(TR_VN, vn1);
  u8 *v = vnPtr(vn);
  ctrInc(vnCtr + ((size_t)vn * VN_CTR << 3), VC_RX, 1);
  if (len - DOT1Q_HLEN > (u32)rd16(v + VN_MTU)) { drop(D_MTU_EXCEEDED); return; }
  u32 flags = v[VN_FLAGS];
  const u8 *l3 = p + DOT1Q_HLEN;
  u32 l3len = len - DOT1Q_HLEN;

  const u32 *hh = macHomes + 2 * (size_t)curIn;
  u32 sv = macLookupHome(vn, macRaw(p + 6), hh[0]);
  trace(TR_SRC, sv);
  if ((sv & MK_KIND) == MK_LOCAL && (sv & ML_ACTIVE) == 0) { drop(D_VNIC_INACTIVE); return; }
  if (flags & VNF_PORTSEC) {
    if ((sv & MK_KIND) != MK_LOCAL || ((sv >> ML_PORT_SHIFT) & ML_PORT_MASK) != port) { drop(D_SPOOFED_MAC); return; }
    u32 why = sourceIpCheck(vn, ldMac(p + 6), etype, l3, l3len);
    if (why != SRC_OK) { drop(why); return; }
  }

  if (flags & VNF_ARPSUP) {
    if (etype == ETHERTYPE_ARP && l3len >= ARP_LEN && ld16(l3 + ARP_OP) == ARP_OP_REQUEST
        && ld16(l3) == 1 && ld16(l3 + 2) == ETHERTYPE_IPV4 && ld16(l3 + 4) == 0x0604
        && rd32(l3 + ARP_SPA) != rd32(l3 + ARP_TPA)) {
      u64 m = ip4Lookup(vn, l3 + ARP_TPA);
      if (m != UINT64_MAX) {
        trace(TR_LOOKUP, LK_SUPPRESSED);
        trace(TR_ACTION, AC_REPLY);
        arpReply(port, tci, p, m, vn);
        return;
      }
    } else if (etype == ETHERTYPE_IPV6 && !isDadOrNotNs(l3, l3len)) {
      u64 m = ip6Lookup(vn, l3 + 40 + 8);
      if (m != UINT64_MAX) {
        trace(TR_LOOKUP, LK_SUPPRESSED);
        trace(TR_ACTION, AC_REPLY);
        ndReply(port, tci, p, m, vn);
        return;
      }
    }
  }

  if (aclDirs & 1) { u32 why = aclCheck(etype, l3, l3len); if (why != ACL_OK) { aclDrop(why); return; } } /* acl.ts, from the VNIC */

  u32 pcp = tci >> 13;
  u64 dst = macRaw(p);
  if (dst & 1) { trace(TR_LOOKUP, LK_BROADCAST); flood(port, tci, p, len, vn, v, etype, l3, l3len); return; }
  u32 dv = macLookupHome(vn, dst, hh[1]);
  trace(TR_DST, dv);
  u32 kind = dv & MK_KIND;
  if (kind == MK_REMOTE) {
    trace(TR_LOOKUP, LK_REMOTE);
    trace(TR_ACTION, AC_ENCAP);
    emitEncap(dv & MR_TUN_MASK, p, len, pcp, flowHash(p, etype, l3, l3len), vn);
    ctrInc(vnCtr + ((size_t)vn * VN_CTR << 3), VC_ENCAP, 1);
    return;
  }
  if (kind == MK_LOCAL) {
    trace(TR_LOOKUP, LK_LOCAL);
    u32 dport = (dv >> ML_PORT_SHIFT) & ML_PORT_MASK;
    if (dport == port) { drop(D_SAME_PORT); return; }
    u32 dtag = tagOf(vn, dport);
    if ((dv & ML_ACTIVE) == 0 || dtag == 0) { drop(D_DST_INACTIVE); return; }
    trace(TR_ACTION, AC_HAIRPIN);
    u32 vp = v[VN_PCP]; /* qos.ts deliverPcp: qos.pcp, else the frame's own */
    emitTagged(dport, dtag, vp ? (vp - 1) << 13 : tci, p, p + 16, len - 16, vn);
    return;
  }
  trace(TR_LOOKUP, LK_UNKNOWN);
  flood(port, tci, p, len, vn, v, etype, l3, l3len);
}

/* ---------------------------------------------------------------- pipeline/underlay.ts */

static u64 ulMac, ulIp0, ulIp1;
static int ulIs6;
static u32 vxlanPort = 4789, genevePort = 6081;

static void floodLocal(u32 vn, u8 *v, const u8 *inner, u32 ilen, u32 pcp) {
  trace(TR_ACTION, AC_FLOOD);
  u32 before = outCount;
  u32 nl = v[VN_NLOCAL];
  for (u32 i = 0; i < nl; i++) {
    u32 e = rd32(v + VN_LOCAL + ((size_t)i << 2));
    emitTagged(e >> 16, e & 0xfff, pcp, inner, inner + 12, ilen - 12, vn);
  }
  if (outCount == before) { drop(D_FLOOD_EMPTY); return; }
  ctrInc(vnCtr + ((size_t)vn * VN_CTR << 3), VC_DECAP, 1);
  ctrInc(vnCtr + ((size_t)vn * VN_CTR << 3), VC_FLOOD, 1);
}

/* underlay.ts ip4Sum20: the folded sum of a 20-byte IPv4 header, straight-line */
static inline u32 ip4Sum20(const u8 *ip) {
  u64 s = ((u64)rd32(ip) + (u64)rd32(ip + 4)) + ((u64)rd32(ip + 8) + (u64)rd32(ip + 12)) + (u64)rd32(ip + 16);
  s = (s & 0xffffffffu) + (s >> 32);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return __builtin_bswap16((u16)s);
}

static void underlayFrame(u32 port, const u8 *p, u32 len) {
  setCur(port, -1);
  if (len < 14) { drop(D_TRUNCATED); return; }
  if (macRaw(p) != ulMac) { drop(D_NOT_OUR_MAC); return; }
  u32 et = ld16(p + 12);
  if (et == ETHERTYPE_VLAN || et == ETHERTYPE_QINQ || et == ETHERTYPE_QINQ_OLD) { drop(D_UNDERLAY_TAGGED); return; }
  const u8 *ip = p + 14;
  const u8 *l4;
  u32 l4len, proto, srcTag;
  u64 s0, s1;
  const u8 *addrs; /* source+destination addresses, for the UDP pseudo-header */
  u32 alen;
  u32 tclass; /* the outer DSCP/ECN byte (IPv4 TOS, IPv6 traffic class) */
  if (et == ETHERTYPE_IPV4) {
    if (ulIs6) { drop(D_NOT_OUR_IP); return; }
    if (len < 14 + 20) { drop(D_TRUNCATED); return; }
    u32 vi = ip[0];
    u32 ihl = (vi & 0xf) << 2;
    u32 tot = ld16(ip + 2);
    if ((vi >> 4) != 4 || ihl < 20 || tot < ihl) { drop(D_BAD_IP_HEADER); return; }
    if (14u + tot > len) { drop(D_TRUNCATED); return; }
    if (ihl == 20 ? ip4Sum20(ip) != 0xffff : csumFold(csumAdd(0, ip, ihl)) != 0xffff) { drop(D_BAD_IP_CHECKSUM); return; }
    if ((u64)rd32(ip + 16) != ulIp0) { drop(D_NOT_OUR_IP); return; }
    u32 frag = ld16(ip + 6);
    if ((frag & IP4_MF) != 0 || (frag & IP4_OFFMASK) != 0) { drop(D_FRAGMENT); return; }
    proto = ip[9];
    l4 = ip + ihl;
    l4len = tot - ihl;
    srcTag = 4;
    s0 = (u64)rd32(ip + 12);
    s1 = 0;
    addrs = ip + 12;
    alen = 8;
    tclass = ip[1];
  } else if (et == ETHERTYPE_IPV6) {
    if (!ulIs6) { drop(D_NOT_OUR_IP); return; }
    if (len < 14 + 40) { drop(D_TRUNCATED); return; }
    if (((u32)ip[0] >> 4) != 6) { drop(D_BAD_IP_HEADER); return; }
    u32 plen = ld16(ip + 4);
    if (54u + plen > len) { drop(D_TRUNCATED); return; }
    if (rd64(ip + 24) != ulIp0 || rd64(ip + 32) != ulIp1) { drop(D_NOT_OUR_IP); return; }
    proto = ip[6];
    if (proto == IPPROTO_FRAGMENT) { drop(D_FRAGMENT); return; }
    l4 = ip + 40;
    l4len = plen;
    srcTag = 6;
    s0 = rd64(ip + 8);
    s1 = rd64(ip + 16);
    addrs = ip + 8;
    alen = 32;
    tclass = ((u32)(ip[0] & 0xf) << 4) | (ip[1] >> 4);
  } else { drop(D_NOT_IP); return; }

  u32 enc, vni, ilen;
  const u8 *inner;
  if (proto == IPPROTO_UDP) {
    if (l4len < 8) { drop(D_BAD_UDP_LENGTH); return; }
    u32 ul = ld16(l4 + 4);
    if (ul != l4len) { drop(D_BAD_UDP_LENGTH); return; }
    u32 dport = ld16(l4 + 2);
    if (dport != vxlanPort && dport != genevePort) { drop(D_NOT_OVERLAY); return; }
    if (rd16(l4 + 6) != 0) {
      u64 pseudo = csumAdd((u64)IPPROTO_UDP + (u64)l4len, addrs, alen);
      if (csumFold(csumAdd(pseudo, l4, l4len)) != 0xffff) { drop(D_BAD_UDP_CHECKSUM); return; }
    }
    const u8 *t = l4 + 8;
    u32 tl = l4len - 8;
    if (dport == vxlanPort) {
      if (tl < 8) { drop(D_TRUNCATED); return; }
      if (((u32)t[0] & VXLAN_FLAG_I) == 0) { drop(D_VXLAN_FLAGS); return; }
      enc = ENC_VXLAN;
      vni = ld32(t + 4) >> 8;
      inner = t + 8;
      ilen = tl - 8;
    } else {
      if (tl < 8) { drop(D_TRUNCATED); return; }
      u32 b0 = t[0];
      u32 b1 = t[1];
      if ((b0 >> 6) != 0) { drop(D_GENEVE_VERSION); return; }
      if (b1 & GENEVE_FLAG_O) { drop(D_GENEVE_OAM); return; }
      if (ld16(t + 2) != ETHERTYPE_TEB) { drop(D_GENEVE_PROTOCOL); return; }
      u32 optLen = (b0 & 0x3f) << 2;
      if (8u + optLen > tl) { drop(D_GENEVE_OPTION_LENGTH); return; }
      u32 o = 0;
      int critical = 0;
      while (o < optLen) {
        if (o + 4 > optLen) break;
        u32 ot = t[8 + o + 2];
        if (ot & GENEVE_OPT_CRITICAL) critical = 1;
        o += 4 + (((u32)t[8 + o + 3] & 0x1f) << 2);
      }
      if (o != optLen) { drop(D_GENEVE_OPTION_LENGTH); return; }
      if (critical || (b1 & GENEVE_FLAG_C) != 0) { drop(D_GENEVE_CRITICAL_OPTION); return; }
      enc = ENC_GENEVE;
      vni = ld32(t + 4) >> 8;
      inner = t + 8 + optLen;
      ilen = tl - 8 - optLen;
    }
  } else if (proto == IPPROTO_GRE) {
    if (l4len < 8) { drop(D_TRUNCATED); return; }
    if (ld16(l4) != NVGRE_FLAGS_K) { drop(D_NVGRE_FLAGS); return; }
    if (ld16(l4 + 2) != ETHERTYPE_TEB) { drop(D_NVGRE_PROTOCOL); return; }
    vni = ld32(l4 + 4) >> 8;
    if (vni <= 0xfff || vni == 0xffffff) { drop(D_NVGRE_RESERVED_VSID); return; }
    enc = ENC_NVGRE;
    inner = l4 + 8;
    ilen = l4len - 8;
  } else { drop(D_NOT_OVERLAY); return; }

  trace(TR_VNI, vni);
  /* fast.ts underlayFast: the VN the prefetch pass found for this VNI (same
     shape, same bytes), else the lookup */
  const u32 *hh = macHomes + 2 * (size_t)curIn;
  u32 vn;
  if (hh[0] != NO_HOME) vn = hh[0];
  else {
    u8 *vs = t64Find(&vniTab, vniKey(enc, vni));
    if (vs == 0) { drop(D_UNKNOWN_VNI); return; }
    vn = rd32(vs + 8);
  }
  setCur(port, (i32)vn);
  trace(TR_VN, vn + 1);
  u8 *v = vnPtr(vn);
  ctrInc(vnCtr + ((size_t)vn * VN_CTR << 3), VC_RX, 1);
  u8 *rs = tipFind(&remoteTab, srcTag, s0, s1);
  if (rs == 0 || !vtepAllowed(vn, (u32)rd64(rs + 24))) { drop(D_UNKNOWN_VTEP); return; }
  if (ilen < 14) { drop(D_TRUNCATED); return; }
  u32 iet = ld16(inner + 12);
  if (iet == ETHERTYPE_VLAN || iet == ETHERTYPE_QINQ || iet == ETHERTYPE_QINQ_OLD) { drop(D_INNER_TAGGED); return; }
  if (ilen - 14 > (u32)rd16(v + VN_MTU)) { drop(D_MTU_EXCEEDED); return; }
  /* qos.ts deliverPcp: qos.pcp, else the outer DSCP's class (underlay.ts; the mirror gave 0, issue 18) */
  u32 vp = v[VN_PCP];
  u32 pcp = vp ? (vp - 1) << 13 : (tclass >> 5) << 13;
  u64 dst = macRaw(inner);
  if (dst & 1) { trace(TR_LOOKUP, LK_BROADCAST); floodLocal(vn, v, inner, ilen, pcp); return; }
  /* pipeline/prefetch.ts: the VN in the source's place, the inner destination's home */
  u32 dv = macLookupHome(vn, dst, hh[0] == vn ? hh[1] : NO_HOME);
  trace(TR_DST, dv);
  u32 kind = dv & MK_KIND;
  if (kind == MK_LOCAL) {
    trace(TR_LOOKUP, LK_LOCAL);
    u32 dport = (dv >> ML_PORT_SHIFT) & ML_PORT_MASK;
    u32 dtag = tagOf(vn, dport);
    if ((dv & ML_ACTIVE) == 0 || dtag == 0) { drop(D_DST_INACTIVE); return; }
    trace(TR_ACTION, AC_DECAP);
    emitTagged(dport, dtag, pcp, inner, inner + 12, ilen - 12, vn);
    ctrInc(vnCtr + ((size_t)vn * VN_CTR << 3), VC_DECAP, 1);
    return;
  }
  if (kind == MK_REMOTE) { trace(TR_LOOKUP, LK_REMOTE); drop(D_SPLIT_HORIZON); return; }
  trace(TR_LOOKUP, LK_UNKNOWN);
  floodLocal(vn, v, inner, ilen, pcp);
}

/* ---------------------------------------------------------------- index.ts process */

/* pipeline/prefetch.ts prefetchBatch: the MAC and IP slots each frame will look up, so
   the batch's misses overlap. The wasm has no prefetch instruction and loads
   each slot into a sink; here it is __builtin_prefetch (issue 18), in the
   same two phases: the homes kept per frame, the slots listed densely
   (warmList), then prefetched, last first (the first frames' slots stay in
   L1 for the main pass). */
static const u8 *warmList[4 * MAX_BATCH];
static void prefetchBatch(u32 n) {
  u32 w = 0;
  for (u32 i = 0; i < n; i++) {
    macHomes[2 * i] = NO_HOME; macHomes[2 * i + 1] = NO_HOME;
    const u8 *d = inDescBase + ((size_t)i << 3);
    u32 off = rd16(d), len = rd16(d + 2), port = rd16(d + 4);
    if (port >= MAX_PORTS || len < 18 || off + len > SLOT_SIZE) continue;
    const u8 *p = slotBase + (size_t)i * SLOT_SIZE + off;
    if (portKind[port] == PORT_ACCESS) {
      if (rd16(p + 12) != 0x0081) continue;
      u32 vid = ld16(p + 14) & 0xfff;
      u32 vn1 = rd16(vlanMap + (((size_t)port << 12) + vid) * 2);
      if (vn1 == 0) continue;
      u32 hs = fibHome(&macTab, macKey(vn1 - 1, macRaw(p + 6)));
      macHomes[2 * i] = hs;
      warmList[w++] = macTab.base + ((size_t)hs << 4);
      /* prefetch.ts: a group destination's home is neither computed nor warmed (looked up nowhere) */
      if (!(macRaw(p) & 1)) {
        u32 hd = fibHome(&macTab, macKey(vn1 - 1, macRaw(p)));
        macHomes[2 * i + 1] = hd;
        warmList[w++] = macTab.base + ((size_t)hd << 4);
      }
      /* prefetch.ts warmIpSlots: the IP-table slots of port security and ARP suppression */
      u32 flags = vnPtr(vn1 - 1)[VN_FLAGS];
      if (flags & (VNF_PORTSEC | VNF_ARPSUP)) {
        u32 et = rd16(p + 16);
        if (et == 0x0008) {
          if ((flags & VNF_PORTSEC) && len >= 18 + 20)
            warmList[w++] = ipTab.base + ((size_t)tipHome(&ipTab, vn1, (u64)rd32(p + 30), 0) << 5);
        } else if (et == 0x0608 && len >= 18 + 28) {
          if (flags & VNF_ARPSUP) warmList[w++] = ipTab.base + ((size_t)tipHome(&ipTab, vn1, (u64)rd32(p + 18 + 24), 0) << 5);
          if (flags & VNF_PORTSEC) warmList[w++] = ipTab.base + ((size_t)tipHome(&ipTab, vn1, (u64)rd32(p + 18 + 14), 0) << 5);
        }
      }
    } else if (portKind[port] == PORT_UNDERLAY) {
      /* the VNI of IPv4 (20-byte header), VXLAN / Geneve without options / NVGRE (the wasm now checks the whole of fast.ts underlayShape here; the VN and home are the same for every frame both take) */
      if (ulIs6 || len < 64 || rd16(p + 12) != 0x0008 || p[14] != 0x45) continue;
      u32 proto = p[23];
      u64 key;
      if (proto == IPPROTO_UDP) {
        u32 dport = ld16(p + 36);
        if (dport == vxlanPort) key = vniKeyAt(ENC_VXLAN, p + 46);
        else if (dport == genevePort && p[42] == 0) key = vniKeyAt(ENC_GENEVE, p + 46);
        else continue;
      } else if (proto == IPPROTO_GRE) {
        u32 vsid = ld32(p + 38) >> 8;
        if (vsid <= 0xfff || vsid == 0xffffff) continue;
        key = vniKeyAt(ENC_NVGRE, p + 38);
      } else continue;
      u8 *vs = t64Find(&vniTab, key);
      if (vs == 0) continue;
      u32 vn = rd32(vs + 8);
      u32 hd = fibHome(&macTab, macKey(vn, macRaw(p + (p[23] == 47 ? 42 : 50))));
      macHomes[2 * i] = vn; macHomes[2 * i + 1] = hd;
      warmList[w++] = macTab.base + ((size_t)hd << 4);
    }
  }
  /* prefetch.ts: last slot first, so the first frames' slots are still in L1 */
  for (u32 j = w; j-- > 0;) __builtin_prefetch(warmList[j]);
}

__attribute__((noinline)) static u32 process(u32 n) {
  outCount = 0;
  if (n > MAX_BATCH) n = MAX_BATCH;
  prefetchBatch(n);
  u64 forwarded = 0; /* index.ts: batch-wide counters added once per batch */
  u32 i = 0;
  for (; i < n; i++) {
    if (outCount + worstFanout > MAX_OUT) break;
    curIn = i;
    const u8 *d = inDescBase + ((size_t)i << 3);
    u32 off = rd16(d);
    u32 len = rd16(d + 2);
    u32 port = rd16(d + 4);
    const u8 *p = slotBase + (size_t)i * SLOT_SIZE + off;
    u32 before = outCount;
    u32 kind = port < MAX_PORTS ? portKind[port] : PORT_NONE;
    if (kind == PORT_NONE) { setCur(0, -1); dropNoPort(D_UNKNOWN_PORT); continue; }
    u8 *pc = portCtr + ((size_t)port * PORT_CTR << 3);
    ctrInc(pc, PC_RX_FRAMES, 1);
    ctrInc(pc, PC_RX_BYTES, len);
    if (off + len > SLOT_SIZE) { setCur(port, -1); drop(D_FRAME_TOO_LONG); continue; }
    if (kind == PORT_ACCESS) accessFrame(port, p, len);
    else underlayFrame(port, p, len);
    if (outCount != before) forwarded++;
  }
  ctrInc(globalCtr, GC_RX, i);
  ctrInc(globalCtr, GC_FORWARDED, forwarded);
  ctrInc(globalCtr, GC_OUTPUTS, outCount);
  consumed = i;
  return outCount;
}

/* ================================================================ the same work, written natively
 *
 * The mirror above follows assembly/'s shape function by function. This is
 * the same work as a C programmer would write it (issue 18): the same checks,
 * the same two MAC lookups (and the IP lookups of port security and ARP
 * suppression), the same flow hash and tables (the same homes, linear probing),
 * the same counters, the same trace check and the same 64-byte template copy,
 * but one parse per frame, done in the first pass, which hands each frame's
 * VN, keys and home slots to the second in a per-frame record, real
 * prefetches issued as soon as a slot is known, and the frame's state and the
 * output cursor in locals (registers), not globals. The common cases (the
 * wasm's fast paths: pipeline/fast.ts) run here; everything else goes to the
 * mirror's full path, as the wasm sends it to access.ts / underlay.ts. Its
 * outputs are compared byte for byte with the wasm's, as the mirror's are. */

#define FK_SLOW 0u
#define FK_ACCESS 1u
#define FK_UNDERLAY 2u

/* 32 bytes a frame: the keys, tag and EtherType are read again from the
   frame (in L1) rather than stored */
typedef struct {
  const u8 *p;        /* the frame (access) or its inner frame (underlay) */
  u32 hs, hd;         /* MAC-table home slots: source, destination */
  u32 is, is2;        /* IP-table home slots: the source IP (IPv4) or the ARP target; the ARP sender */
  u16 vn, len;
  u8 kind, flags, port, tc; /* tc: an underlay frame's outer DSCP class (the delivered PCP) */
} Frame;
static Frame frames[MAX_BATCH];

/* the home slot of a MAC key, as tables/index.ts macHome */
AI u32 macHomeOf(u64 key) { return fibHome(&macTab, key); }
AI u8 *macSlot(u32 h) { return macTab.base + ((size_t)h << 4); }
/* the value of `key` probing from slot s (0: unknown) */
AI u32 macAt(const u8 *s, u64 key) {
  u64 k = rd64(s);
  if (k == key) return rd32(s + 8);
  if (k == 0) return 0;
  const u8 *end = macTab.base + ((size_t)(macTab.mask + 1) << 4);
  for (;;) {
    s += 16;
    if (s == end) s = macTab.base;
    k = rd64(s);
    if (k == key) return rd32(s + 8);
    if (k == 0) return 0;
  }
}
/* the IP-table home slot of the IPv4 address at a in vn (tables/index.ts ip4HomeSlot) */
AI u32 ip4HomeOf(u32 vn, const u8 *a) { return tipHome(&ipTab, vn + 1, (u64)rd32(a), 0); }
AI u8 *ip4Slot(u32 h) { return ipTab.base + ((size_t)h << 5); }
/* ip4Lookup probing from slot s */
AI u64 ip4At(const u8 *s, u32 vn, const u8 *a) {
  u32 tag = vn + 1;
  u64 a0 = rd32(a);
  const u8 *end = ipTab.base + ((size_t)(ipTab.mask + 1) << 5);
  for (;;) {
    u32 k = rd32(s);
    if (k == 0) break;
    if (k == tag && rd64(s + 8) == a0 && rd64(s + 16) == 0) return rd64(s + 24);
    s += 32;
    if (s == end) s = ipTab.base;
  }
  return prefixCount == 0 ? UINT64_MAX : prefixLookup(tag, a, 4);
}

/* The slots the second pass will read, prefetched after the first pass,
   last first: prefetched as each is found, the first frames' slots were
   evicted from L1 by the time the second pass reached them, and the
   batch ran slower cold than the mirror's two phases (measured). */
static const u8 *pfList[4 * MAX_BATCH];
static u32 pfN;
#define PF(a) (pfList[pfN++] = (a))


/* The access side's first pass: pipeline/fast.ts accessFast's checks up to the lookups. */
AI void parseAccess(Frame *f, const u8 *p, u32 len, u32 port) {
  if (len < DOT1Q_HLEN) return;
  if (rd16(p + 12) != RAW16(ETHERTYPE_VLAN)) return;
  u32 e = rd16(p + 16);
  if (e == RAW16(ETHERTYPE_VLAN) || e == RAW16(ETHERTYPE_QINQ) || e == RAW16(ETHERTYPE_QINQ_OLD)) return;
  u32 tci = ld16(p + 14);
  u32 vid = tci & 0xfff;
  if (vid == 0) return;
  u32 vn1 = rd16(vlanMap + (((size_t)port << 12) + vid) * 2);
  if (vn1 == 0) return;
  u32 vn = vn1 - 1;
  const u8 *v = vnPtr(vn);
  if (len - DOT1Q_HLEN > (u32)rd16(v + VN_MTU)) return;
  u32 flags = v[VN_FLAGS];
  f->kind = FK_ACCESS;
  f->vn = (u16)vn;
  f->flags = (u8)flags;
  f->hs = macHomeOf(macKey(vn, macRaw(p + 6)));
  PF(macSlot(f->hs));
  u64 dst = macRaw(p);
  if (!(dst & 1)) { f->hd = macHomeOf(macKey(vn, dst)); PF(macSlot(f->hd)); }
  if (flags & (VNF_PORTSEC | VNF_ARPSUP)) {
    if (e == RAW16(ETHERTYPE_IPV4)) {
      if ((flags & VNF_PORTSEC) && len >= DOT1Q_HLEN + 20 && rd32(p + DOT1Q_HLEN + 12) != 0) {
        f->is = ip4HomeOf(vn, p + DOT1Q_HLEN + 12);
        PF(ip4Slot(f->is));
      }
    } else if (e == RAW16(ETHERTYPE_ARP) && len >= DOT1Q_HLEN + ARP_LEN) {
      if (flags & VNF_ARPSUP) { f->is = ip4HomeOf(vn, p + DOT1Q_HLEN + ARP_TPA); PF(ip4Slot(f->is)); }
      if (flags & VNF_PORTSEC) { f->is2 = ip4HomeOf(vn, p + DOT1Q_HLEN + ARP_SPA); PF(ip4Slot(f->is2)); }
    }
  }
}

/* The underlay side's first pass: every check of fast.ts underlayFast but the destination's lookup. */
AI void parseUnderlay(Frame *f, const u8 *p, u32 len) {
  if (ulIs6) return;
  if (len < 14 + 20 + 8 + 8 + 14) return;
  if (macRaw(p) != ulMac) return;
  if (rd16(p + 12) != RAW16(ETHERTYPE_IPV4)) return;
  const u8 *ip = p + 14;
  if (ip[0] != 0x45) return;
  u32 tot = ld16(ip + 2);
  if (14u + tot > len || tot < 20 + 8) return;
  if (ip4Sum20(ip) != 0xffff) return;
  if ((u64)rd32(ip + 16) != ulIp0) return;
  if (rd16(ip + 6) & RAW16(IP4_MF | IP4_OFFMASK)) return;
  u32 proto = ip[9];
  const u8 *l4 = ip + 20;
  u32 l4len = tot - 20, hl;
  u64 key;
  if (proto == IPPROTO_UDP) {
    if (ld16(l4 + 4) != l4len || rd16(l4 + 6) != 0 || l4len < 16) return;
    u32 dport = ld16(l4 + 2);
    const u8 *t = l4 + 8;
    if (dport == vxlanPort) {
      if ((t[0] & VXLAN_FLAG_I) == 0) return;
      key = vniKeyAt(ENC_VXLAN, t + 4);
    } else if (dport == genevePort) {
      if (t[0] != 0 || (t[1] & (GENEVE_FLAG_O | GENEVE_FLAG_C)) != 0 || rd16(t + 2) != RAW16(ETHERTYPE_TEB)) return;
      key = vniKeyAt(ENC_GENEVE, t + 4);
    } else return;
    hl = 16;
  } else if (proto == IPPROTO_GRE) {
    if (rd16(l4) != RAW16(NVGRE_FLAGS_K) || rd16(l4 + 2) != RAW16(ETHERTYPE_TEB)) return;
    u32 vsid = ld32(l4 + 4) >> 8;
    if (vsid <= 0xfff || vsid == 0xffffff) return;
    key = vniKeyAt(ENC_NVGRE, l4 + 4);
    hl = 8;
  } else return;
  const u8 *vs = t64Find(&vniTab, key);
  if (vs == 0) return;
  u32 vn = rd32(vs + 8);
  const u8 *rs = tipFind(&remoteTab, 4, (u64)rd32(ip + 12), 0);
  if (rs == 0 || !vtepAllowed(vn, (u32)rd64(rs + 24))) return;
  const u8 *inner = l4 + hl;
  u32 ilen = l4len - hl;
  if (ilen < 14) return;
  u32 iet = rd16(inner + 12);
  if (iet == RAW16(ETHERTYPE_VLAN) || iet == RAW16(ETHERTYPE_QINQ) || iet == RAW16(ETHERTYPE_QINQ_OLD)) return;
  if (ilen - 14 > (u32)rd16(vnPtr(vn) + VN_MTU)) return;
  u64 dst = macRaw(inner);
  if (dst & 1) return;
  f->kind = FK_UNDERLAY;
  f->vn = (u16)vn;
  f->tc = (u8)(ip[1] >> 5); /* the outer DSCP's class: the delivered frame's PCP (underlay.ts) */
  f->p = inner;
  f->len = (u16)ilen;
  f->hd = macHomeOf(macKey(vn, dst));
  PF(macSlot(f->hd));
}

/* The output cursor, kept in a register across one batch. */
typedef struct { u32 n, in; } Cursor;

/* The out-desc (abi.ts) as two 8-byte stores, as emit.ts commit writes it. */
AI void descN(Cursor *o, u32 port, u32 hdrLen, const u8 *data, u32 dataLen, u32 vn) {
  u8 *d = outDescBase + (size_t)o->n * OUT_DESC;
  wr64(d, (u64)(port & 0xffff) | (u64)(hdrLen & 0xffff) << 16 | (u64)(u32)(data - M) << 32);
  wr64(d + 8, (u64)(dataLen & 0xffff) | (u64)(o->in & 0xffff) << 16 | (u64)vn << 32);
  o->n++;
}

AI void commitN(Cursor *o, u32 port, u32 hdrLen, const u8 *data, u32 dataLen, u32 vn) {
  descN(o, port, hdrLen, data, dataLen, vn);
  u64 *pc = (u64 *)(portCtr + ((size_t)port * PORT_CTR << 3));
  pc[PC_TX_FRAMES] += 1;
  pc[PC_TX_BYTES] += hdrLen + dataLen;
  ((u64 *)(vnCtr + ((size_t)vn * VN_CTR << 3)))[VC_TX] += 1;
}

AI void taggedN(Cursor *o, u32 port, u32 tag, u32 pcpDei, const u8 *macs, const u8 *data, u32 dataLen, u32 vn) {
  u8 *h = hdrBase + (size_t)o->n * HDR_SLOT;
  u32 tci = ((pcpDei & 0xf000) | tag) & 0xffff;
  wr64(h, rd64(macs));
  wr64(h + 8, (u64)rd32(macs + 8) | (u64)(RAW16(ETHERTYPE_VLAN) | (((tci << 8) | (tci >> 8)) & 0xffff) << 16) << 32);
  commitN(o, port, 16, data, dataLen, vn);
}

/* encap.ts emitEncap4's header: the 64-byte template, the inner MACs, lengths, checksum, entropy;
   the header's length (without the inner MACs) */
AI u32 encap4Hdr(Cursor *o, const u8 *e, u32 kind, const u8 *p, u32 len, u32 pcp, u32 hash) {
  u8 *h = hdrBase + (size_t)o->n * HDR_SLOT;
  memcpy(h, e + TUN_HDR, 64);
  u32 hl = e[0];
  wr64(h + hl, rd64(p));
  wr32(h + hl + 8, rd32(p + 8));
  u32 innerLen = len - 4;
  int fixed = (e[8] & 1) != 0;
  u32 tos = fixed ? 0 : (pcp << 5);
  u32 tot;
  if (kind == TK_NVGRE4) {
    tot = 28 + innerLen;
    h[41] = (u8)(hash >> 8);
  } else {
    tot = 36 + innerLen;
    st16(h + 34, SPORT_BASE | (hash & SPORT_MASK));
    st16(h + 38, 16 + innerLen);
  }
  if (!fixed) h[15] = (u8)tos;
  st16(h + 16, tot);
  st16(h + 24, ~csumFold((u64)rd16(e + 2) + tot + tos) & 0xffff);
  return hl;
}

/* encap.ts emitEncap4 */
AI void encap4N(Cursor *o, const u8 *e, u32 kind, const u8 *p, u32 len, u32 pcp, u32 hash, u32 vn) {
  u32 hl = encap4Hdr(o, e, kind, p, len, pcp, hash);
  commitN(o, rd16(e + 10), hl + 12, p + 16, len - 16, vn);
}

/* fast.ts floodFast: head-end replication over an IPv4 underlay, tagged copies to the other local ports.
   The copies' transmit counters are added per run of copies on one port and once per frame on the VN,
   as the wasm's floodfast.ts does (counters are read between batches only). */
AI int floodN(Cursor *o, const Frame *f, u32 tci, const u8 *v, u64 *vc) {
  u32 n = rd32(v + VN_FLOOD_N);
  if (n == 0 || ulIs6) return 0;
  const u8 *p = f->p;
  vc[VC_RX] += 1;
  u32 hash = flowHash(p, ld16(p + 16), p + DOT1Q_HLEN, f->len - DOT1Q_HLEN);
  u32 pcp = tci >> 13;
  const u8 *list = floodPool + ((size_t)rd32(v + VN_FLOOD_PTR) << 2);
  u32 n0 = o->n, runPort = UINT32_MAX;
  u64 runFrames = 0, runBytes = 0;
  for (u32 i = 0; i < n; i++) {
    const u8 *e = tunPtr(rd32(list + ((size_t)i << 2)));
    u32 hl = encap4Hdr(o, e, e[1], p, f->len, pcp, hash);
    u32 port = rd16(e + 10);
    descN(o, port, hl + 12, p + 16, f->len - 16, f->vn);
    if (port != runPort) {
      if (runFrames) { u64 *pc = (u64 *)(portCtr + ((size_t)runPort * PORT_CTR << 3)); pc[PC_TX_FRAMES] += runFrames; pc[PC_TX_BYTES] += runBytes; }
      runPort = port; runFrames = 0; runBytes = 0;
    }
    runFrames++;
    runBytes += hl + 12 + f->len - 16;
  }
  if (runFrames) { u64 *pc = (u64 *)(portCtr + ((size_t)runPort * PORT_CTR << 3)); pc[PC_TX_FRAMES] += runFrames; pc[PC_TX_BYTES] += runBytes; }
  ((u64 *)(vnCtr + ((size_t)f->vn * VN_CTR << 3)))[VC_TX] += o->n - n0;
  u32 nl = v[VN_NLOCAL];
  for (u32 i = 0; i < nl; i++) {
    u32 l = rd32(v + VN_LOCAL + ((size_t)i << 2));
    if (l >> 16 == f->port) continue;
    taggedN(o, l >> 16, l & 0xfff, tci, p, p + 16, f->len - 16, f->vn);
  }
  vc[VC_FLOOD] += 1;
  return 1;
}

/* suppress.ts arpAnswerAt: an ARP request suppression answers (RFC 9161), port security's checks first */
AI int arpN(Cursor *o, const Frame *f, u32 sv, u64 *vc) {
  u32 tci = ld16(f->p + 14);
  const u8 *p = f->p;
  if (f->len < DOT1Q_HLEN + ARP_LEN) return 0;
  const u8 *a = p + DOT1Q_HLEN;
  if (rd16(a + ARP_OP) != RAW16(ARP_OP_REQUEST) || rd16(a) != RAW16(1) || rd16(a + 2) != RAW16(ETHERTYPE_IPV4)
      || rd16(a + 4) != RAW16(0x0604) || rd32(a + ARP_SPA) == rd32(a + ARP_TPA)) return 0;
  if (f->flags & VNF_PORTSEC) {
    if ((sv & MK_KIND) != MK_LOCAL || ((sv >> ML_PORT_SHIFT) & ML_PORT_MASK) != f->port) return 0;
    if (macRaw(a + ARP_SHA) != macRaw(p + 6)) return 0;
    if (rd32(a + ARP_SPA) != 0 && ip4At(ip4Slot(f->is2), f->vn, a + ARP_SPA) != ldMac(p + 6)) return 0;
  }
  u64 m = ip4At(ip4Slot(f->is), f->vn, a + ARP_TPA);
  if (m == UINT64_MAX) return 0;
  vc[VC_RX] += 1;
  /* suppress.ts arpReply */
  u8 *h = hdrBase + (size_t)o->n * HDR_SLOT;
  memcpy(h, p + 6, 6);
  stMac(h + 6, m);
  wr16(h + 12, RAW16(ETHERTYPE_VLAN));
  st16(h + 14, tci);
  wr16(h + 16, RAW16(ETHERTYPE_ARP));
  u8 *r = h + 18;
  st32(r, 0x00010800);
  st32(r + 4, 0x06040000 | ARP_OP_REPLY);
  stMac(r + ARP_SHA, m);
  wr32(r + ARP_SPA, rd32(a + ARP_TPA));
  memcpy(r + 18, a + ARP_SHA, 6);
  wr32(r + ARP_TPA, rd32(a + ARP_SPA));
  memset(h + 46, 0, 18);
  commitN(o, f->port, 64, p, 0, f->vn);
  return 1;
}

/* The access side's second pass: true when forwarded (fast.ts accessFast, suppress.ts arpAnswerAt). */
AI int accessN(Cursor *o, const Frame *f) {
  const u8 *p = f->p;
  u32 vn = f->vn, port = f->port, flags = f->flags;
  u64 *vc = (u64 *)(vnCtr + ((size_t)vn * VN_CTR << 3));
  u32 tci = ld16(p + 14), etype = rd16(p + 16);
  u32 sv = macAt(macSlot(f->hs), macKey(vn, macRaw(p + 6)));
  if ((sv & (MK_KIND | ML_ACTIVE)) == MK_LOCAL) return 0; /* an inactive VNIC: dropped by the full path */
  if (flags & (VNF_PORTSEC | VNF_ARPSUP)) {
    if (etype == RAW16(ETHERTYPE_ARP) && (flags & VNF_ARPSUP)) return arpN(o, f, sv, vc);
    if (etype != RAW16(ETHERTYPE_IPV4)) return 0;
    if (flags & VNF_PORTSEC) {
      /* seed §5: the source MAC local on this port, the source IP bound to it */
      if ((sv & MK_KIND) != MK_LOCAL || ((sv >> ML_PORT_SHIFT) & ML_PORT_MASK) != port) return 0;
      if (f->len < DOT1Q_HLEN + 20) return 0;
      if (rd32(p + DOT1Q_HLEN + 12) != 0 && ip4At(ip4Slot(f->is), vn, p + DOT1Q_HLEN + 12) != ldMac(p + 6)) return 0;
    }
  }
  /* The VN profile's parts the fast paths leave to the full path or check (fast.ts accessFast,
     state.ts VN_FEAT): a policer or gleaning goes to the full path; the from-VNIC ACL (acl.ts
     aclEval): anything but a pass goes to the full path, which counts the deny. Without it the
     native skipped the acl16 case's 16 rules, and the feature byte's load and tests (issue 18). */
  const u8 *v = vnPtr(vn);
  u32 feat = v[VN_FEAT];
  if (feat) {
    if (feat & (FEAT_POLICE | FEAT_GLEAN)) return 0;
    if ((feat & FEAT_ACL_FROM) && aclEval(ld16(p + 16), p + DOT1Q_HLEN, f->len - DOT1Q_HLEN) != ACL_PASS) return 0;
  }
  u64 dst = macRaw(p);
  if (dst & 1) {
    if (feat & FEAT_ACL_TO) return 0; /* to-VNIC rules on the flood's local copies: the full path */
    return floodN(o, f, tci, v, vc);
  }
  u32 dv = macAt(macSlot(f->hd), macKey(vn, dst));
  u32 kind = dv & MK_KIND;
  if (kind == MK_REMOTE) {
    const u8 *e = tunPtr(dv & MR_TUN_MASK);
    /* the tunnel's next-hop state (pipeline/nexthop.ts, tunnel byte 9): 0 is one next hop, in the
       template; none (the full path drops it) or ECMP (no next-hop tables in this program) go to
       the full path. The wasm tests it too (fast.ts accessFast, encap.ts emitEncap4; issue 18). */
    if (e[9] != 0) return 0;
    vc[VC_RX] += 1;
    u32 hash = flowHash(p, ld16(p + 16), p + DOT1Q_HLEN, f->len - DOT1Q_HLEN);
    u32 tk = e[1];
    if (tk == TK_VXLAN4 || tk == TK_GENEVE4 || tk == TK_NVGRE4) encap4N(o, e, tk, p, f->len, tci >> 13, hash, vn);
    else { outCount = o->n; curIn = o->in; emitEncap(dv & MR_TUN_MASK, p, f->len, tci >> 13, hash, vn); o->n = outCount; }
    vc[VC_ENCAP] += 1;
    return 1;
  }
  if (feat & FEAT_ACL_TO) return 0; /* to-VNIC rules: the full path */
  if (kind == 0) return floodN(o, f, tci, v, vc); /* unknown unicast */
  if ((dv & ML_ACTIVE) == 0) return 0;
  u32 dport = (dv >> ML_PORT_SHIFT) & ML_PORT_MASK;
  if (dport == port) return 0;
  u32 dtag = tagOf(vn, dport);
  if (dtag == 0) return 0;
  vc[VC_RX] += 1;
  u32 vp = v[VN_PCP]; /* qos.ts deliverPcp: the profile's qos.pcp, else the frame's own */
  taggedN(o, dport, dtag, vp ? (vp - 1) << 13 : tci, p, p + 16, f->len - 16, vn);
  return 1;
}

/* The underlay side's second pass: the destination's lookup and the tagged output (fast.ts underlayFast). */
AI int underlayN(Cursor *o, const Frame *f) {
  const u8 *v = vnPtr(f->vn);
  if (v[VN_FEAT] & FEAT_ACL_TO) return 0; /* to-VNIC rules: the full path (fast.ts underlayFast evaluates them) */
  u32 dv = macAt(macSlot(f->hd), macKey(f->vn, macRaw(f->p)));
  if ((dv & (MK_KIND | ML_ACTIVE)) != (MK_LOCAL | ML_ACTIVE)) return 0;
  u32 dport = (dv >> ML_PORT_SHIFT) & ML_PORT_MASK;
  u32 dtag = tagOf(f->vn, dport);
  if (dtag == 0) return 0;
  u64 *vc = (u64 *)(vnCtr + ((size_t)f->vn * VN_CTR << 3));
  vc[VC_RX] += 1;
  /* qos.ts deliverPcp: the profile's qos.pcp, else the outer DSCP's class (underlay.ts); the native
     passed 0, the same bytes only because the bench's outer TOS is 0 (issue 18) */
  u32 vp = v[VN_PCP];
  taggedN(o, dport, dtag, vp ? (vp - 1) << 13 : (u32)f->tc << 13, f->p, f->p + 12, f->len - 12, f->vn);
  vc[VC_DECAP] += 1;
  return 1;
}

__attribute__((noinline)) static u32 processNative(u32 n) {
  if (n > MAX_BATCH) n = MAX_BATCH;
  /* first pass: one parse per frame, the slots it will read listed */
  pfN = 0;
  for (u32 i = 0; i < n; i++) {
    Frame *f = &frames[i];
    f->kind = FK_SLOW;
    const u8 *d = inDescBase + ((size_t)i << 3);
    u32 off = rd16(d), len = rd16(d + 2), port = rd16(d + 4);
    if (traceOn || rd16(d + 6) != 0 || port >= MAX_PORTS || off + len > SLOT_SIZE) continue;
    const u8 *p = slotBase + (size_t)i * SLOT_SIZE + off;
    f->p = p;
    f->len = (u16)len;
    f->port = (u8)port;
    u32 k = portKind[port];
    if (k == PORT_ACCESS) parseAccess(f, p, len, port);
    else if (k == PORT_UNDERLAY) parseUnderlay(f, p, len);
  }
  for (u32 j = pfN; j-- > 0;) __builtin_prefetch(pfList[j]);
  /* second pass */
  Cursor o = { 0, 0 };
  u64 forwarded = 0;
  u32 i = 0;
  for (; i < n; i++) {
    if (o.n + worstFanout > MAX_OUT) break;
    o.in = i;
    const Frame *f = &frames[i];
    int done = 0;
    if (f->kind == FK_ACCESS) done = accessN(&o, f);
    else if (f->kind == FK_UNDERLAY) done = underlayN(&o, f);
    const u8 *d = inDescBase + ((size_t)i << 3);
    u32 len = rd16(d + 2), port = rd16(d + 4);
    if (done) {
      u64 *pc = (u64 *)(portCtr + ((size_t)port * PORT_CTR << 3));
      pc[PC_RX_FRAMES] += 1;
      pc[PC_RX_BYTES] += len;
      forwarded++;
      continue;
    }
    /* the full path (the mirror's), as index.ts slowFrame */
    outCount = o.n;
    curIn = i;
    macHomes[2 * i] = NO_HOME; /* the full path computes its own homes */
    macHomes[2 * i + 1] = NO_HOME;
    u32 off = rd16(d);
    const u8 *p = slotBase + (size_t)i * SLOT_SIZE + off;
    u32 kind = port < MAX_PORTS ? portKind[port] : PORT_NONE;
    if (kind == PORT_NONE) { setCur(0, -1); dropNoPort(D_UNKNOWN_PORT); continue; }
    u8 *pc = portCtr + ((size_t)port * PORT_CTR << 3);
    ctrInc(pc, PC_RX_FRAMES, 1);
    ctrInc(pc, PC_RX_BYTES, len);
    if (off + len > SLOT_SIZE) { setCur(port, -1); drop(D_FRAME_TOO_LONG); continue; }
    if (kind == PORT_ACCESS) accessFrame(port, p, len);
    else underlayFrame(port, p, len);
    if (outCount != o.n) forwarded++;
    o.n = outCount;
  }
  outCount = o.n;
  ctrInc(globalCtr, GC_RX, i);
  ctrInc(globalCtr, GC_FORWARDED, forwarded);
  ctrInc(globalCtr, GC_OUTPUTS, o.n);
  consumed = i;
  return o.n;
}

/* ---------------------------------------------------------------- control.ts (the parts the bench uses) */

static u8 ul[32]; /* our MAC (0), gateway MAC (8), our IP (16) */
static u32 ulPort;

static void buildTunnel(u32 t, u32 vn, u32 r) {
  u8 *e = tunPtr(t);
  memset(e, 0, TUN_SIZE);
  u8 *v = vnPtr(vn);
  u32 enc = v[VN_ENCAP];
  u32 vni = rd32(v + VN_VNI);
  int fixed = (v[VN_FLAGS] & VNF_DSCP_FIXED) != 0;
  u32 tos = fixed ? ((u32)v[VN_DSCP] << 2) : 0;
  u8 *h = e + TUN_HDR;
  memcpy(h, ul + 8, 6);
  memcpy(h + 6, ul, 6);
  u8 *rip = remoteIps + ((size_t)r << 4);
  u8 *l4;
  u32 kind;
  if (!ulIs6) {
    st16(h + 12, ETHERTYPE_IPV4);
    u8 *ip = h + 14;
    st8(ip, 0x45);
    st8(ip + 1, tos);
    st16(ip + 6, IP4_DF);
    st8(ip + 8, 64);
    st8(ip + 9, enc == ENC_NVGRE ? IPPROTO_GRE : IPPROTO_UDP);
    memcpy(ip + 12, ul + 16, 4);
    memcpy(ip + 16, rip, 4);
    wr16(e + 2, (u16)csumFold(csumAdd(0, ip, 20)));
    l4 = ip + 20;
    kind = enc == ENC_VXLAN ? TK_VXLAN4 : enc == ENC_GENEVE ? TK_GENEVE4 : TK_NVGRE4;
  } else {
    st16(h + 12, ETHERTYPE_IPV6);
    u8 *ip = h + 14;
    st32(ip, 0x60000000u | (tos << 20));
    st8(ip + 6, enc == ENC_NVGRE ? IPPROTO_GRE : IPPROTO_UDP);
    st8(ip + 7, 64);
    memcpy(ip + 8, ul + 16, 16);
    memcpy(ip + 24, rip, 16);
    wr32(e + 4, (u32)csumAdd((u64)IPPROTO_UDP, ip + 8, 32));
    l4 = ip + 40;
    kind = enc == ENC_VXLAN ? TK_VXLAN6 : enc == ENC_GENEVE ? TK_GENEVE6 : TK_NVGRE6;
  }
  u8 *end;
  if (enc == ENC_NVGRE) {
    st16(l4, NVGRE_FLAGS_K);
    st16(l4 + 2, ETHERTYPE_TEB);
    st32(l4 + 4, vni << 8);
    end = l4 + 8;
  } else {
    st16(l4 + 2, enc == ENC_VXLAN ? vxlanPort : genevePort);
    u8 *x = l4 + 8;
    if (enc == ENC_VXLAN) st8(x, VXLAN_FLAG_I);
    else st16(x + 2, ETHERTYPE_TEB);
    st32(x + 4, vni << 8);
    end = x + 8;
  }
  e[0] = (u8)(end - h);
  e[1] = (u8)kind;
  e[8] = fixed ? 1 : 0;
  wr16(e + 10, (u16)ulPort);
}

/* ---------------------------------------------------------------- input files */

typedef struct { const u8 *p, *end; const char *name; } Rd;

static void need(Rd *r, size_t n) {
  if ((size_t)(r->end - r->p) < n) { fprintf(stderr, "dpbench: %s: truncated\n", r->name); exit(1); }
}
static u32 gu32(Rd *r) { need(r, 4); u32 v = rd32(r->p); r->p += 4; return v; }
static u64 gu64(Rd *r) { need(r, 8); u64 v = rd64(r->p); r->p += 8; return v; }
static const u8 *gbytes(Rd *r, size_t n) { need(r, n); const u8 *p = r->p; r->p += n; return p; }

static Rd readFile(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { fprintf(stderr, "dpbench: cannot open %s\n", path); exit(1); }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  u8 *b = malloc((size_t)n + 1);
  if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "dpbench: cannot read %s\n", path); exit(1); }
  fclose(f);
  Rd r = { b, b + n, path };
  return r;
}

#define MAGIC_BASE 0x42445631u /* "1VDB" */
#define MAGIC_CASE 0x43445631u

/* BASE: the tables as the host programmed them, in the order it programmed them. */
static void loadBase(Rd *r) {
  if (gu32(r) != MAGIC_BASE) { fprintf(stderr, "dpbench: %s: not a base file\n", r->name); exit(1); }
  u32 macLog2 = gu32(r), ipLog2 = gu32(r), tunLog2 = gu32(r), floodCap = gu32(r);
  /* the order of index.ts init() */
  layoutFixed(tunLog2, floodCap);
  tabInit(&macTab, macLog2, 16);
  tabInit(&ipTab, ipLog2, 32);
  tabInit(&vniTab, 15, 16);
  tabInit(&remoteTab, 13, 32);
  prefixBase = alloc((size_t)MAX_PREFIXES * 32);
  remoteIps = alloc((size_t)MAX_REMOTES * 16);
  /* underlay */
  ulPort = gu32(r);
  ulIs6 = (int)gu32(r);
  memcpy(ul, gbytes(r, 32), 32);
  vxlanPort = gu32(r);
  genevePort = gu32(r);
  ulMac = macRaw(ul);
  ulIp0 = ulIs6 ? rd64(ul + 16) : (u64)rd32(ul + 16);
  ulIp1 = ulIs6 ? rd64(ul + 24) : 0;
  u32 n = gu32(r);
  for (u32 i = 0; i < n; i++) { u32 port = gu32(r); u32 kind = gu32(r); portKind[port] = (u8)kind; }
  n = gu32(r);
  for (u32 i = 0; i < n; i++) {
    u32 idx = gu32(r), is6 = gu32(r);
    const u8 *a = gbytes(r, 16);
    memcpy(remoteIps + ((size_t)idx << 4), a, 16);
    tipPut(&remoteTab, is6 ? 6 : 4, is6 ? rd64(a) : (u64)rd32(a), is6 ? rd64(a + 8) : 0, idx);
  }
  n = gu32(r);
  for (u32 i = 0; i < n; i++) {
    u64 key = gu64(r);
    u32 val = gu32(r);
    key = (key & ~0xffffffffffffULL) | macRawOf(key & 0xffffffffffffULL); /* as control.ts setMac* */
    if (!t64Put(&macTab, key, val, 0)) { fprintf(stderr, "dpbench: MAC table full\n"); exit(1); }
  }
  n = gu32(r);
  for (u32 i = 0; i < n; i++) {
    u32 tag = gu32(r);
    u64 a0 = gu64(r), a1 = gu64(r), val = gu64(r);
    if (!tipPut(&ipTab, tag, a0, a1, val)) { fprintf(stderr, "dpbench: IP table full\n"); exit(1); }
  }
}

typedef struct { char name[64]; u32 inPort, frameLen, stride, nFrames; const u8 *frames; } Case;

/* CASE: the VN's profile, its tags and local list, tunnels, flood list, then the frames. */
static void loadCase(Rd *r, Case *c) {
  if (gu32(r) != MAGIC_CASE) { fprintf(stderr, "dpbench: %s: not a case file\n", r->name); exit(1); }
  memcpy(c->name, gbytes(r, 64), 64);
  c->name[63] = 0;
  u32 vn = gu32(r), vni = gu32(r), encap = gu32(r), mtu = gu32(r), flags = gu32(r), dscp = gu32(r);
  worstFanout = gu32(r);
  u8 *v = vnPtr(vn);
  memset(vniTab.base, 0, (size_t)(vniTab.mask + 1) * 16);
  vniTab.count = 0;
  t64Put(&vniTab, vniKey(encap, vni), vn, 0);
  wr32(v + VN_VNI, vni);
  v[VN_ENCAP] = (u8)encap;
  v[VN_DSCP] = (u8)dscp;
  wr16(v + VN_MTU, (u16)mtu);
  v[VN_FLAGS] = (u8)(flags | VNF_LIVE);
  memset(vlanMap, 0, (size_t)MAX_PORTS * 4096 * 2);
  u32 n = gu32(r);
  for (u32 i = 0; i < n; i++) {
    u32 port = gu32(r), vid = gu32(r), vn1 = gu32(r);
    wr16(vlanMap + (((size_t)port << 12) + vid) * 2, (u16)vn1);
  }
  n = gu32(r);
  v[VN_NLOCAL] = (u8)n;
  for (u32 i = 0; i < n; i++) wr32(v + VN_LOCAL + ((size_t)i << 2), gu32(r));
  /* control.ts refreshPortTag: the VN's first (port, tag) pair on each port */
  memset(vnPortTag + (size_t)vn * MAX_PORTS * 2, 0, MAX_PORTS * 2);
  for (u32 i = n; i-- > 0;) {
    u32 e = rd32(v + VN_LOCAL + ((size_t)i << 2));
    wr16(vnPortTag + (((size_t)vn * MAX_PORTS + (e >> 16)) << 1), (u16)(e & 0xfff));
  }
  memset(vtepBits, 0, (size_t)MAX_VNS * MAX_REMOTES / 8);
  n = gu32(r);
  for (u32 i = 0; i < n; i++) {
    u32 t = gu32(r), tvn = gu32(r), rr = gu32(r);
    buildTunnel(t, tvn, rr);
  }
  n = gu32(r);
  for (u32 i = 0; i < n; i++) {
    u32 t = gu32(r), rr = gu32(r);
    wr32(floodPool + ((size_t)i << 2), t);
    size_t bit = (size_t)vn * MAX_REMOTES + rr;
    vtepBits[bit >> 3] |= (u8)(1u << (bit & 7));
  }
  wr32(v + VN_FLOOD_PTR, 0);
  wr32(v + VN_FLOOD_N, n);
  c->inPort = gu32(r);
  c->frameLen = gu32(r);
  c->stride = gu32(r);
  c->nFrames = gu32(r);
  if (c->nFrames % MAX_BATCH != 0 || c->stride < c->frameLen || c->frameLen > SLOT_SIZE - HEADROOM) {
    fprintf(stderr, "dpbench: %s: bad frame pool\n", r->name);
    exit(1);
  }
  c->frames = gbytes(r, (size_t)c->stride * c->nFrames);
  loadAcl(r->p, r->end); /* issue 14: the VN's ACL, when the case has one */
  /* acl.ts setAcl: the VN entry's feature bits, which the fast paths test (the native's too) */
  v[VN_FEAT] = (u8)((aclNFrom || aclDeny ? FEAT_ACL_FROM : 0) | (aclNTo || aclDeny ? FEAT_ACL_TO : 0));
}

/* ---------------------------------------------------------------- the run */

static inline u64 nowNs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (u64)ts.tv_sec * 1000000000ull + (u64)ts.tv_nsec;
}

/* Batch b of the pool into the slots (outside the timed region, as on the wasm side). */
static void fill(const Case *c, u32 b) {
  u32 nb = c->nFrames / MAX_BATCH;
  const u8 *src = c->frames + (size_t)(b % nb) * MAX_BATCH * c->stride;
  for (u32 i = 0; i < MAX_BATCH; i++) memcpy(slotBase + (size_t)i * SLOT_SIZE + HEADROOM, src + (size_t)i * c->stride, c->frameLen);
}

static int cmpU32(const void *a, const void *b) {
  u32 x = *(const u32 *)a, y = *(const u32 *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  int serve = 0, nat = 0;
  for (int a = 6; a < argc; a++) {
    if (strcmp(argv[a], "--serve") == 0) serve = 1;
    else if (strcmp(argv[a], "--native") == 0) nat = 1;
    else argc = 0;
  }
  if (argc < 6) { fprintf(stderr, "usage: dpbench BASE CASE DUMP RUN_MS WARMUP_MS [--serve] [--native]\n"); return 2; }
  u32 (*run)(u32) = nat ? processNative : process;
  M = mmap(0, ARENA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (M == MAP_FAILED) { fprintf(stderr, "dpbench: mmap failed\n"); return 1; }
  if (getenv("DPBENCH_THP")) madvise(M, ARENA, MADV_HUGEPAGE);
  Rd base = readFile(argv[1]);
  loadBase(&base);
  Rd cr = readFile(argv[2]);
  Case c;
  loadCase(&cr, &c);
  u64 runNs = (u64)atoll(argv[4]) * 1000000ull;
  u64 warmNs = (u64)atoll(argv[5]) * 1000000ull;

  for (u32 i = 0; i < MAX_BATCH; i++) {
    u8 *d = inDescBase + ((size_t)i << 3);
    wr16(d, HEADROOM);
    wr16(d + 2, (u16)c.frameLen);
    wr16(d + 4, (u16)c.inPort);
    wr16(d + 6, 0);
  }

  /* the first batch's outputs, for the byte comparison with the wasm */
  fill(&c, 0);
  u32 outs = run(MAX_BATCH);
  FILE *f = fopen(argv[3], "wb");
  if (!f) { fprintf(stderr, "dpbench: cannot write %s\n", argv[3]); return 1; }
  fwrite(&consumed, 4, 1, f);
  fwrite(&outs, 4, 1, f);
  for (u32 j = 0; j < outs; j++) {
    const u8 *d = outDescBase + (size_t)j * OUT_DESC;
    u32 hl = rd16(d + O_HDRLEN), dl = rd16(d + O_DATALEN);
    u32 rec[4] = { rd16(d + O_PORT), rd16(d + O_IN), rd32(d + O_VN), hl + dl };
    fwrite(rec, 4, 4, f);
    fwrite(hdrBase + (size_t)j * HDR_SLOT, 1, hl, f);
    fwrite(M + rd32(d + O_DATA), 1, dl, f);
  }
  fclose(f);

  /* one round now, or with --serve one round per line read from stdin (the
   * bench alternates its wasm rounds with these) until EOF */
  size_t cap = 1u << 22;
  u32 *times = malloc(cap * sizeof(u32));
  u32 b = 1;
  char cmd[64];
  if (serve) { printf("{\"ready\":true}\n"); fflush(stdout); }
  while (!serve || fgets(cmd, sizeof cmd, stdin)) {
    u64 t0 = nowNs();
    while (nowNs() - t0 < warmNs) { fill(&c, b++); run(MAX_BATCH); }
    /* per-batch times (a batch the scheduler interrupted is an outlier, not the code) */
    size_t nt = 0;
    u64 frames = 0, outputs = 0, spent = 0;
    t0 = nowNs();
    while (nowNs() - t0 < runNs && nt < cap) {
      fill(&c, b++);
      u64 a = nowNs();
      u32 k = run(MAX_BATCH);
      u64 dt = nowNs() - a;
      spent += dt;
      times[nt++] = (u32)(dt > 0xffffffffu ? 0xffffffffu : dt);
      if (consumed != MAX_BATCH) { fprintf(stderr, "dpbench: %s: process took %u of %u frames\n", c.name, consumed, MAX_BATCH); return 1; }
      frames += MAX_BATCH;
      outputs += k;
    }
    qsort(times, nt, sizeof(u32), cmpU32);
    /* the fastest decile of batches, as bench/dataplane.ts timing() */
    double p10 = (double)times[nt / 10] / MAX_BATCH, med = (double)times[nt / 2] / MAX_BATCH;
    printf("{\"case\":\"%s\",\"mpps\":%.3f,\"nsPerFrame\":%.2f,\"medianNsPerFrame\":%.2f,\"meanNsPerFrame\":%.2f,\"batches\":%zu,\"frames\":%llu,\"outputs\":%llu}\n",
           c.name, 1e3 / p10, p10, med, (double)spent / (double)frames, nt, (unsigned long long)frames, (unsigned long long)outputs);
    fflush(stdout);
    if (!serve) break;
  }
  return 0;
}
