// The bench's loop generator (issue 11: "a traffic generator that is not the
// bottleneck ... with its ceiling reported in the same run"), for kernels
// that refuse BPF_PROG_RUN in live-frames mode, which bench/native/xdp-gen.c
// needs (a sandboxed 6.18 answers EPERM to it). A few frames circulate
// between the two ends of a veth pair, LOOPA and LOOPB; each lap the program
// on LOOPB hands a copy of the frame to OUT's transmit path
// (bench/bpf/xdp-loop.bpf.c). As with xdp-gen, OUT's peer takes such frames
// only while it runs NAPI (an XDP program there, or GRO on).
//
//   xdp-loop LOOPA LOOPB OUT OBJ FRAMEHEX FLOWOFF SECONDS [INFLIGHT] [CPU] [RATE]
// Runs for SECONDS (bounded), pinned to CPU (default 0): the frames are put
// into the loop from there, and a veth's NAPI runs on the CPU that sent to
// it, so the loop (and OUT's peer's receive) stays on that CPU. Prints
// {"sent":N,"laps":L,"seconds":S} on stdout (N: copies handed to OUT).
// INFLIGHT (default 128): frames put into the loop; more are put in if the
// loop stops (a veth ring overflowing under load drops one now and then).
// RATE (frames/s, default 0 = as fast as it can): paced by the program.
// Built by the bench:
//   cc -O2 -o xdp-loop xdp-loop.c -lbpf
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

// the programs' state (.bss ST): { u64 next_ns; u64 sent; u64 laps; u32 seq }
struct st { __u64 next_ns, sent, laps; __u32 seq, pad; };

static int readState(struct bpf_object *obj, struct st *out) {
  struct bpf_map *bss = bpf_object__find_map_by_name(obj, ".bss");
  int zero = 0;
  if (!bss || bpf_map__value_size(bss) != sizeof *out) return -1;
  return bpf_map_lookup_elem(bpf_map__fd(bss), &zero, out);
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr, "usage: xdp-loop LOOPA LOOPB OUT OBJ FRAMEHEX FLOWOFF SECONDS [INFLIGHT] [CPU] [RATE]\n");
    return 2;
  }
  unsigned idx[3];
  for (int i = 0; i < 3; i++)
    if (!(idx[i] = if_nametoindex(argv[i + 1]))) { fprintf(stderr, "xdp-loop: interface %s: %s\n", argv[i + 1], strerror(errno)); return 1; }
  unsigned la = idx[0], lb = idx[1], out = idx[2];
  size_t hl = strlen(argv[5]);
  if (hl % 2 || hl / 2 < 14 || hl / 2 > 256) { fprintf(stderr, "xdp-loop: FRAMEHEX must be 14..256 bytes in hex\n"); return 2; }
  unsigned char frame[256];
  size_t len = hl / 2;
  for (size_t i = 0; i < len; i++) {
    unsigned v;
    if (sscanf(argv[5] + 2 * i, "%2x", &v) != 1) { fprintf(stderr, "xdp-loop: bad hex\n"); return 2; }
    frame[i] = (unsigned char)v;
  }
  unsigned flowOff = (unsigned)atoi(argv[6]);
  double seconds = atof(argv[7]);
  int inflight = argc > 8 ? atoi(argv[8]) : 128;
  int cpu = argc > 9 ? atoi(argv[9]) : 0;
  double rate = argc > 10 ? atof(argv[10]) : 0;
  if (seconds <= 0 || seconds > 600) { fprintf(stderr, "xdp-loop: SECONDS must be in (0, 600]\n"); return 2; }
  if (inflight < 1 || inflight > 1024) { fprintf(stderr, "xdp-loop: INFLIGHT must be in [1, 1024]\n"); return 2; }
  if (rate < 0 || rate > 1e9) { fprintf(stderr, "xdp-loop: RATE must be in [0, 1e9] frames/s\n"); return 2; }
  if (flowOff >= len) { fprintf(stderr, "xdp-loop: FLOWOFF must be inside the frame\n"); return 2; }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);

  struct bpf_object *obj = bpf_object__open_file(argv[4], NULL);
  if (!obj || libbpf_get_error(obj)) { fprintf(stderr, "xdp-loop: open %s: %s\n", argv[4], strerror(errno)); return 1; }
  struct bpf_map *ro = bpf_object__find_map_by_name(obj, ".rodata");
  size_t sz;
  const void *iv = ro ? bpf_map__initial_value(ro, &sz) : NULL;
  // CFG: { u32 flow_off; u32 pad; u64 interval_ns; u64 deadline_ns }
  if (!iv || sz < 24 || sz > 4096) { fprintf(stderr, "xdp-loop: %s: unexpected .rodata\n", argv[4]); return 1; }
  unsigned char buf[4096];
  __u64 interval = rate > 0 ? (__u64)(1e9 / rate + 0.5) : 0;
  double t0 = now(), end = t0 + seconds;
  // a second past the loader's own end: the programs stop even if it never detaches them
  __u64 deadline = (__u64)((end + 1) * 1e9);
  memcpy(buf, iv, sz);
  memcpy(buf, &flowOff, 4);
  memcpy(buf + 8, &interval, 8);
  memcpy(buf + 16, &deadline, 8);
  bpf_map__set_initial_value(ro, buf, sz);
  if (bpf_object__load(obj)) { fprintf(stderr, "xdp-loop: load: %s\n", strerror(errno)); return 1; }
  struct bpf_program *pa = bpf_object__find_program_by_name(obj, "loop_a"), *pb = bpf_object__find_program_by_name(obj, "loop_b");
  struct bpf_map *outMap = bpf_object__find_map_by_name(obj, "OUT");
  if (!pa || !pb || !outMap) { fprintf(stderr, "xdp-loop: %s lacks loop_a, loop_b or OUT\n", argv[4]); return 1; }
  // the interface under test first (a copy), LOOPB last (the frame itself, on around the loop)
  __u32 k0 = 0, k1 = 1;
  if (bpf_map_update_elem(bpf_map__fd(outMap), &k0, &out, 0) || bpf_map_update_elem(bpf_map__fd(outMap), &k1, &lb, 0)) {
    fprintf(stderr, "xdp-loop: devmap: %s\n", strerror(errno));
    return 1;
  }
  // bpf_link attachments: detached when this process ends, however it ends
  struct bpf_link *lka = bpf_program__attach_xdp(pa, (int)la);
  if (libbpf_get_error(lka)) { fprintf(stderr, "xdp-loop: attach to %s: %s\n", argv[1], strerror(errno)); return 1; }
  struct bpf_link *lkb = bpf_program__attach_xdp(pb, (int)lb);
  if (libbpf_get_error(lkb)) { fprintf(stderr, "xdp-loop: attach to %s: %s\n", argv[2], strerror(errno)); bpf_link__destroy(lka); return 1; }

  int s = socket(AF_PACKET, SOCK_RAW, 0);
  if (s < 0) { fprintf(stderr, "xdp-loop: socket: %s\n", strerror(errno)); return 1; }
  struct sockaddr_ll sa = { .sll_family = AF_PACKET, .sll_ifindex = (int)la, .sll_halen = 6 };
  struct st st;
  unsigned long long lastLaps = 0;
  int rc = 0;
  for (double t = now(); t < end; t = now()) {
    if (readState(obj, &st)) { fprintf(stderr, "xdp-loop: cannot read the programs' state\n"); rc = 1; break; }
    // the loop has stopped (or not started): put frames into it from LOOPA
    if (st.laps == lastLaps)
      for (int i = 0; i < inflight; i++)
        if (sendto(s, frame, len, 0, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != ENOBUFS && errno != EAGAIN) {
          fprintf(stderr, "xdp-loop: send into %s: %s\n", argv[1], strerror(errno));
          rc = 1;
          break;
        }
    if (rc) break;
    lastLaps = st.laps;
    double left = end - now();
    usleep(left > 0.02 ? 20000 : left > 0 ? (useconds_t)(left * 1e6) : 0);
  }
  double took = now() - t0;
  // LOOPB first: the frames then leave the loop into LOOPB's stack, which drops them
  bpf_link__destroy(lkb);
  bpf_link__destroy(lka);
  if (rc) return rc;
  if (readState(obj, &st)) { fprintf(stderr, "xdp-loop: cannot read the programs' count\n"); return 1; }
  printf("{\"sent\":%llu,\"laps\":%llu,\"seconds\":%.3f}\n", (unsigned long long)st.sent, (unsigned long long)st.laps, took);
  bpf_object__close(obj);
  close(s);
  return 0;
}
