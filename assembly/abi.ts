// The memory ABI between the data plane and its host (TypeScript loader and the
// AF_PACKET addon). All of it lives in the wasm linear memory, laid out once by
// init() and never moved afterwards (memory only grows inside init), so the
// addon may keep raw pointers into it.
//
//   in slots   MAX_BATCH slots of SLOT_SIZE bytes. A received frame is written
//              at slot + HEADROOM (or HEADROOM-4 when the receiver re-inserts an
//              802.1Q tag that the kernel moved to PACKET_AUXDATA).
//   in desc    MAX_BATCH x 8 bytes:  u16 off (frame start inside its slot),
//              u16 len, u16 port (port index), u16 flags (IF_*, 0 for a
//              frame with nothing left to do; pipeline/offload.ts):
//                IF_VNET      a struct virtio_net_hdr (virtio 1.x §5.1.6, 10
//                             bytes) precedes the frame in its slot: finish
//                             its checksum / segment offloads
//                IF_GSO_SEG   the slot is segment k (flags >> IF_SEG_SHIFT) of
//                             a GSO super-frame the receiver cut: the
//                             super-frame's headers, then that segment's payload
//                IF_GSO_LAST  ... and the last segment
//                IF_GSO_WHOLE segment 0 of a TCP super-frame whose payload
//                             continues in the receiver's ring (pipeline/gso.ts):
//                             a whole record (IW_*) precedes the virtio-net
//                             header; when the frame's one output can take the
//                             super-frame whole, the data plane makes it so
//                             (OF_GSO) and the sender gathers the rest from the
//                             ring, else the receiver cuts the rest as segments
//   out desc   MAX_OUT x 16 bytes:  u16 port, u16 hdrLen, u32 dataPtr,
//              u16 dataLen, u16 inIndex, u32 vn (internal VN index).
//              An output frame is hdr[0..hdrLen) followed by
//              mem[dataPtr .. dataPtr+dataLen): a gather list of two pieces,
//              so flood copies share the inner frame (VPP-style buffer chains).
//              OF_GSO in the port field: the output is a whole GSO super-frame
//              (pipeline/gso.ts); its GSO record (OG_*) is in the last OG_SIZE
//              bytes of its header slot, and the sender appends the payload
//              the receiver left in its ring (the whole record's token).
//              OGK_TSO: sent with OG_VNET as its struct virtio_net_hdr.
//              OGK_TUNNEL (an encap; a tunnel-GSO TX path): sent with a struct
//              virtio_net_hdr_v1_hash_tunnel (24 bytes, Linux 6.17+): OG_VNET's
//              10 bytes, num_buffers/hash/report/padding 0, then outer_th_offset
//              = OG_OUTER_TH and inner_nh_offset = OG_INNER_NH; csum_start and
//              both offsets + 4 when the sender inserts underlay.vlan's tag.
//   out hdrs   MAX_OUT x HDR_SLOT bytes: the header piece of output i.
//
// process(n) handles in desc[0..n) and returns the number of outputs; the
// exported global `consumed` says how many inputs it took (fewer than n only
// when the output area could not hold the worst case of the next frame; the
// host then calls again with the rest).

export const SLOT_SIZE: u32 = 2048;
export const HEADROOM: u32 = 128;
export const MAX_BATCH: u32 = 256;
export const IN_DESC: u32 = 8;
export const OUT_DESC: u32 = 16;
export const HDR_SLOT: u32 = 128;
export const MAX_OUT: u32 = 8192;

// in desc field offsets
export const I_OFF: u32 = 0;
export const I_LEN: u32 = 2;
export const I_PORT: u32 = 4;
export const I_FLAGS: u32 = 6;
// in desc flags
export const IF_VNET: u32 = 1;
export const IF_GSO_SEG: u32 = 2;
export const IF_GSO_LAST: u32 = 4;
export const IF_GSO_WHOLE: u32 = 8;
export const IF_SEG_SHIFT: u32 = 4;
// the whole record (IF_GSO_WHOLE): IW_SIZE bytes right before the virtio-net
// header (itself the VNET_LEN = 10 bytes before the frame), written by the receiver
export const IW_SIZE: u32 = 8;
export const IW_TOKEN: u32 = 0; // u32: the receiver's name for the super-frame, copied into OG_TOKEN
export const IW_REST: u32 = 4; // u32: payload bytes after the slot's frame, still in the receiver's ring
// out desc field offsets
export const O_PORT: u32 = 0;
export const O_HDRLEN: u32 = 2;
export const O_DATA: u32 = 4;
export const O_DATALEN: u32 = 8;
export const O_IN: u32 = 10;
export const O_VN: u32 = 12;
// out desc port flag: a whole GSO super-frame (OG_* record in its header slot)
export const OF_GSO: u32 = 0x8000;
// the GSO record: the last OG_SIZE bytes of the output's header slot (so a
// promoted output's header piece is at most HDR_SLOT - OG_SIZE bytes)
export const OG_SIZE: u32 = 24;
export const OG_TOKEN: u32 = 0; // u32: IW_TOKEN of the input
export const OG_VNET: u32 = 4; // struct virtio_net_hdr (10 bytes, little-endian, virtio 1.x 5.1.6) to send the frame with
export const OG_OUTER_TH: u32 = 14; // u16: OGK_TUNNEL: the outer UDP header's offset in the frame (virtio_net_hdr_v1_hash_tunnel)
export const OG_INNER_NH: u32 = 16; // u16: OGK_TUNNEL: the inner IP header's offset in the frame
export const OG_KIND: u32 = 18; // u8: OGK_*
export const OGK_TSO: u32 = 1; // plain TCP segmentation offload (the frame's own TCP: decap, hairpin)
export const OGK_TUNNEL: u32 = 2; // UDP tunnel GSO (encap: gso_type | VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4/6)
// setPortGso(port, caps): what a port's sender takes whole
export const GSO_CAP_TSO: u32 = 1; // a TCP super-frame with a TSO request (AF_PACKET with PACKET_VNET_HDR)
export const GSO_CAP_TUNNEL: u32 = 2; // an encapsulated TCP super-frame with a UDP tunnel GSO request (OGK_TUNNEL; a tunnel-GSO TX path)
