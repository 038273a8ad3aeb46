// The bench's XDP traffic generator (issue 11: "a traffic generator that is
// not the bottleneck ... with its ceiling reported in the same run"). Sends
// one frame, over and over, out of an interface, with the kernel's
// BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18;
// the mechanism of xdp-tools' xdp-trafgen, whose own programs do not load on
// this kernel): frames are built once in page_pool pages and recycled, each
// run of bench/bpf/xdp-gen.bpf.c (XDP_TX toward the ingress interface) puts
// one in the interface's XDP transmit path, in batches, with no socket, no
// skb and no copy on the sender's side (the program rewrites the frame from
// its template each run: see there why). A veth takes such frames only while
// its peer runs NAPI (an XDP program there, or GRO on: the bench turns it on).
//
//   xdp-gen IFNAME OBJ FRAMEHEX FLOWOFF SECONDS [BATCH] [CPU] [RATE]
// Runs for SECONDS (bounded), pinned to CPU (default 0), and prints
// {"sent":N,"seconds":S} on stdout (N: frames sent, counted by the program).
// RATE (frames/s, default 0 = as fast as it can): paced by the program
// itself (see there); the runs in between drop their frame, so the
// generator keeps its CPU busy either way, as trafgen does. Built by the bench:
//   cc -O2 -o xdp-gen xdp-gen.c -lbpf
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#ifndef BPF_F_TEST_XDP_LIVE_FRAMES
#define BPF_F_TEST_XDP_LIVE_FRAMES (1U << 1)
#endif

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: xdp-gen IFNAME OBJ FRAMEHEX FLOWOFF SECONDS [BATCH] [CPU]\n");
    return 2;
  }
  unsigned ifindex = if_nametoindex(argv[1]);
  if (!ifindex) { fprintf(stderr, "xdp-gen: interface %s: %s\n", argv[1], strerror(errno)); return 1; }
  size_t hl = strlen(argv[3]);
  // the program rewrites the frame from its template each run, up to 256 bytes (bench/bpf/xdp-gen.bpf.c MAX_FRAME)
  if (hl % 2 || hl / 2 < 14 || hl / 2 > 256) { fprintf(stderr, "xdp-gen: FRAMEHEX must be 14..256 bytes in hex\n"); return 2; }
  unsigned char frame[256];
  size_t len = hl / 2;
  for (size_t i = 0; i < len; i++) {
    unsigned v;
    if (sscanf(argv[3] + 2 * i, "%2x", &v) != 1) { fprintf(stderr, "xdp-gen: bad hex\n"); return 2; }
    frame[i] = (unsigned char)v;
  }
  unsigned flowOff = (unsigned)atoi(argv[4]);
  double seconds = atof(argv[5]);
  unsigned batch = argc > 6 ? (unsigned)atoi(argv[6]) : 256;
  int cpu = argc > 7 ? atoi(argv[7]) : 0;
  double rate = argc > 8 ? atof(argv[8]) : 0;
  if (seconds <= 0 || seconds > 600) { fprintf(stderr, "xdp-gen: SECONDS must be in (0, 600]\n"); return 2; }
  if (batch < 1 || batch > 256) { fprintf(stderr, "xdp-gen: BATCH must be in [1, 256]\n"); return 2; }
  if (rate < 0 || rate > 1e9) { fprintf(stderr, "xdp-gen: RATE must be in [0, 1e9] frames/s\n"); return 2; }
  if (flowOff >= len) { fprintf(stderr, "xdp-gen: FLOWOFF must be inside the frame\n"); return 2; }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);

  struct bpf_object *obj = bpf_object__open_file(argv[2], NULL);
  if (!obj || libbpf_get_error(obj)) { fprintf(stderr, "xdp-gen: open %s: %s\n", argv[2], strerror(errno)); return 1; }
  struct bpf_map *ro = bpf_object__find_map_by_name(obj, ".rodata");
  if (ro) {
    size_t sz;
    const void *iv = bpf_map__initial_value(ro, &sz);
    // CFG is the object's only read-only global: { u32 flow_off; u32 len; u64 interval_ns; u8 frame[256] }
    if (!iv || sz < 16 + 256 || sz > 4096) { fprintf(stderr, "xdp-gen: %s: unexpected .rodata (%zu bytes)\n", argv[2], sz); return 1; }
    unsigned char buf[4096];
    __u32 l = (__u32)len;
    __u64 interval = rate > 0 ? (__u64)(1e9 / rate + 0.5) : 0;
    memcpy(buf, iv, sz);
    memcpy(buf, &flowOff, 4);
    memcpy(buf + 4, &l, 4);
    memcpy(buf + 8, &interval, 8);
    memcpy(buf + 16, frame, len);
    bpf_map__set_initial_value(ro, buf, sz);
  } else { fprintf(stderr, "xdp-gen: %s has no .rodata (an older program?)\n", argv[2]); return 1; }
  struct bpf_program *prog = bpf_object__find_program_by_name(obj, "xdp_gen");
  if (!prog) { fprintf(stderr, "xdp-gen: no xdp_gen program\n"); return 1; }
  if (bpf_object__load(obj)) { fprintf(stderr, "xdp-gen: load: %s\n", strerror(errno)); return 1; }
  int fd = bpf_program__fd(prog);

  struct xdp_md ctx = { .data_end = (__u32)len, .ingress_ifindex = ifindex };
  unsigned long long sent = 0;
  double t0 = now(), end = t0 + seconds;
  // One call runs the program `repeat` times: calls of about 20 ms, long
  // enough that the call's own set-up (a page_pool each, about 1 ms) is a
  // small gap, short enough that the time bound is kept.
  unsigned repeat = 1 << 14;
  for (double t = t0; t < end; ) {
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = (__u32)len, .ctx_in = &ctx, .ctx_size_in = sizeof ctx,
                .repeat = repeat, .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = batch);
    if (bpf_prog_test_run_opts(fd, &o)) {
      if (errno == EINTR) continue;
      fprintf(stderr, "xdp-gen: BPF_PROG_RUN (live frames) on %s: %s\n", argv[1], strerror(errno));
      return 1;
    }
    double t1 = now(), took = t1 - t;
    t = t1;
    if (took < 0.01 && repeat < (1u << 24)) repeat *= 2;
    else if (took > 0.04 && repeat > 256) repeat /= 2;
  }
  // the program's count of frames sent (.bss: ST { u64 next_ns; u64 sent; u32 seq })
  struct bpf_map *bss = bpf_object__find_map_by_name(obj, ".bss");
  unsigned char bv[64] = { 0 };
  int zero = 0;
  if (bss && bpf_map__value_size(bss) == 24 && bpf_map_lookup_elem(bpf_map__fd(bss), &zero, bv) == 0) memcpy(&sent, bv + 8, 8);
  else { fprintf(stderr, "xdp-gen: cannot read the program's count\n"); return 1; }
  printf("{\"sent\":%llu,\"seconds\":%.3f}\n", sent, now() - t0);
  bpf_object__close(obj);
  return 0;
}
