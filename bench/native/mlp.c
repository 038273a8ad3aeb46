// Memory-level parallelism of a batch's table loads on this CPU (issue 18):
// what the data plane's warm-up pass (assembly/pipeline/prefetch.ts) can get
// from plain loads, which is all WebAssembly has, against the native's
// __builtin_prefetch (bench/native/dpbench.c). Run by hand (bench/README.md,
// "Fourth round"):
//   cc -O2 -o build/bench/mlp bench/native/mlp.c && build/bench/mlp [MiB]
// Each row: the best of REPS batches of 512 loads of random cache lines in a
// region on transparent huge pages (argv[1] MiB, default 32: the bench's MAC
// table), ns per line. Every batch draws new lines; nothing is timed but the batch.
//   chase:     one load after the other (the latency of one miss)
//   loads:     a list of addresses, each loaded (8 bytes) into a general
//              register and one of four sinks, as the wasm's load loop before issue 18's fourth round
//   v128:      the same with 16-byte vector loads into four sinks, as
//              assembly/pipeline/prefetch.ts now loads (vmovdqu + vpxor)
//   prefetch:  __builtin_prefetch of each, then each loaded (the native)
//   +k ALU:    k independent ALU operations (four chains, as ordinary code
//              has) after each load or prefetch: how much work between the
//              loads a stream of misses can carry before it slows down
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t REGION = 32ull << 20; // argv[1] MiB (default: the bench's MAC table)
#define N 512
#define REPS 1500

static uint64_t nowNs(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}
static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }

// k ALU operations in four independent chains; the empty asm keeps each step
static inline uint64_t alu(uint64_t x, int k) {
  uint64_t a = x, b = x + 1, c = x + 2, d = x + 3;
  for (int j = 0; j < k; j += 4) {
    a = (a ^ (uint64_t)j) + 1; b = (b ^ (uint64_t)j) + 3; c = (c ^ (uint64_t)j) + 5; d = (d ^ (uint64_t)j) + 7;
    __asm__("" : "+r"(a), "+r"(b), "+r"(c), "+r"(d));
  }
  return a ^ b ^ c ^ d;
}

static uint8_t *m;
static uint32_t off[N]; // line index
static volatile uint64_t sink;

static void draw(void) { for (int i = 0; i < N; i++) off[i] = (uint32_t)(rnd() % (REGION / 64)); }
#define LINE(i) (m + (uint64_t)off[i] * 64)

static double best(int mode, int k) {
  uint64_t b = ~0ull;
  for (int r = 0; r < REPS; r++) {
    draw();
    uint64_t t0 = nowNs(), s = 0, x = (uint64_t)r;
    if (mode == 0) { // 8-byte loads (i64.load), four sinks
      uint64_t a = 0, b2 = 0, c = 0, e = 0;
      for (int i = 0; i < N; i += 4) {
        a ^= *(uint64_t *)LINE(i); b2 ^= *(uint64_t *)LINE(i + 1); c ^= *(uint64_t *)LINE(i + 2); e ^= *(uint64_t *)LINE(i + 3);
        __asm__("" : "+r"(a), "+r"(b2), "+r"(c), "+r"(e));
        if (k) x = alu(x, 4 * k);
      }
      s = a ^ b2 ^ c ^ e;
    } else if (mode == 2) { // 16-byte vector loads (v128.load), four sinks
      typedef long long v2 __attribute__((vector_size(16)));
      v2 a = { 0, 0 }, b2 = { 0, 0 }, c = { 0, 0 }, e = { 0, 0 };
      for (int i = 0; i < N; i += 4) {
        a ^= *(v2 *)LINE(i); b2 ^= *(v2 *)LINE(i + 1); c ^= *(v2 *)LINE(i + 2); e ^= *(v2 *)LINE(i + 3);
        if (k) x = alu(x, 4 * k);
      }
      a ^= b2 ^ c ^ e;
      s = (uint64_t)(a[0] ^ a[1]);
    } else { // prefetch, then the loads the main pass makes
      for (int i = 0; i < N; i++) { __builtin_prefetch(LINE(i)); if (k) x = alu(x, k); }
      for (int i = 0; i < N; i++) s ^= *(uint64_t *)LINE(i);
    }
    uint64_t d = nowNs() - t0;
    sink = s ^ x;
    if (d < b) b = d;
  }
  return (double)b / N;
}

static double aluOnly(int k) { // the same work on one line in L1: the compute alone
  uint64_t b = ~0ull;
  for (int r = 0; r < REPS; r++) {
    uint64_t t0 = nowNs(), s = 0, x = (uint64_t)r;
    for (int i = 0; i < N; i++) { s ^= *(volatile uint64_t *)m; x = alu(x, k); }
    uint64_t d = nowNs() - t0;
    sink = s ^ x;
    if (d < b) b = d;
  }
  return (double)b / N;
}

int main(int argc, char **argv) {
  if (argc > 1) REGION = (uint64_t)strtoul(argv[1], NULL, 10) << 20;
  if (REGION < (1ull << 20)) REGION = 1ull << 20;
  uint8_t *raw = mmap(NULL, REGION + (2u << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) { perror("mmap"); return 1; }
  m = (uint8_t *)(((uintptr_t)raw + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1));
  madvise(m, REGION, MADV_HUGEPAGE);
  memset(m, 1, REGION);
  // chase: a random cycle through distinct lines of the region, a
  // sixteenth of them (CH: a power of two), in 64 runs of CH / 64 steps
  const uint32_t CH = (uint32_t)(REGION / 64 / 16);
  uint32_t *cyc = malloc(CH * sizeof *cyc);
  // distinct lines (one in each run of REGION / 64 / CH), in random order
  for (uint32_t i = 0; i < CH; i++) cyc[i] = i * (uint32_t)(REGION / 64 / CH) + (uint32_t)(rnd() % (REGION / 64 / CH));
  for (uint32_t i = CH - 1; i > 0; i--) {
    uint32_t j = (uint32_t)(rnd() % (i + 1)), t = cyc[i];
    cyc[i] = cyc[j];
    cyc[j] = t;
  }
  for (uint32_t i = 0; i < CH; i++) *(uint64_t *)(m + (uint64_t)cyc[i] * 64) = (uint64_t)cyc[(i + 1) % CH] * 64;
  uint64_t lb = ~0ull, p = (uint64_t)cyc[0] * 64;
  for (int r = 0; r < 64; r++) {
    uint64_t t0 = nowNs();
    for (uint32_t i = 0; i < CH / 64; i++) p = *(uint64_t *)(m + p);
    uint64_t d = nowNs() - t0;
    if (d < lb) lb = d;
  }
  sink = p;
  double lat = (double)lb / (CH / 64);
  printf("chase (latency of one miss): %.1f ns\n", lat);
  // misses in flight = latency / (ns per line)
  printf("ALU ops/line | loads ns/line (in flight) | v128 ns/line (in flight) | prefetch ns/line (in flight) | ALU alone ns/line\n");
  static const int ks[] = { 0, 4, 8, 16, 32, 64 };
  for (unsigned i = 0; i < sizeof ks / sizeof ks[0]; i++) {
    double l = best(0, ks[i]), v = best(2, ks[i]), f = best(1, ks[i]);
    printf("%12d | %13.2f (%5.1f) | %12.2f (%5.1f) | %16.2f (%5.1f) | %17.2f\n", ks[i], l, lat / l, v, lat / v, f, lat / f,
           ks[i] ? aluOnly(ks[i]) : 0.0);
  }
  return 0;
}
