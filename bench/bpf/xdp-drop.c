// The race's generator-ceiling DUT (bench/race.ts, issue 11): every frame
// dropped as it arrives, in the veth's NAPI, before any skb is built: the
// least a receiver can cost, so what arrives is what the generator (with
// the veth) can offer at most, to an XDP DUT as to any other. Attached with
//   ip link set dev X xdp obj xdp-drop.o sec xdp
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_drop(struct xdp_md *ctx) {
  return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
