// The XDP program of the bench's XDP traffic generator (bench/native/xdp-gen.c,
// issue 11 "a traffic generator that is not the bottleneck"): run by
// BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18),
// each run of it sends one frame out of the interface the run names as its
// ingress (XDP_TX is turned into a redirect there), with no socket, no skb
// and no copy on the sender's side.
//
// The frame's page_pool pages are recycled as they are when the receiver
// frees them: the kernel re-initialises only the xdp_buff's pointers, not the
// bytes (Documentation/bpf/bpf_prog_run.rst, "live frames"). A receiver that
// writes into the frame in place therefore changes what is sent next: the
// kernel's receive path untags an 802.1Q frame by moving its MAC addresses 4
// bytes up in the same page (skb_vlan_untag, before the taps and tc ingress),
// so a recycled encap frame came back with its EtherType overwritten by MAC
// bytes and every non-XDP receiver (the kernel bridge's tc-BPF tag pop,
// AF_PACKET) dropped it as untagged: the race's "encap collapse". So each run
// writes the whole frame again from the template the loader put in .rodata
// (CFG.frame, CFG.len bytes), then the one byte that varies: the low byte of
// the UDP source port at CFG.flow_off (256 flows, as bench/race.ts's trafgen
// configs make with dinc()). UDP checksum 0: nothing else to fix.
//
// Paced (CFG.interval_ns > 0): each run sends only when the frame's slot has
// come (one every interval_ns, from the first run on) and drops the frame
// otherwise (XDP_DROP, recycled at once). The pacing lives here, not in the
// loader between calls, because each BPF_PROG_RUN call sets up and tears
// down its own page_pool (about 1 ms here): only long calls reach Mpps.
// Slots missed while the generator was not running (the gap between two
// calls, or preempted) are caught up, at most MAX_BEHIND_NS of them: a burst
// at the generator's full rate, flushed to the peer every BATCH runs.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define MAX_FRAME 256
#define MAX_BEHIND_NS 2000000

// Set by the loader before load (the object's only .rodata global, at offset 0).
volatile const struct {
  __u32 flow_off;
  __u32 len;
  __u64 interval_ns; // 0: every run sends
  __u8 frame[MAX_FRAME];
} CFG = {};
// The program's state, the object's only .bss global (the loader reads `sent`).
struct {
  __u64 next_ns; // the next frame's slot
  __u64 sent;    // frames sent (XDP_TX)
  __u32 seq;     // the varying byte's next value
} ST = {};

SEC("xdp")
int xdp_gen(struct xdp_md *ctx) {
  __u8 *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
  __u64 iv = CFG.interval_ns;
  if (iv) {
    __u64 now = bpf_ktime_get_ns();
    if (now < ST.next_ns) return XDP_DROP;
    ST.next_ns = now - ST.next_ns > MAX_BEHIND_NS ? now + iv : ST.next_ns + iv;
  }
  __u32 len = CFG.len;
  // 8 bytes at a time while a whole word fits in the template and the frame
  for (__u32 i = 0; i < MAX_FRAME / 8; i++) {
    __u32 o = i * 8;
    if (o + 8 > len || data + o + 8 > end) break;
    *(__u64 *)(data + o) = *(const volatile __u64 *)&CFG.frame[o];
  }
  // then the tail, a byte at a time
  for (__u32 o = len & ~7u; o < MAX_FRAME && o < len; o++) {
    if (data + o + 1 > end) break;
    data[o] = CFG.frame[o];
  }
  __u32 off = CFG.flow_off;
  if (off < MAX_FRAME && data + off + 1 <= end) data[off] = (__u8)ST.seq++;
  ST.sent++;
  return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
