// The tunnel super-frame TX path's core (issue 11; tuntx.c's comment says
// why and how): the virtio-net header with UDP-tunnel GSO for one VXLAN/Geneve
// frame, the checks that frame must pass, and the lengths and checksums only
// its whole length decides. Header-only (static functions), so that any
// addon holding a tuntx tap's fd can send through it: tuntx.c's send(), and
// the AF_PACKET addon's send() for a whole super-frame the data plane
// encapsulated (OF_GSO with OGK_TUNNEL, assembly/abi.ts), whose payload is
// partly still in the receiving socket's ring (hence the payload as pieces).
#ifndef NVEDGE_TUNTX_CORE_H
#define NVEDGE_TUNTX_CORE_H

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

// ---- the kernel ABI this needs beyond the installed (older) uapi headers ----------

// include/uapi/linux/if_tun.h (Linux 6.17)
#ifndef TUN_F_UDP_TUNNEL_GSO
#define TUN_F_UDP_TUNNEL_GSO 0x080
#define TUN_F_UDP_TUNNEL_GSO_CSUM 0x100
#endif
// include/uapi/linux/virtio_net.h (Linux 6.17)
#define VNET_F_NEEDS_CSUM 1
#define VNET_F_UDP_TUNNEL_CSUM 8
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_GSO_UDP_L4 5
#define VNET_GSO_UDP_TUNNEL_IPV4 0x20
#define VNET_GSO_UDP_TUNNEL_IPV6 0x40
#define VNET_GSO_ECN 0x80
/** struct virtio_net_hdr_v1_hash_tunnel: virtio_net_hdr_v1 (12), the hash fields (8), the tunnel offsets (4). */
struct vnetTnlHdr {
  uint8_t flags, gsoType;
  uint16_t hdrLen, gsoSize, csumStart, csumOffset, numBuffers;
  uint16_t hashLo, hashHi, hashReport, padding;
  uint16_t outerTh, innerNh;
} __attribute__((packed));
_Static_assert(sizeof(struct vnetTnlHdr) == 24, "virtio_net_hdr_v1_hash_tunnel is 24 bytes");

// ---- a frame's flags and why one is refused ------------------------------------------

#define TT_OUTER6 1    // the outer header is IPv6 (else IPv4)
#define TT_INNER6 2    // the inner header is IPv6 (else IPv4)
#define TT_UDP_CSUM 4  // the outer UDP checksum is computed per segment (else 0; IPv6 needs it)
#define TT_INNER_UDP 8 // the inner L4 is UDP (USO), else TCP
#define TT_ECN 16      // the inner TCP super-frame has CWR set (VIRTIO_NET_HDR_GSO_ECN)
#define TT_PLAIN 32    // not a super-frame: one frame, its checksums completed here in software (gsoSize unused)
#define TT_FLAGS_ALL 63

// Why a frame was not sent (the descriptor's status, and a counter each).
enum {
  TT_OK = 0,
  TT_E_GSO_SIZE = 1,   // gso_size 0
  TT_E_ONE_SEG = 2,    // the payload fits in one segment (send it the ordinary way)
  TT_E_SHORT = 3,      // headers shorter than their offsets say, or offsets out of order
  TT_E_PROTO = 4,      // a header is not what the flags say (EtherType, IP version, next protocol)
  TT_E_LONG = 5,       // longer than an IP length field holds
  TT_E_CSUM = 6,       // TT_UDP_CSUM (or an IPv6 outer header) but open() without udpCsum
  TT_E_RANGE = 7,      // headers or payload outside the memory
  TT_E_FLAGS = 8,      // unknown flag bits
  TT_E_WRITE = 9,      // the tap refused the write (errno in stats.lastErrno)
  TT_E_BUSY = 10,      // EAGAIN/ENOBUFS
  TT_E_MTU = 11,       // a segment (headers + gso_size) would be longer than the uplink's MTU
  TT_E_N
};
static const char *const ttReasonName[TT_E_N] __attribute__((unused)) = {
  "ok", "gsoSizeZero", "singleSegment", "headersShort", "badProtocol", "tooLong", "csumNotEnabled", "outsideMemory",
  "badFlags", "writeError", "busy", "segmentOverMtu",
};

static inline uint16_t rd16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32le(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static inline void wr32le(uint8_t *p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static inline uint16_t rd16be(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void wr16be(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }


/** The one's-complement sum of p[0..n) (big-endian 16-bit words) added to sum, unfolded. */
static inline uint32_t sumBytes(const uint8_t *p, size_t n, uint32_t sum) {
  for (; n > 1; p += 2, n -= 2) sum += (uint32_t)((p[0] << 8) | p[1]);
  if (n) sum += (uint32_t)(p[0] << 8);
  return sum;
}
static inline uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum;
}

/**
 * The pseudo-header sum (RFC 768 / RFC 793; RFC 8200 section 8.1 for IPv6)
 * of the L4 header at f+l4 over `len` bytes, with the addresses of the IP
 * header at f+nh: folded, not complemented - what a CHECKSUM_PARTIAL skb
 * holds in its checksum field for the device (or the segmenter) to finish.
 */
static inline uint16_t pseudoSum(const uint8_t *f, unsigned nh, int v6, uint8_t proto, uint32_t len) {
  uint32_t s = v6 ? sumBytes(f + nh + 8, 32, 0) : sumBytes(f + nh + 12, 8, 0);
  s += proto + (len >> 16) + (len & 0xffff);
  return fold(s);
}

/**
 * The sum of h[from..hl) then the payload's pieces as one byte string: with
 * the checksum field holding the pseudo-header sum, its complement is the
 * checksum. A piece that starts at an odd offset sums byte-swapped (RFC 1071
 * section 2(B)).
 */
static inline uint32_t sumFrame(const uint8_t *h, unsigned from, unsigned hl, const struct iovec *data, int n) {
  uint32_t s = sumBytes(h + from, hl - from, 0);
  size_t at = hl - from;
  for (int i = 0; i < n; i++) {
    uint16_t d = fold(sumBytes(data[i].iov_base, data[i].iov_len, 0));
    if (at & 1) d = (uint16_t)((d << 8) | (d >> 8));
    s += d;
    at += data[i].iov_len;
  }
  return s;
}

static inline void ipv4Csum(uint8_t *ip, unsigned ihl) {
  ip[10] = ip[11] = 0;
  wr16be(ip + 10, (uint16_t)~fold(sumBytes(ip, ihl, 0)));
}

/**
 * One frame: its headers h[0..hl) (outer Ethernet .. inner L4 header, written
 * to by ttPrepare), its payload's length dl and, for TT_PLAIN only (whose
 * checksums are summed here), its pieces data[0..ndata); the offsets and
 * flags as in tuntx.c's descriptor.
 */
struct ttFrame { uint8_t *h; uint32_t hl, dl; unsigned gso, outerTh, innerNh, innerTh, flags; const struct iovec *data; int ndata; };

/**
 * Checks frame f against the rules of virtio_net_hdr_tnl_to_skb() and its
 * flags, and finalises its lengths and checksums (the file's comment);
 * fills the virtio-net header. Returns 0 or a TT_E_* reason (then nothing
 * was written to the headers).
 */
static inline int ttPrepare(int udpCsumOk, unsigned mtu, struct ttFrame *f, struct vnetTnlHdr *v) {
  if (f->flags & ~TT_FLAGS_ALL) return TT_E_FLAGS;
  int plain = f->flags & TT_PLAIN;
  if (f->gso == 0 && !plain) return TT_E_GSO_SIZE;
  int o6 = f->flags & TT_OUTER6, i6 = f->flags & TT_INNER6, iudp = f->flags & TT_INNER_UDP;
  int csum = (f->flags & TT_UDP_CSUM) || o6; // a zero UDP checksum is not for IPv6 (RFC 8200 section 8.1)
  if (csum && !udpCsumOk) return TT_E_CSUM;
  uint8_t *h = f->h;
  unsigned l4 = iudp ? 8 : 20;
  if (f->hl < 14) return TT_E_SHORT;
  unsigned nh = 14;
  uint16_t et = rd16be(h + 12);
  if (et == 0x8100 && f->hl >= 18) { nh = 18; et = rd16be(h + 16); } // underlay.vlan: a tagged uplink
  // virtio_net_hdr_tnl_to_skb: outer_th >= ETH_HLEN + l3min, inner_nh >= outer_th + 8, inner_th >= inner_nh + l3min
  // (here with IPv4's 20 and UDP's 8 as the least; each family's own length is checked with its header below)
  if (f->outerTh < nh + 20 || f->innerNh < f->outerTh + 8 || f->innerTh < f->innerNh + 20 || f->hl < f->innerTh + 8) return TT_E_SHORT;
  if (et != (o6 ? 0x86dd : 0x0800)) return TT_E_PROTO;
  uint8_t *oip = h + nh, *iip = h + f->innerNh, *th = h + f->innerTh;
  if (o6) {
    if ((oip[0] >> 4) != 6 || oip[6] != 17 || f->outerTh != nh + 40) return TT_E_PROTO;
  } else {
    if ((oip[0] >> 4) != 4 || oip[9] != 17 || f->outerTh != nh + (oip[0] & 15) * 4u || (oip[0] & 15) < 5) return TT_E_PROTO;
  }
  if (i6) {
    if ((iip[0] >> 4) != 6 || iip[6] != (iudp ? 17 : 6) || f->innerTh != f->innerNh + 40) return TT_E_PROTO;
  } else {
    if ((iip[0] >> 4) != 4 || iip[9] != (iudp ? 17 : 6) || f->innerTh != f->innerNh + (iip[0] & 15) * 4u || (iip[0] & 15) < 5) return TT_E_PROTO;
  }
  if (f->hl < f->innerTh + l4) return TT_E_SHORT;
  unsigned thl = iudp ? 8 : (th[12] >> 4) * 4u;
  if (thl < l4 || f->hl != f->innerTh + thl) return TT_E_SHORT; // the headers end where the TCP header does
  uint64_t total = (uint64_t)f->hl + f->dl;
  // the outer length field: IPv4's Total Length counts its header, IPv6's
  // Payload Length does not (RFC 8200 section 3); the inner ones are shorter
  if ((o6 ? total - nh - 40 : total - nh) > 65535) return TT_E_LONG;
  if (!plain && f->dl <= f->gso) return TT_E_ONE_SEG;
  // each segment (or the plain frame) must fit the uplink (mtu 0: not checked)
  if (mtu && (plain ? total : (uint64_t)f->hl + f->gso) - nh > mtu) return TT_E_MTU;
  // the outer headers
  if (o6) wr16be(oip + 4, (uint16_t)(total - nh - 40));
  else { wr16be(oip + 2, (uint16_t)(total - nh)); ipv4Csum(oip, f->outerTh - nh); }
  uint8_t *uh = h + f->outerTh;
  uint32_t ulen = (uint32_t)(total - f->outerTh);
  wr16be(uh + 4, (uint16_t)ulen);
  wr16be(uh + 6, csum ? pseudoSum(h, nh, o6, 17, ulen) : 0);
  // the inner headers
  if (i6) wr16be(iip + 4, (uint16_t)(total - f->innerNh - 40));
  else { wr16be(iip + 2, (uint16_t)(total - f->innerNh)); ipv4Csum(iip, f->innerTh - f->innerNh); }
  uint32_t l4len = (uint32_t)(total - f->innerTh);
  if (iudp) wr16be(th + 4, (uint16_t)l4len);
  uint8_t *ick = th + (iudp ? 6 : 16);
  wr16be(ick, pseudoSum(h, f->innerNh, i6, iudp ? 17 : 6, l4len));
  memset(v, 0, sizeof *v);
  if (plain) {
    // one frame: both checksums in full here (RFC 1071), the inner one first
    // since the outer UDP checksum covers it; the virtio-net header stays zero
    uint16_t c = (uint16_t)~fold(sumFrame(h, f->innerTh, f->hl, f->data, f->ndata));
    wr16be(ick, iudp && c == 0 ? 0xffff : c); // RFC 768: a computed 0 is sent as all ones
    if (csum) {
      c = (uint16_t)~fold(sumFrame(h, f->outerTh, f->hl, f->data, f->ndata));
      wr16be(uh + 6, c == 0 ? 0xffff : c);
    }
    return TT_OK;
  }
  v->flags = VNET_F_NEEDS_CSUM | (csum ? VNET_F_UDP_TUNNEL_CSUM : 0);
  v->gsoType = (iudp ? VNET_GSO_UDP_L4 : i6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4) | (o6 ? VNET_GSO_UDP_TUNNEL_IPV6 : VNET_GSO_UDP_TUNNEL_IPV4) |
               ((f->flags & TT_ECN) && !iudp ? VNET_GSO_ECN : 0);
  // little-endian fields (TUNSETVNETLE; the tunnel offsets always are)
  v->hdrLen = htole16((uint16_t)f->hl);
  v->gsoSize = htole16((uint16_t)f->gso);
  v->csumStart = htole16((uint16_t)f->innerTh);
  v->csumOffset = htole16(iudp ? 6 : 16);
  v->outerTh = htole16((uint16_t)f->outerTh);
  v->innerNh = htole16((uint16_t)f->innerNh);
  return TT_OK;
}

/**
 * The TT_* flags of a frame described the way the data plane describes a
 * whole super-frame output (assembly/abi.ts OG_VNET: a struct virtio_net_hdr,
 * virtio 1.x section 5.1.6, little-endian): its gso_type (TCPV4/TCPV6/UDP_L4,
 * with or without the UDP tunnel bits, ECN) and flags, and the frame's own
 * headers for the outer and inner IP versions. gso_type NONE is TT_PLAIN.
 */
static inline unsigned ttFlagsOf(const uint8_t *h, uint32_t hl, unsigned innerNh, uint8_t vnetFlags, uint8_t gsoType) {
  unsigned f = 0, nh = hl >= 18 && h[12] == 0x81 && h[13] == 0x00 ? 18 : 14;
  if (hl >= nh && rd16be(h + nh - 2) == 0x86dd) f |= TT_OUTER6;
  if (innerNh < hl && (h[innerNh] >> 4) == 6) f |= TT_INNER6;
  uint8_t inner = gsoType & 0x1f; // without the tunnel bits and ECN
  if (inner == VNET_GSO_UDP_L4) f |= TT_INNER_UDP;
  if (gsoType & VNET_GSO_ECN) f |= TT_ECN;
  if ((vnetFlags & VNET_F_UDP_TUNNEL_CSUM) || (f & TT_OUTER6)) f |= TT_UDP_CSUM;
  if (inner == 0) {
    f |= TT_PLAIN;
    // a plain frame's inner L4 protocol from its header (TCP unless UDP)
    unsigned proto = (f & TT_INNER6) ? (innerNh + 6 < hl ? h[innerNh + 6] : 6) : (innerNh + 9 < hl ? h[innerNh + 9] : 6);
    if (proto == 17) f |= TT_INNER_UDP;
  }
  return f;
}

/**
 * Sends one frame through a tuntx tap's fd (its uplink's IP MTU `mtu`, 0: not checked): headers h[0..hl) (outer Ethernet
 * .. inner L4 header; finalised here), payload pieces pay[0..npay) of dl
 * bytes in all, gso_size `gso` (0 with TT_PLAIN), the outer UDP and inner IP
 * offsets, the inner L4 offset `innerTh` and TT_* `flags` (ttFlagsOf).
 * Returns TT_OK or why not (TT_E_WRITE/TT_E_BUSY with errno set); a frame
 * refused before the write leaves nothing written anywhere.
 */
static inline int ttSend(int fd, int udpCsumOk, unsigned mtu, uint8_t *h, uint32_t hl, unsigned gso, unsigned outerTh, unsigned innerNh, unsigned innerTh,
                         unsigned flags, const struct iovec *pay, int npay) {
  enum { MAX_PIECES = 8 };
  if (npay < 0 || npay > MAX_PIECES - 2) return TT_E_RANGE;
  uint32_t dl = 0;
  for (int i = 0; i < npay; i++) dl += (uint32_t)pay[i].iov_len;
  struct ttFrame f = { h, hl, dl, gso, outerTh, innerNh, innerTh, flags, pay, npay };
  struct vnetTnlHdr v;
  int st = ttPrepare(udpCsumOk, mtu, &f, &v);
  if (st != TT_OK) return st;
  struct iovec iov[MAX_PIECES] = { { &v, sizeof v }, { h, hl } };
  for (int i = 0; i < npay; i++) iov[2 + i] = pay[i];
  if (writev(fd, iov, 2 + npay) < 0) return errno == EAGAIN || errno == ENOBUFS ? TT_E_BUSY : TT_E_WRITE;
  return TT_OK;
}

/**
 * ttSend for a frame in pieces however its headers are split among them (the
 * AF_PACKET addon's whole encap super-frame: the data plane's header piece,
 * its data piece from the inner IP header on, the rest of the payload in the
 * receive ring), described by the data plane's GSO record (assembly/abi.ts
 * OG_VNET: virtio-net flags, gso_type, gso_size, csum_start = the inner L4
 * header; OG_OUTER_TH, OG_INNER_NH). The headers, up to the inner TCP/UDP
 * header's end, are gathered into a small buffer of this thread and
 * finalised there (the pieces are not written to); the payload is sent from
 * the pieces where it lies. An underlay.vlan tag among the pieces moves the
 * offsets by 4, as it moves the frame's bytes.
 */
static inline int ttSendPieces(int fd, int udpCsumOk, unsigned mtu, uint8_t vnetFlags, uint8_t gsoType, unsigned gso,
                               unsigned outerTh, unsigned innerNh, unsigned innerTh, const struct iovec *pieces, int n) {
  enum { HMAX = 256, PMAX = 6 };
  static __thread uint8_t hb[HMAX];
  // the first HMAX bytes (or fewer) of the frame, contiguous
  uint32_t got = 0;
  for (int i = 0; i < n && got < HMAX; i++) {
    uint32_t take = (uint32_t)pieces[i].iov_len < HMAX - got ? (uint32_t)pieces[i].iov_len : HMAX - got;
    memcpy(hb + got, pieces[i].iov_base, take);
    got += take;
  }
  unsigned flags = ttFlagsOf(hb, got, innerNh, vnetFlags, gsoType);
  if (innerTh + 13 > got) return TT_E_SHORT;
  unsigned hl = innerTh + ((flags & TT_INNER_UDP) ? 8 : (hb[innerTh + 12] >> 4) * 4u);
  if (hl > got) return TT_E_SHORT;
  // the payload: the pieces after the first hl bytes
  struct iovec pay[PMAX];
  int np = 0;
  uint32_t skip = hl;
  for (int i = 0; i < n; i++) {
    uint32_t len = (uint32_t)pieces[i].iov_len;
    if (skip >= len) { skip -= len; continue; }
    if (np == PMAX) return TT_E_RANGE;
    pay[np++] = (struct iovec){ (uint8_t *)pieces[i].iov_base + skip, len - skip };
    skip = 0;
  }
  return ttSend(fd, udpCsumOk, mtu, hb, hl, gso, outerTh, innerNh, innerTh, flags, pay, np);
}

#endif
