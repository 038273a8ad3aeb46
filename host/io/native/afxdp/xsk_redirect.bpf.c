// The XDP program of `nvedge run --io afxdp` (issue 11): every frame that
// arrives on a queue with an AF_XDP socket goes to that socket; a queue
// without one (or a frame the map refuses) goes on to the kernel's stack
// (XDP_PASS). One map entry per receive queue, written by afxdp.c.
//
// A tagged uplink (underlay.vlan, INTERFACES.md): `cfg[0]` holds the VLAN id
// (0: untagged uplink). Only frames carrying that 802.1Q tag in their bytes
// (TPID 0x8100 at offset 12, IEEE 802.1Q) go to the socket, which takes the
// tag off as it copies the frame out (afxdp.c recv); any other frame is the
// kernel's (XDP_PASS: another VLAN on the same link, untagged management
// traffic), counted in `cfg[1]` (the socket's `vlanOther`). XDP runs before
// the kernel moves a tag into the packet's metadata (skb_vlan_untag in
// __netif_receive_skb_core), so a tag the sender put in the frame is in the
// frame here; a NIC that strips tags in hardware must have that off
// (`ethtool -K DEV rxvlan off`), as the README says.
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

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u64);
} cfg SEC(".maps");

SEC("xdp")
int nvedge_xsk(struct xdp_md *ctx) {
  __u32 k = 0;
  __u64 *vid = bpf_map_lookup_elem(&cfg, &k);
  if (vid && *vid) {
    const __u8 *p = (const __u8 *)(long)ctx->data, *end = (const __u8 *)(long)ctx->data_end;
    if (p + 18 > end || p[12] != 0x81 || p[13] != 0x00 || ((((__u32)p[14] << 8) | p[15]) & 0xfff) != *vid) {
      __u32 o = 1;
      __u64 *other = bpf_map_lookup_elem(&cfg, &o);
      if (other) __sync_fetch_and_add(other, 1);
      return XDP_PASS;
    }
  }
  return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
