// The 802.1Q half of the Linux kernel datapath in the veth race (bench/race.ts).
// This kernel has no 802.1Q devices and no VLAN-aware bridge, so the access
// tag is handled by tc-BPF on the trunk: on ingress the tag must be VID (else
// the frame is dropped, as nvedge drops `untagged` / `unknown-vid`) and is
// popped, the untagged frame goes on to the bridge and its VXLAN device; on
// egress the tag is pushed back. Compiled by clang at bench time:
//   clang -O2 -g -target bpf -DVID=10 -c vlan.c -o vlan.o
// IEEE 802.1Q: TPID 0x8100 at offset 12, TCI at 14, VID = TCI & 0x0fff.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef VID
#define VID 10
#endif

SEC("tc/ingress")
int vlan_pop(struct __sk_buff *skb)
{
	__u16 tci;
	if (skb->vlan_present) {
		/* The receive path already moved the tag out of band (skb_vlan_untag). */
		if (skb->vlan_proto != bpf_htons(ETH_P_8021Q))
			return TC_ACT_SHOT;
		tci = skb->vlan_tci;
	} else {
		__u16 tpid;
		if (bpf_skb_load_bytes(skb, 12, &tpid, 2) < 0 || tpid != bpf_htons(ETH_P_8021Q))
			return TC_ACT_SHOT; /* untagged */
		if (bpf_skb_load_bytes(skb, 14, &tci, 2) < 0)
			return TC_ACT_SHOT;
		tci = bpf_ntohs(tci);
	}
	if ((tci & 0x0fff) != VID)
		return TC_ACT_SHOT; /* unknown VID (or priority tag) */
	if (bpf_skb_vlan_pop(skb))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

SEC("tc/egress")
int vlan_push(struct __sk_buff *skb)
{
	if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), VID))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
