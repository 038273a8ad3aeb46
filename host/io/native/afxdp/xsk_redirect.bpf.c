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
// frame here; one the driver or the sender put in the metadata is read with
// the metadata kfunc (nvedge_xsk_meta, below).
// Built with clang -target bpf by scripts/build.mjs; loaded by libbpf, with
// no bpffs and no libxdp dispatcher (neither is usable on every kernel).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

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

/*
 * The tag in the packet's metadata (issue 11): a driver that strips 802.1Q
 * tags on receive, and veth for a frame whose sender kept the tag out of band
 * (a VLAN device, tc's vlan push, tx-vlan-offload on), hands XDP an untagged
 * frame; the kernel's metadata kfunc (Linux 6.8, device-bound programs only)
 * still says what the tag was. The variant that can ask (nvedge_xsk_meta,
 * loaded bound to its device by afxdp.c when the kernel and the driver allow)
 * checks that tag and, for a frame going to the socket, writes it back into
 * the frame after the MACs, where the data plane reads it (IEEE 802.1Q). A
 * frame passed to the kernel is left as it came (its tag still in the
 * metadata). The plain variant (nvedge_xsk) sees only tags in the frame.
 */
/*
 * The CPU each queue's frames last arrived on, plus one (0: none yet),
 * written only when it changes (read-mostly: no cache line bounced per
 * frame). The worker reads it (afxdp.c AvoidRxCpus) to keep off that CPU:
 * the receive softirq that runs this program and copies each frame into the
 * socket (copy mode) runs there, and a worker on the same core shares it
 * with that softirq, which preempts it (issue 11, session 10: in the veth
 * race under load the scheduler put the worker on the generator's core for
 * 60 % of its samples, where it ran that core's softirq backlog inline).
 */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 64);
  __type(key, __u32);
  __type(value, __u32);
} rxcpu SEC(".maps");

extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto, __u16 *vlan_tci) __ksym __weak;

static __always_inline int redirect(struct xdp_md *ctx, const int meta) {
  __be16 proto = 0;
  __u16 tci = 0;
  int inMeta = meta && bpf_xdp_metadata_rx_vlan_tag(ctx, &proto, &tci) == 0;
  __u32 k = 0;
  __u64 *vid = bpf_map_lookup_elem(&cfg, &k);
  if (vid && *vid) {
    const __u8 *p = (const __u8 *)(long)ctx->data, *end = (const __u8 *)(long)ctx->data_end;
    int ours = inMeta ? proto == bpf_htons(0x8100) && (tci & 0xfff) == *vid
                      : p + 18 <= end && p[12] == 0x81 && p[13] == 0x00 && ((((__u32)p[14] << 8) | p[15]) & 0xfff) == *vid;
    if (!ours) {
      __u32 o = 1;
      __u64 *other = bpf_map_lookup_elem(&cfg, &o);
      if (other) __sync_fetch_and_add(other, 1);
      return XDP_PASS;
    }
  }
  __u32 q = ctx->rx_queue_index;
  if (inMeta) {
    if (!bpf_map_lookup_elem(&xsks, &q)) return XDP_PASS; // no socket on this queue: the kernel's, untouched
    if (bpf_xdp_adjust_head(ctx, -4)) return XDP_PASS;
    __u8 *p = (__u8 *)(long)ctx->data;
    const __u8 *end = (const __u8 *)(long)ctx->data_end;
    if (p + 16 > end) return XDP_DROP;
    __builtin_memmove(p, p + 4, 12);
    *(__be16 *)(p + 12) = proto;
    p[14] = tci >> 8;
    p[15] = tci & 0xff;
  }
  __u32 *c = bpf_map_lookup_elem(&rxcpu, &q);
  if (c) {
    __u32 me = bpf_get_smp_processor_id() + 1;
    if (*c != me) *c = me;
  }
  return bpf_redirect_map(&xsks, q, XDP_PASS);
}

SEC("xdp")
int nvedge_xsk(struct xdp_md *ctx) { return redirect(ctx, 0); }

SEC("xdp")
int nvedge_xsk_meta(struct xdp_md *ctx) { return redirect(ctx, 1); }

char LICENSE[] SEC("license") = "Dual BSD/GPL";
