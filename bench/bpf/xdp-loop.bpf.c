// The programs of the bench's loop generator (bench/native/xdp-loop.c, issue
// 11 "a traffic generator that is not the bottleneck"), for kernels that
// refuse BPF_PROG_RUN in live-frames mode (bench/native/xdp-gen.c): a few
// frames circulate between the two ends of a veth pair kept for the purpose,
// and each lap hands one copy to the interface under test. No socket, no
// skb and no syscall per frame on the sender's side: only the veths' NAPI.
//
//   loop_a (on LOOPA): XDP_TX, the frame back to LOOPB.
//   loop_b (on LOOPB): sets the flow byte, then redirects the frame with
//     BPF_F_BROADCAST to every interface in OUT (Linux 5.15): the loader puts
//     the interface under test first and LOOPB itself last, so the kernel
//     gives the first a copy (xdpf_clone) and sends the frame itself on
//     around the loop. The loader put the template in (by sending it from
//     LOOPA); only the flow byte is ever written to it after that, since
//     what a receiver writes into its copy (skb_vlan_untag moving the MAC
//     addresses over the tag) stays in the copy. xdp-gen.bpf.c, whose
//     pages come back from the receiver, has to rewrite every frame.
//
// Paced (CFG.interval_ns > 0): a lap whose slot has not come sends nothing
// out and goes round again (XDP_TX), so the generator keeps its CPU busy
// either way, as trafgen and xdp-gen do. Slots missed while the loop could
// not run are caught up, at most MAX_BEHIND_NS of them.
//
// Bounded in time twice: the loader detaches both programs (bpf_link, so
// also when it dies), and after CFG.deadline_ns (CLOCK_MONOTONIC, which is
// bpf_ktime_get_ns's) both drop every frame, which ends the loop.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_FRAME 256
#define MAX_BEHIND_NS 2000000

struct {
  __uint(type, BPF_MAP_TYPE_DEVMAP);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u32);
} OUT SEC(".maps");

// Set by the loader before load (the object's only .rodata global, at offset 0).
volatile const struct {
  __u32 flow_off;
  __u32 pad;
  __u64 interval_ns; // 0: every lap sends
  __u64 deadline_ns; // after it, every frame is dropped
} CFG = {};
// The programs' state, the object's only .bss global (the loader reads `sent` and `laps`).
struct {
  __u64 next_ns; // the next frame's slot
  __u64 sent;    // copies handed to the interface under test
  __u64 laps;    // laps in all
  __u32 seq;     // the flow byte's next value
} ST = {};

SEC("xdp")
int loop_a(struct xdp_md *ctx) {
  return bpf_ktime_get_ns() > CFG.deadline_ns ? XDP_DROP : XDP_TX;
}

SEC("xdp")
int loop_b(struct xdp_md *ctx) {
  __u8 *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
  __u64 now = bpf_ktime_get_ns();
  if (now > CFG.deadline_ns) return XDP_DROP;
  ST.laps++;
  __u64 iv = CFG.interval_ns;
  if (iv) {
    if (now < ST.next_ns) return XDP_TX;
    ST.next_ns = now - ST.next_ns > MAX_BEHIND_NS ? now + iv : ST.next_ns + iv;
  }
  __u32 off = CFG.flow_off;
  if (off < MAX_FRAME && data + off + 1 <= end) data[off] = (__u8)ST.seq++;
  ST.sent++;
  return bpf_redirect_map(&OUT, 0, BPF_F_BROADCAST);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
