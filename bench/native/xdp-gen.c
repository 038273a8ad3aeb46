// The bench's XDP traffic generator (issue 11: "a traffic generator that is
// not the bottleneck ... with its ceiling reported in the same run"). Sends
// one frame, over and over, out of an interface, with the kernel's
// BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18;
// the mechanism of xdp-tools' xdp-trafgen, whose own programs do not load on
// this kernel): frames are built once in page_pool pages and recycled, each
// run of bench/bpf/xdp-gen.bpf.c (XDP_TX toward the ingress interface) puts
// one in the interface's XDP transmit path, in batches, with no socket, no
// skb and no copy on the sender's side. A veth takes such frames only while
// its peer runs NAPI (an XDP program there, or GRO on: the bench turns it on).
//
//   xdp-gen IFNAME OBJ FRAMEHEX FLOWOFF SECONDS [BATCH] [CPU]
// Runs for SECONDS (bounded), pinned to CPU (default 0), and prints
// {"sent":N,"seconds":S} on stdout. Built by the bench:
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
  if (hl % 2 || hl / 2 < 14 || hl / 2 > 1500) { fprintf(stderr, "xdp-gen: FRAMEHEX must be 14..1500 bytes in hex\n"); return 2; }
  unsigned char frame[1500];
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
  if (seconds <= 0 || seconds > 600) { fprintf(stderr, "xdp-gen: SECONDS must be in (0, 600]\n"); return 2; }
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
    if (iv && sz >= 4 && sz <= 4096) {
      unsigned char buf[4096];
      memcpy(buf, iv, sz);
      memcpy(buf, &flowOff, 4); // FLOW_OFF is the object's only read-only global
      bpf_map__set_initial_value(ro, buf, sz);
    }
  }
  struct bpf_program *prog = bpf_object__find_program_by_name(obj, "xdp_gen");
  if (!prog) { fprintf(stderr, "xdp-gen: no xdp_gen program\n"); return 1; }
  if (bpf_object__load(obj)) { fprintf(stderr, "xdp-gen: load: %s\n", strerror(errno)); return 1; }
  int fd = bpf_program__fd(prog);

  struct xdp_md ctx = { .data_end = (__u32)len, .ingress_ifindex = ifindex };
  unsigned long long sent = 0;
  double t0 = now(), end = t0 + seconds;
  // one call sends `repeat` frames; small enough that the time bound is kept
  unsigned repeat = 1 << 16;
  while (now() < end) {
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = (__u32)len, .ctx_in = &ctx, .ctx_size_in = sizeof ctx,
                .repeat = repeat, .flags = BPF_F_TEST_XDP_LIVE_FRAMES, .batch_size = batch);
    if (bpf_prog_test_run_opts(fd, &o)) {
      if (errno == EINTR) continue;
      fprintf(stderr, "xdp-gen: BPF_PROG_RUN (live frames) on %s: %s\n", argv[1], strerror(errno));
      return 1;
    }
    sent += repeat;
  }
  printf("{\"sent\":%llu,\"seconds\":%.3f}\n", sent, now() - t0);
  bpf_object__close(obj);
  return 0;
}
