// Offloads a local sender left undone (issue 11): a frame read from a veth or
// tap whose sender had checksum offload (CHECKSUM_PARTIAL) or TSO/USO (a GSO
// super-frame). The receiver (host/io/native) asks the kernel for each frame's
// virtio-net header (PACKET_VNET_HDR), puts it in the 10 bytes before the
// frame in its slot and sets IF_VNET in the in-desc flags (abi.ts); a GSO
// super-frame it cuts into slots of one segment each: every slot holds the
// super-frame's headers followed by segment k's payload, with IF_GSO_SEG, k
// and IF_GSO_LAST in the flags. Here the data plane finishes the job the
// sender's NIC would have done, before any other check reads the frame:
//   - NEEDS_CSUM: the L4 checksum from csum_start is completed as the kernel's
//     skb_checksum_help does (the field holds the pseudo-header sum already;
//     virtio 1.x §5.1.6.2);
//   - GSO: each segment's headers are made those of a real frame, as the
//     kernel's tcp_gso_segment / udp4_ufo_fragment would: IP total length /
//     payload length, IPv4 ID + k and header checksum, TCP sequence + k x
//     gso_size, CWR only in the first segment, FIN and PSH only in the last,
//     UDP length, and the L4 checksum computed over the segment. A tunnel's
//     outer headers (VXLAN, Geneve, NVGRE from a kernel VTEP on the underlay,
//     SKB_GSO_UDP_TUNNEL) are fixed the same way, their UDP checksum recomputed
//     when it was set.
import { ld16, ld32, st16, st32, csumAdd, csumFold } from "../util";
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN, ETHERTYPE_TEB } from "../proto/ethernet";
import { IP4_TOTLEN, IP4_ID, IP4_CSUM, IP4_PROTO, IP4_SRC, IPPROTO_UDP, IPPROTO_TCP, IPPROTO_GRE } from "../proto/ipv4";
import { IP6_PLEN, IP6_NXT, IP6_SRC } from "../proto/ipv6";
import { NVGRE_FLAGS_K } from "../proto/nvgre";
import { IF_GSO_SEG, IF_GSO_LAST, IF_SEG_SHIFT } from "../abi";
import { vxlanPort, genevePort } from "./underlay";
import * as D from "../drops";

// struct virtio_net_hdr (virtio 1.x §5.1.6, little-endian): the 10 bytes
// before the frame.
export const VNET_LEN: u32 = 10;
const VH_FLAGS: u32 = 0;
const VH_GSO_TYPE: u32 = 1;
const VH_GSO_SIZE: u32 = 4;
const VH_CSUM_START: u32 = 6;
const VH_CSUM_OFFSET: u32 = 8;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u32 = 1;
const GSO_NONE: u32 = 0;
const GSO_TCPV4: u32 = 1;
const GSO_TCPV6: u32 = 4;
const GSO_UDP_L4: u32 = 5;
const GSO_ECN: u32 = 0x80;

export const OFFLOAD_OK: u32 = 0xffffffff;

/** After offloadFix of a GSO frame returned OFFLOAD_OK: the IP header right before csum_start, and whether it is IPv4 (pipeline/gso.ts). */
export let fixL3: usize = 0;
export let fixV4: bool = false;

// TCP (RFC 9293 §3.1): sequence at 4, data offset in the high nibble of 12,
// flags at 13, checksum at 16.
const TCP_SEQ: u32 = 4;
const TCP_DOFF: u32 = 12;
const TCP_FLAGS: u32 = 13;
const TCP_CSUM: u32 = 16;
const TCP_FIN: u32 = 0x01;
const TCP_PSH: u32 = 0x08;
const TCP_CWR: u32 = 0x80;

/** The L4 checksum (RFC 768, RFC 9293 §3.1, RFC 8200 §8.1) of `l4len` bytes at l4, its field at l4 + field zeroed first. */
function l4Checksum(addrs: usize, alen: u32, proto: u32, l4: usize, l4len: u32, field: u32): void {
  store<u16>(l4 + field, 0);
  const s = csumAdd(csumAdd(<u64>proto + <u64>l4len, addrs, alen), l4, l4len);
  const c = ~csumFold(s) & 0xffff;
  // a computed 0 goes out as 0xffff (RFC 768: 0 means "no checksum" for UDP)
  st16(l4 + field, c == 0 ? 0xffff : c);
}

/**
 * Finishes the offloads of the frame at p (len bytes, its virtio-net header in
 * the `room` bytes before it, in-desc flags `flags`). Returns OFFLOAD_OK or the
 * drop reason; on a drop the frame may be half rewritten, and is not used.
 */
export function offloadFix(p: usize, len: u32, room: u32, flags: u32): u32 {
  // the header must be inside the slot, before the frame
  if (room < VNET_LEN) return D.D_BAD_VNET_HEADER;
  const vh = p - VNET_LEN;
  const gsoType = <u32>load<u8>(vh, VH_GSO_TYPE) & ~GSO_ECN;
  const cs = <u32>load<u16>(vh, VH_CSUM_START);
  const co = <u32>load<u16>(vh, VH_CSUM_OFFSET);
  if (gsoType == GSO_NONE) {
    if ((flags & IF_GSO_SEG) != 0) return D.D_BAD_VNET_HEADER; // a segment of no super-frame
    if ((<u32>load<u8>(vh, VH_FLAGS) & VIRTIO_NET_HDR_F_NEEDS_CSUM) == 0) return OFFLOAD_OK;
    // csum_offset: TCP 16, UDP 6 (any 2-byte field inside the frame is honoured)
    if (cs < 14 || cs + co + 2 > len) return D.D_BAD_VNET_HEADER;
    const s = csumAdd(0, p + cs, len - cs);
    const c = ~csumFold(s) & 0xffff;
    st16(p + cs + co, c == 0 ? 0xffff : c);
    return OFFLOAD_OK;
  }
  if (gsoType != GSO_TCPV4 && gsoType != GSO_TCPV6 && gsoType != GSO_UDP_L4) return D.D_GSO_UNSUPPORTED;
  const gso = <u32>load<u16>(vh, VH_GSO_SIZE);
  if (gso == 0) return D.D_BAD_GSO_SIZE;
  const tcp = gsoType != GSO_UDP_L4;
  if (cs < 14 || cs + (tcp ? 20 : 8) > len) return D.D_BAD_VNET_HEADER;
  const l4h = tcp ? (<u32>load<u8>(p + cs + TCP_DOFF) >> 4) << 2 : 8;
  const minL4: u32 = tcp ? 20 : 8;
  if (l4h < minL4 || cs + l4h > len) return D.D_BAD_VNET_HEADER;
  const k = (flags & IF_GSO_SEG) != 0 ? flags >> IF_SEG_SHIFT : 0;
  const last = (flags & IF_GSO_SEG) == 0 || (flags & IF_GSO_LAST) != 0;
  // Every segment but the last carries exactly gso_size bytes of payload, the
  // last at most that many (RFC 9293 §3.7.1: no segment above the MSS).
  const payload = len - cs - l4h;
  if (payload > gso || (!last && payload != gso) || payload == 0) return D.D_BAD_GSO_SIZE;

  // The header chain down to csum_start: Ethernet (802.1Q tag allowed), IP,
  // and at most one tunnel (UDP + VXLAN/Geneve, or NVGRE) with its inner
  // Ethernet and IP.
  const end = p + len;
  const l4 = p + cs;
  let q = p + 12;
  let et = ld16(q);
  if (et == ETHERTYPE_VLAN) { q += 4; et = ld16(q); }
  q += 2;
  let addrs: usize = 0;
  let alen: u32 = 0;
  let tunUdp: usize = 0; // the tunnel's UDP header, its checksum redone last
  let tunAddrs: usize = 0;
  let tunAlen: u32 = 0;
  for (let depth = 0; depth < 2; depth++) {
    let next: usize;
    let proto: u32;
    if (et == ETHERTYPE_IPV4) {
      if (q + 20 > l4) return D.D_BAD_VNET_HEADER;
      const ihl = (<u32>load<u8>(q) & 0xf) << 2;
      if (ihl < 20 || q + ihl > l4) return D.D_BAD_VNET_HEADER;
      st16(q + IP4_TOTLEN, <u32>(end - q));
      if (tcp) st16(q + IP4_ID, ld16(q + IP4_ID) + k); // one ID per segment, as tcp_gso_segment gives
      store<u16>(q + IP4_CSUM, 0);
      st16(q + IP4_CSUM, ~csumFold(csumAdd(0, q, ihl)) & 0xffff);
      proto = <u32>load<u8>(q + IP4_PROTO);
      addrs = q + IP4_SRC;
      alen = 8;
      next = q + ihl;
    } else if (et == ETHERTYPE_IPV6) {
      if (q + 40 > l4) return D.D_BAD_VNET_HEADER;
      st16(q + IP6_PLEN, <u32>(end - q - 40));
      proto = <u32>load<u8>(q + IP6_NXT);
      addrs = q + IP6_SRC;
      alen = 32;
      next = q + 40;
    } else return D.D_GSO_UNSUPPORTED;
    if (next == l4) {
      // the transport the offload was for (extension headers are not walked)
      if (proto != (tcp ? IPPROTO_TCP : IPPROTO_UDP)) return D.D_GSO_UNSUPPORTED;
      fixL3 = q;
      fixV4 = alen == 8;
      const l4len = <u32>(end - l4);
      if (tcp) {
        st32(l4 + TCP_SEQ, ld32(l4 + TCP_SEQ) + k * gso);
        let f = <u32>load<u8>(l4 + TCP_FLAGS);
        if (k > 0) f &= ~TCP_CWR;
        if (!last) f &= ~(TCP_FIN | TCP_PSH);
        store<u8>(l4 + TCP_FLAGS, <u8>f);
        l4Checksum(addrs, alen, IPPROTO_TCP, l4, l4len, TCP_CSUM);
      } else {
        st16(l4 + 4, l4len);
        l4Checksum(addrs, alen, IPPROTO_UDP, l4, l4len, 6);
      }
      // RFC 7348 §5 / RFC 8926 §3.3: the outer checksum, when one was sent,
      // covers the inner frame, so it is computed after it.
      if (tunUdp != 0) {
        const ul = <u32>(end - tunUdp);
        if (load<u16>(tunUdp + 6) != 0 || tunAlen == 32) l4Checksum(tunAddrs, tunAlen, IPPROTO_UDP, tunUdp, ul, 6);
      }
      return OFFLOAD_OK;
    }
    if (depth == 1 || next + 8 > l4) return D.D_GSO_UNSUPPORTED;
    let inner: usize;
    if (proto == IPPROTO_UDP) {
      st16(next + 4, <u32>(end - next));
      tunUdp = next; tunAddrs = addrs; tunAlen = alen;
      const dport = ld16(next + 2);
      if (dport == vxlanPort) inner = next + 16;
      else if (dport == genevePort) inner = next + 16 + ((<u32>load<u8>(next + 8) & 0x3f) << 2);
      else return D.D_GSO_UNSUPPORTED;
    } else if (proto == IPPROTO_GRE) {
      if (ld16(next) != NVGRE_FLAGS_K || ld16(next + 2) != ETHERTYPE_TEB) return D.D_GSO_UNSUPPORTED;
      inner = next + 8;
    } else return D.D_GSO_UNSUPPORTED;
    if (inner + 14 > l4) return D.D_BAD_VNET_HEADER;
    et = ld16(inner + 12);
    q = inner + 14;
  }
  return D.D_GSO_UNSUPPORTED;
}
