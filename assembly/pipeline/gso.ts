// A GSO super-frame forwarded whole (issue 11): no cutting into gso_size
// segments when its one output can take it as one frame.
//
// The receiver (host/io/native/afpacket.c) puts only segment 0 of a TCP
// super-frame in the slot (its headers and the first gso_size bytes of
// payload) with IF_GSO_WHOLE, and leaves the rest of the payload in its
// receive ring, named by the whole record (abi.ts IW_*) before the virtio-net
// header. offload.ts makes segment 0 a real frame, and the pipeline handles it
// like any other: every check (port security, VN lookup, ACLs, MTU, policer)
// is made on it, and since every segment of a super-frame has the same
// addresses, ports and VN, their verdict is the whole super-frame's. The one
// check that counts bytes, a VNIC's policer (qos.rateMbps), would charge
// segment 0 only: a policed VNIC's super-frames are never promoted.
//
// Then, when that frame made exactly one output and the output's port can
// send a super-frame (setPortGso: an access port whose socket takes a
// virtio-net header on send, so the VM's stack gets one skb), promote() turns
// the output back into the super-frame's headers: the inner IP length grown by
// the rest, the TCP flags the cut took off segment 0 (FIN, PSH) restored, the
// TCP checksum left as the pseudo-header sum a CHECKSUM_PARTIAL frame carries
// (the kernel's tcp_v4_send_check / tcp_v6_send_check do the same before TSO),
// and a GSO record (abi.ts OG_*: the virtio-net header to send it with) in its
// header slot, OF_GSO in its port. The sender gathers the rest from the ring.
//
// An encap (a VM's TSO super-frame to a remote VNIC) is promoted the same way
// when the underlay port has a tunnel-GSO output (GSO_CAP_TUNNEL: a TX path
// that sends one VXLAN/Geneve super-frame and lets the kernel segment it with
// UDP tunnel GSO, Linux 6.17+): the outer IP and UDP lengths grown too, the
// outer UDP checksum (when one is sent) left as its pseudo-header sum with
// VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM, and an OGK_TUNNEL record: the virtio-net
// header with gso_type | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4/6, the outer UDP
// and inner IP offsets (struct virtio_net_hdr_v1_hash_tunnel's outer_th_offset
// and inner_nh_offset), all for the frame as the data plane writes it
// (underlay.vlan's tag, added by the sender, moves them by 4). NVGRE and
// ECN-marked super-frames are not promoted.
//
// Any other case (dropped, flooded, an encap to an underlay with no tunnel GSO
// output, a header piece too long for the record) leaves segment 0's output
// as it is, and the receiver cuts the rest into segments as before.
//
// Counters: a super-frame forwarded whole counts as one frame of its whole
// length on its input and output ports (as the kernel counts one GSO skb on a
// veth); cut, as one frame per segment.
import { HDR_SLOT, OUT_DESC, O_PORT, O_HDRLEN, O_DATA, O_DATALEN, O_VN, OF_GSO, OG_SIZE, OG_TOKEN, OG_VNET,
         OG_OUTER_TH, OG_INNER_NH, OG_KIND, OGK_TSO, OGK_TUNNEL, GSO_CAP_TSO, GSO_CAP_TUNNEL, IW_SIZE, IF_GSO_SEG, IF_GSO_LAST, IF_SEG_SHIFT, IW_TOKEN, IW_REST } from "../abi";
import { outDescBase, hdrBase, portKind, portCtr, ctrInc, vnPtr, PORT_ACCESS, PORT_UNDERLAY, PORT_CTR, PC_RX_BYTES, PC_TX_BYTES, MAX_PORTS,
         MAX_VNS, VN_FEAT, FEAT_POLICE } from "../state";
import { ld16, st16, csumAdd, csumFold } from "../util";
import { IP4_TOTLEN, IP4_CSUM, IP4_SRC, IP4_PROTO, IPPROTO_TCP, IPPROTO_UDP } from "../proto/ipv4";
import { IP6_PLEN, IP6_NXT, IP6_SRC } from "../proto/ipv6";
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "../proto/ethernet";
import { VNET_LEN, fixL3, fixV4 } from "./offload";

// virtio 1.x §5.1.6: struct virtio_net_hdr's fields, little-endian
const VH_FLAGS: u32 = 0;
const VH_GSO_TYPE: u32 = 1;
const VH_HDR_LEN: u32 = 2;
const VH_GSO_SIZE: u32 = 4;
const VH_CSUM_START: u32 = 6;
const VH_CSUM_OFFSET: u32 = 8;
const F_NEEDS_CSUM: u32 = 1;
// Linux 6.17's UDP tunnel GSO for virtio-net (include/uapi/linux/virtio_net.h,
// virtio 1.4 VIRTIO_NET_F_HOST_UDP_TUNNEL_GSO): gso_type bits saying which
// outer IP the tunnel has, and a flag asking for the outer UDP checksum.
const F_UDP_TUNNEL_CSUM: u32 = 8;
const GSO_UDP_TUNNEL_IPV4: u32 = 0x20;
const GSO_UDP_TUNNEL_IPV6: u32 = 0x40;
const GSO_TCPV4: u32 = 1;
const GSO_TCPV6: u32 = 4;
const GSO_ECN: u32 = 0x80;
const TCP_DOFF: u32 = 12;
const TCP_FLAGS: u32 = 13;
const TCP_CSUM: u32 = 16;

// one bit per port (MAX_PORTS = 64)
let tsoPorts: u64 = 0;
let tunPorts: u64 = 0;

/**
 * What the port's sender takes whole (abi.ts GSO_CAP_*): a TCP super-frame
 * with a TSO request (an access port), an encapsulated one with a UDP tunnel
 * GSO request (the underlay, when a tunnel-GSO TX path is configured); 0:
 * nothing. Set by the host for its packet I/O.
 */
export function setPortGso(port: u32, caps: u32): void {
  if (port >= MAX_PORTS) return;
  const bit = <u64>1 << <u64>port;
  tsoPorts = (caps & GSO_CAP_TSO) != 0 ? tsoPorts | bit : tsoPorts & ~bit;
  tunPorts = (caps & GSO_CAP_TUNNEL) != 0 ? tunPorts | bit : tunPorts & ~bit;
}

/** Super-frames sent whole (promoted) since init. */
export let gsoWhole: u64 = 0;

// The candidate of the frame being processed (begin .. promote).
let armed = false;
let wToken: u32 = 0;
let wRest: u32 = 0;
let wType: u32 = 0;
let wGso: u32 = 0;
let wTcpFlags: u32 = 0;
let wL4: usize = 0;
let wInPort: u32 = 0;

/**
 * Before offloadFix of an IF_GSO_WHOLE frame at p (its slot offset `off`):
 * remembers the whole record and the TCP flags byte the fix of segment 0 will
 * change. The candidate is armed only when its record and header are sane.
 */
export function wholeBegin(p: usize, off: u32, len: u32, port: u32, flags: u32): void {
  armed = false;
  // only ever segment 0, not the last (the receiver's offer): anything else is not a candidate
  if (off < VNET_LEN + IW_SIZE || (flags & (IF_GSO_SEG | IF_GSO_LAST)) != IF_GSO_SEG || (flags >> IF_SEG_SHIFT) != 0) return;
  const vh = p - VNET_LEN;
  const t = <u32>load<u8>(vh, VH_GSO_TYPE);
  if ((t & ~GSO_ECN) != GSO_TCPV4 && (t & ~GSO_ECN) != GSO_TCPV6) return;
  const cs = <u32>load<u16>(vh, VH_CSUM_START);
  if (cs < 14 || cs + 20 > len) return;
  const rec = vh - IW_SIZE;
  wToken = load<u32>(rec, IW_TOKEN);
  wRest = load<u32>(rec, IW_REST);
  if (wRest == 0 || wRest > 0xffff) return;
  wType = t;
  wGso = <u32>load<u16>(vh, VH_GSO_SIZE);
  wTcpFlags = <u32>load<u8>(p + cs + TCP_FLAGS);
  wL4 = p + cs;
  wInPort = port;
  armed = true;
}

/** offloadFix refused the frame: nothing to promote. */
export function wholeDisarm(): void { armed = false; }

/** After the frame's pipeline: `before` is the output count before it. Promotes its one output when it can go whole. */
export function wholeEnd(before: u32, after: u32): void {
  if (!armed) return;
  armed = false;
  if (after != before + 1) return;
  const d = outDescBase + <usize>before * OUT_DESC;
  const port = <u32>load<u16>(d, O_PORT);
  if (port >= MAX_PORTS) return;
  const kind = load<u8>(portKind + port);
  const bit = <u64>1 << <u64>port;
  const tunnel = kind == PORT_UNDERLAY && (tunPorts & bit) != 0;
  if (!tunnel && (kind != PORT_ACCESS || (tsoPorts & bit) == 0)) return;
  // A VNIC's policer (qos.rateMbps, on frames from local VNICs) charged
  // segment 0 only: the rest is cut, each segment charged as it comes.
  const vn = load<u32>(d, O_VN);
  if (load<u8>(portKind + wInPort) == PORT_ACCESS && (vn >= MAX_VNS || (<u32>load<u8>(vnPtr(vn), VN_FEAT) & FEAT_POLICE) != 0)) return;
  const hl = <u32>load<u16>(d, O_HDRLEN);
  const data = <usize>load<u32>(d, O_DATA);
  const dl = <u32>load<u16>(d, O_DATALEN);
  if (hl > HDR_SLOT - OG_SIZE) return;
  // the IP and TCP headers must be the input's own bytes, in the output's data piece
  const l3 = fixL3;
  const l4 = wL4;
  const thl = (<u32>load<u8>(l4 + TCP_DOFF) >> 4) << 2;
  if (l3 < data || l4 <= l3 || l4 + thl > data + <usize>dl) return;
  // every length that grows must still fit its 16 bits, checked before anything is written
  if (ld16(l3 + (fixV4 ? IP4_TOTLEN : IP6_PLEN)) + wRest > 0xffff) return;
  const h = hdrBase + <usize>before * HDR_SLOT;
  let oth: usize = 0; // tunnel: the outer UDP header, in the header piece
  let o4 = false;
  if (tunnel) {
    // The encap's outer headers (encap.ts: Ethernet without underlay.vlan's
    // tag, which the sender adds, IP, UDP, VXLAN/Geneve); NVGRE (GRE) has no
    // UDP tunnel GSO. The kernel takes no ECN with a tunnel (virtio 1.4
    // §5.1.6.2: VIRTIO_NET_HDR_GSO_ECN is not defined for UDP tunnels).
    if ((wType & GSO_ECN) != 0) return;
    const et = ld16(h + 12);
    if (et == ETHERTYPE_IPV4) {
      o4 = true;
      if (load<u8>(h + 14 + IP4_PROTO) != <u8>IPPROTO_UDP) return;
      oth = h + 14 + ((<usize>load<u8>(h + 14) & 0xf) << 2);
      if (ld16(h + 14 + IP4_TOTLEN) + wRest > 0xffff) return;
    } else if (et == ETHERTYPE_IPV6) {
      if (load<u8>(h + 14 + IP6_NXT) != <u8>IPPROTO_UDP) return;
      oth = h + 14 + 40;
      if (ld16(h + 14 + IP6_PLEN) + wRest > 0xffff) return;
    } else return;
    if (oth + 8 > h + <usize>hl || ld16(oth + 4) + wRest > 0xffff) return;
  }
  const l4len = <u32>(data + <usize>dl - l4) + wRest;
  let addrs: usize;
  let alen: u32;
  if (fixV4) {
    growIp4(l3);
    addrs = l3 + IP4_SRC;
    alen = 8;
  } else {
    st16(l3 + IP6_PLEN, ld16(l3 + IP6_PLEN) + wRest);
    addrs = l3 + IP6_SRC;
    alen = 32;
  }
  store<u8>(l4 + TCP_FLAGS, <u8>wTcpFlags);
  st16(l4 + TCP_CSUM, csumFold(csumAdd(<u64>IPPROTO_TCP + <u64>l4len, addrs, alen)));
  const cs = hl + <u32>(l4 - data);
  const rec = h + HDR_SLOT - OG_SIZE;
  const vh = rec + OG_VNET;
  let flags: u32 = F_NEEDS_CSUM;
  let gsoType = wType;
  if (tunnel) {
    if (o4) growIp4(h + 14);
    else st16(h + 14 + IP6_PLEN, ld16(h + 14 + IP6_PLEN) + wRest);
    const ulen = ld16(oth + 4) + wRest;
    st16(oth + 4, ulen);
    // A UDP checksum was sent (always over IPv6, RFC 8200 §8.1): segmentation
    // computes one per segment, from the pseudo-header sum left in the field
    // as for the inner TCP (the kernel's udp_set_csum for a GSO skb).
    if (load<u16>(oth + 6) != 0) {
      const ip = h + 14;
      st16(oth + 6, csumFold(csumAdd(<u64>IPPROTO_UDP + <u64>ulen, o4 ? ip + IP4_SRC : ip + IP6_SRC, o4 ? 8 : 32)));
      flags |= F_UDP_TUNNEL_CSUM;
    }
    gsoType |= o4 ? GSO_UDP_TUNNEL_IPV4 : GSO_UDP_TUNNEL_IPV6;
    store<u16>(rec, <u16>(oth - h), OG_OUTER_TH);
    store<u16>(rec, <u16>(hl + <u32>(l3 - data)), OG_INNER_NH);
    store<u8>(rec, <u8>OGK_TUNNEL, OG_KIND);
  } else {
    store<u16>(rec, 0, OG_OUTER_TH);
    store<u16>(rec, 0, OG_INNER_NH);
    store<u8>(rec, <u8>OGK_TSO, OG_KIND);
  }
  store<u32>(rec, wToken, OG_TOKEN);
  store<u8>(vh, <u8>flags, VH_FLAGS);
  store<u8>(vh, <u8>gsoType, VH_GSO_TYPE);
  store<u16>(vh, <u16>(cs + thl), VH_HDR_LEN);
  store<u16>(vh, <u16>wGso, VH_GSO_SIZE);
  store<u16>(vh, <u16>cs, VH_CSUM_START);
  store<u16>(vh, <u16>TCP_CSUM, VH_CSUM_OFFSET);
  store<u16>(d, <u16>(port | OF_GSO), O_PORT);
  ctrInc(portCtr + (<usize>wInPort * PORT_CTR << 3), PC_RX_BYTES, <u64>wRest);
  ctrInc(portCtr + (<usize>port * PORT_CTR << 3), PC_TX_BYTES, <u64>wRest);
  gsoWhole++;
}

/** An IPv4 header at q grown by the rest: total length and header checksum. */
function growIp4(q: usize): void {
  st16(q + IP4_TOTLEN, ld16(q + IP4_TOTLEN) + wRest);
  const ihl = (<u32>load<u8>(q) & 0xf) << 2;
  store<u16>(q + IP4_CSUM, 0);
  st16(q + IP4_CSUM, ~csumFold(csumAdd(0, q, ihl)) & 0xffff);
}
