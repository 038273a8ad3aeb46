// The XDP program of the bench's XDP traffic generator (bench/native/xdp-gen.c,
// issue 11 "a traffic generator that is not the bottleneck"): run by
// BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18),
// each run of it sends one frame out of the interface the run names as its
// ingress (XDP_TX is turned into a redirect there), with no socket, no skb
// and no copy on the sender's side. The frame's pages are recycled with this
// program's changes kept, so it rewrites the one byte that varies: the low
// byte of the UDP source port at FLOW_OFF (256 flows, as bench/race.ts's
// trafgen configs make with dinc()). UDP checksum 0: nothing else to fix.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

volatile const __u32 FLOW_OFF = 0; // set by the loader before load (.rodata)
__u32 seq = 0;

SEC("xdp")
int xdp_gen(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
  __u32 off = FLOW_OFF;
  if (off < 256) {
    __u8 *p = data + off;
    if ((void *)(p + 1) <= end) *p = (__u8)seq++;
  }
  return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
