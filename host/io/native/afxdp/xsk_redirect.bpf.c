// The XDP program of `nvedge run --io afxdp` (issue 11): every frame that
// arrives on a queue with an AF_XDP socket goes to that socket; a queue
// without one (or a frame the map refuses) goes on to the kernel's stack
// (XDP_PASS). One map entry per receive queue, written by afxdp.c.
// Built with clang -target bpf by scripts/build.mjs; loaded by libbpf, with
// no bpffs and no libxdp dispatcher (neither is usable on every kernel).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, 64);
  __type(key, __u32);
  __type(value, __u32);
} xsks SEC(".maps");

SEC("xdp")
int nvedge_xsk(struct xdp_md *ctx) {
  return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
