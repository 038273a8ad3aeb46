// The tunnel super-frame TX path (issue 11, TCP VM -> remote): sends ONE
// VXLAN/Geneve frame carrying a whole TCP (or UDP) super-frame to the uplink
// and lets the kernel segment it, or not at all when the uplink can carry
// UDP-tunnel GSO (a veth can: the remote VTEP then receives it whole, as it
// receives the kernel NVE's).
//
// Why not AF_PACKET: its virtio-net header (PACKET_VNET_HDR) is parsed by
// virtio_net_hdr_to_skb(), which knows TCPV4/TCPV6/UDP/UDP_L4 and no tunnel
// (include/linux/virtio_net.h; net/packet/af_packet.c packet_snd ->
// virtio_net_hdr_to_skb): a VXLAN super-frame can only be asked as plain
// TSO, which the kernel would cut as one TCP flow with a 50-byte "MAC
// header", or not at all. tun learnt UDP-tunnel GSO in Linux 6.17
// (drivers/net/tun_vnet.h tun_vnet_hdr_tnl_to_skb -> virtio_net_hdr_tnl_to_skb:
// TUN_F_UDP_TUNNEL_GSO[_CSUM], VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4/6 and
// struct virtio_net_hdr_v1_hash_tunnel's outer_th_offset/inner_nh_offset).
//
// So: open() makes a tap in the NVE's namespace with IFF_VNET_HDR and the
// tunnel offloads, and attaches two tc programs to it with tcx links (no tc
// qdisc, no bpffs; the links go away with this process): on its ingress
// bpf_redirect(uplink, 0) - a frame written to the tap leaves the uplink as
// the skb the tap built, GSO state and all - and on its egress TC_ACT_SHOT,
// so nothing the kernel would send to the tap (IPv6 RS, ...) queues up for a
// reader that never reads. send() writes each frame with one writev():
// the 24-byte virtio-net header, the frame's headers, its payload.
//
// The frame's headers are finalised here (lengths and checksums that only
// the whole frame's length decides): the outer IPv4 total length and header
// checksum or IPv6 payload length, the outer UDP length and checksum field
// (0 - RFC 7348 section 5's SHOULD for IPv4 - or, with TT_UDP_CSUM, the
// pseudo-header sum the segmenter completes per segment), the inner IP
// length (and IPv4 checksum) and the inner TCP/UDP checksum field set to the
// pseudo-header sum over the whole L4 length, which is what the kernel's
// segmenter (tcp_gso_segment, __udp_gso_segment) expects of a super-frame.
// Every other byte is the caller's.
//
// The descriptor (TT_DESC bytes, little-endian, in the caller's ArrayBuffer):
//   +0  u32 hdr      offset of the frame's headers (outer Ethernet .. inner L4 header)
//   +4  u16 hdrLen
//   +6  u16 gsoSize  payload bytes per segment (the inner MSS)
//   +8  u32 data     offset of the payload
//   +12 u32 dataLen
//   +16 u16 outerTh  offset of the outer UDP header in the frame
//   +18 u16 innerNh  offset of the inner IP header
//   +20 u16 innerTh  offset of the inner TCP/UDP header
//   +22 u16 flags    TT_* below
//   +24 u32 status   written by send(): 0 sent, else a TT_E_* reason
//   +28 u32 reserved
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/if_tun.h>
#include <endian.h>

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
// include/uapi/linux/bpf.h (Linux 6.6): tcx attach points
#define ATTACH_TCX_INGRESS 46
#define ATTACH_TCX_EGRESS 47

// ---- the descriptor --------------------------------------------------------------

#define TT_DESC 32
#define TD_HDR 0
#define TD_HDRLEN 4
#define TD_GSO 6
#define TD_DATA 8
#define TD_DATALEN 12
#define TD_OUTER_TH 16
#define TD_INNER_NH 18
#define TD_INNER_TH 20
#define TD_FLAGS 22
#define TD_STATUS 24

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
  TT_E_N
};
static const char *const reasonName[TT_E_N] = {
  "ok", "gsoSizeZero", "singleSegment", "headersShort", "badProtocol", "tooLong", "csumNotEnabled", "outsideMemory",
  "badFlags", "writeError", "busy",
};

// ---- handles -------------------------------------------------------------------------

#define MAX_HANDLES 64
struct tap {
  int fd, linkIn, linkOut;
  unsigned tapIndex, uplinkIndex;
  int udpCsum;
  char name[IFNAMSIZ];
  uint64_t frames, bytes, segments, errors[TT_E_N];
  int lastErrno;
};
static struct tap *handles[MAX_HANDLES];
static pthread_mutex_t handlesLock = PTHREAD_MUTEX_INITIALIZER;

static napi_value throwErr(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}
static napi_value num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}
static void setNum(napi_env env, napi_value o, const char *k, double d) { napi_set_named_property(env, o, k, num(env, d)); }

static inline uint16_t rd16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t rd32le(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static inline void wr32le(uint8_t *p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24; }
static inline uint16_t rd16be(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void wr16be(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }

// ---- open ------------------------------------------------------------------------------

static long sysBpf(int cmd, union bpf_attr *a, unsigned size) { return syscall(__NR_bpf, cmd, a, size); }

/** A tc (SCHED_CLS) program of `n` raw instructions; its fd or -1 (errno set). */
static int loadProg(const struct bpf_insn *insns, unsigned n) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SCHED_CLS;
  a.insns = (uint64_t)(uintptr_t)insns;
  a.insn_cnt = n;
  a.license = (uint64_t)(uintptr_t)"GPL";
  return (int)sysBpf(BPF_PROG_LOAD, &a, sizeof a);
}

/** A tcx link of prog at ifindex's ingress or egress (attachType); its fd or -1. */
static int tcxLink(int prog, unsigned ifindex, unsigned attachType) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.link_create.prog_fd = prog;
  a.link_create.target_fd = ifindex; // target_ifindex in the same place
  a.link_create.attach_type = attachType;
  return (int)sysBpf(BPF_LINK_CREATE, &a, sizeof a);
}

struct openCtx { struct tap *t; const char *uplink; char *msg; size_t n; };

static int setupTap(struct openCtx *c) {
  struct tap *t = c->t;
  t->uplinkIndex = if_nametoindex(c->uplink);
  if (!t->uplinkIndex) { snprintf(c->msg, c->n, "tuntx: uplink %s: %s", c->uplink, strerror(errno)); return -1; }
  t->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (t->fd < 0) { snprintf(c->msg, c->n, "tuntx: /dev/net/tun: %s", strerror(errno)); return -1; }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, t->name, IFNAMSIZ);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(t->fd, TUNSETIFF, &ifr) < 0) { snprintf(c->msg, c->n, "tuntx: tap %s: TUNSETIFF: %s", t->name, strerror(errno)); return -1; }
  int sz = (int)sizeof(struct vnetTnlHdr), le = 1;
  if (ioctl(t->fd, TUNSETVNETHDRSZ, &sz) < 0) { snprintf(c->msg, c->n, "tuntx: tap %s: TUNSETVNETHDRSZ: %s", t->name, strerror(errno)); return -1; }
  // TUNSETVNETLE fails only where CONFIG_TUN_VNET_CROSS_LE is off, and then a
  // little-endian host's headers are little-endian anyway.
  if (ioctl(t->fd, TUNSETVNETLE, &le) < 0 && errno != EINVAL) { snprintf(c->msg, c->n, "tuntx: tap %s: TUNSETVNETLE: %s", t->name, strerror(errno)); return -1; }
  unsigned off = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN | TUN_F_UDP_TUNNEL_GSO | (t->udpCsum ? TUN_F_UDP_TUNNEL_GSO_CSUM : 0);
  if (ioctl(t->fd, TUNSETOFFLOAD, off) < 0) {
    // tun's set_offload() refuses a flag it does not know with EINVAL:
    // before Linux 6.17 that is TUN_F_UDP_TUNNEL_GSO (the caller segments).
    snprintf(c->msg, c->n, "tuntx: tap %s: TUNSETOFFLOAD: %s%s", t->name, strerror(errno),
             errno == EINVAL ? " (this kernel's tun has no UDP tunnel GSO, TUN_F_UDP_TUNNEL_GSO: Linux 6.17 or later)" : "");
    errno = ENOTSUP;
    return -1;
  }
  t->tapIndex = if_nametoindex(t->name);
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) { snprintf(c->msg, c->n, "tuntx: socket: %s", strerror(errno)); return -1; }
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, t->name, IFNAMSIZ);
  int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
  ifr.ifr_flags |= IFF_UP | IFF_NOARP;
  if (rc == 0) rc = ioctl(s, SIOCSIFFLAGS, &ifr);
  close(s);
  if (rc < 0) { snprintf(c->msg, c->n, "tuntx: tap %s: up: %s", t->name, strerror(errno)); return -1; }
  // ingress: r0 = bpf_redirect(uplink, 0) (to its egress); egress: TC_ACT_SHOT
  struct bpf_insn redirect[] = {
    { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_1, .imm = (int32_t)t->uplinkIndex },
    { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_2, .imm = 0 },
    { .code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_redirect },
    { .code = BPF_JMP | BPF_EXIT },
  };
  struct bpf_insn drop[] = {
    { .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 2 /* TC_ACT_SHOT */ },
    { .code = BPF_JMP | BPF_EXIT },
  };
  int p1 = loadProg(redirect, 4), p2 = p1 >= 0 ? loadProg(drop, 2) : -1;
  if (p1 < 0 || p2 < 0) {
    snprintf(c->msg, c->n, "tuntx: loading the tc redirect program: %s", strerror(errno));
    if (p1 >= 0) close(p1);
    return -1;
  }
  t->linkIn = tcxLink(p1, t->tapIndex, ATTACH_TCX_INGRESS);
  int e = errno;
  t->linkOut = t->linkIn >= 0 ? tcxLink(p2, t->tapIndex, ATTACH_TCX_EGRESS) : -1;
  if (t->linkOut < 0 && t->linkIn >= 0) e = errno;
  close(p1); // the links hold the programs
  close(p2);
  if (t->linkIn < 0 || t->linkOut < 0) {
    snprintf(c->msg, c->n, "tuntx: attaching to tap %s (tcx, Linux 6.6 or later): %s", t->name, strerror(e));
    return -1;
  }
  return 0;
}

static void freeTap(struct tap *t) {
  if (t->linkIn >= 0) close(t->linkIn);
  if (t->linkOut >= 0) close(t->linkOut);
  if (t->fd >= 0) close(t->fd); // the tap (not persistent) goes with its last fd
  free(t);
}

/** open(tapName, uplink, { netns?, udpCsum? }) -> handle. */
static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[IFNAMSIZ + 1], uplink[IFNAMSIZ + 1], netns[256] = "";
  size_t n1 = 0, n2 = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &n1) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], uplink, sizeof uplink, &n2) != napi_ok)
    return throwErr(env, "tuntx open: expects (tapName, uplinkName, options?)");
  if (n1 == 0 || n1 >= IFNAMSIZ || n2 == 0 || n2 >= IFNAMSIZ) return throwErr(env, "tuntx open: interface names must be 1 to 15 characters");
  bool udpCsum = false;
  if (argc >= 3) {
    napi_valuetype ty;
    napi_typeof(env, argv[2], &ty);
    if (ty == napi_object) {
      napi_value v;
      bool has = false;
      if (napi_has_named_property(env, argv[2], "netns", &has) == napi_ok && has) {
        size_t l;
        napi_get_named_property(env, argv[2], "netns", &v);
        napi_typeof(env, v, &ty);
        if (ty != napi_undefined && (ty != napi_string || napi_get_value_string_utf8(env, v, netns, sizeof netns, &l) != napi_ok))
          return throwErr(env, "tuntx open: netns must be a path (string)");
      }
      if (napi_has_named_property(env, argv[2], "udpCsum", &has) == napi_ok && has) {
        napi_get_named_property(env, argv[2], "udpCsum", &v);
        napi_typeof(env, v, &ty);
        if (ty != napi_undefined && napi_get_value_bool(env, v, &udpCsum) != napi_ok) return throwErr(env, "tuntx open: udpCsum must be a boolean");
      }
    }
  }
  struct tap *t = calloc(1, sizeof *t);
  if (!t) return throwErr(env, "tuntx open: out of memory");
  t->fd = t->linkIn = t->linkOut = -1;
  t->udpCsum = udpCsum;
  memcpy(t->name, name, IFNAMSIZ);
  char msg[384];
  struct openCtx c = { t, uplink, msg, sizeof msg };
  int rc;
  if (netns[0]) {
    // a tap and an ifindex belong to the namespace of the thread that makes them
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), target = open(netns, O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
      snprintf(msg, sizeof msg, "tuntx open: network namespace %s: %s", netns, strerror(errno));
      if (self >= 0) close(self);
      if (target >= 0) close(target);
      freeTap(t);
      return throwErr(env, msg);
    }
    rc = setupTap(&c);
    int back = setns(self, CLONE_NEWNET);
    close(self);
    close(target);
    if (back < 0) abort(); // this thread would run in the wrong namespace from now on
  } else {
    rc = setupTap(&c);
  }
  if (rc < 0) {
    freeTap(t);
    return throwErr(env, msg);
  }
  pthread_mutex_lock(&handlesLock);
  int h = -1;
  for (int i = 0; i < MAX_HANDLES; i++)
    if (!handles[i]) { handles[i] = t; h = i; break; }
  pthread_mutex_unlock(&handlesLock);
  if (h < 0) { freeTap(t); return throwErr(env, "tuntx open: too many open taps"); }
  return num(env, h);
}

static struct tap *tapOf(napi_env env, napi_value v) {
  uint32_t h;
  if (napi_get_value_uint32(env, v, &h) != napi_ok || h >= MAX_HANDLES || !handles[h]) return NULL;
  return handles[h];
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t h;
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &h) != napi_ok || h >= MAX_HANDLES) return throwErr(env, "tuntx close: bad handle");
  pthread_mutex_lock(&handlesLock);
  struct tap *t = handles[h];
  handles[h] = NULL;
  pthread_mutex_unlock(&handlesLock);
  if (t) freeTap(t);
  return NULL;
}

// ---- send ------------------------------------------------------------------------------

/** The one's-complement sum of p[0..n) (big-endian 16-bit words) added to sum, unfolded. */
static uint32_t sumBytes(const uint8_t *p, size_t n, uint32_t sum) {
  for (; n > 1; p += 2, n -= 2) sum += (uint32_t)((p[0] << 8) | p[1]);
  if (n) sum += (uint32_t)(p[0] << 8);
  return sum;
}
static uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum;
}

/**
 * The pseudo-header sum (RFC 768 / RFC 793; RFC 8200 section 8.1 for IPv6)
 * of the L4 header at f+l4 over `len` bytes, with the addresses of the IP
 * header at f+nh: folded, not complemented - what a CHECKSUM_PARTIAL skb
 * holds in its checksum field for the device (or the segmenter) to finish.
 */
static uint16_t pseudoSum(const uint8_t *f, unsigned nh, int v6, uint8_t proto, uint32_t len) {
  uint32_t s = v6 ? sumBytes(f + nh + 8, 32, 0) : sumBytes(f + nh + 12, 8, 0);
  s += proto + (len >> 16) + (len & 0xffff);
  return fold(s);
}

/**
 * The sum of h[from..hl) then data[0..dl) as one byte string: with the
 * checksum field holding the pseudo-header sum, its complement is the checksum.
 */
static uint32_t sumFrame(const uint8_t *h, unsigned from, unsigned hl, const uint8_t *data, uint32_t dl) {
  uint32_t s = sumBytes(h + from, hl - from, 0);
  uint16_t d = fold(sumBytes(data, dl, 0));
  if ((hl - from) & 1) d = (uint16_t)((d << 8) | (d >> 8)); // the data starts at an odd offset: its sum is byte-swapped (RFC 1071 section 2(B))
  return s + d;
}

static void ipv4Csum(uint8_t *ip, unsigned ihl) {
  ip[10] = ip[11] = 0;
  wr16be(ip + 10, (uint16_t)~fold(sumBytes(ip, ihl, 0)));
}

struct frame { uint8_t *h; uint32_t hl, dl; unsigned gso, outerTh, innerNh, innerTh, flags; const uint8_t *d; };

/**
 * Checks frame f against the rules of virtio_net_hdr_tnl_to_skb() and its
 * flags, and finalises its lengths and checksums (the file's comment);
 * fills the virtio-net header. Returns 0 or a TT_E_* reason (then nothing
 * was written to the headers).
 */
static int prepare(const struct tap *t, struct frame *f, struct vnetTnlHdr *v) {
  if (f->flags & ~TT_FLAGS_ALL) return TT_E_FLAGS;
  int plain = f->flags & TT_PLAIN;
  if (f->gso == 0 && !plain) return TT_E_GSO_SIZE;
  int o6 = f->flags & TT_OUTER6, i6 = f->flags & TT_INNER6, iudp = f->flags & TT_INNER_UDP;
  int csum = (f->flags & TT_UDP_CSUM) || o6; // a zero UDP checksum is not for IPv6 (RFC 8200 section 8.1)
  if (csum && !t->udpCsum) return TT_E_CSUM;
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
  if (total - nh > 65535 || (o6 && total - nh - 40 > 65535)) return TT_E_LONG;
  if (!plain && f->dl <= f->gso) return TT_E_ONE_SEG;
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
    uint16_t c = (uint16_t)~fold(sumFrame(h, f->innerTh, f->hl, f->d, f->dl));
    wr16be(ick, iudp && c == 0 ? 0xffff : c); // RFC 768: a computed 0 is sent as all ones
    if (csum) {
      c = (uint16_t)~fold(sumFrame(h, f->outerTh, f->hl, f->d, f->dl));
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
 * send(handle, mem, descBase, count) -> frames sent. Each descriptor's
 * status says what became of it; a frame refused is counted under its reason
 * and nothing of it is written to the tap. Throws only on bad arguments.
 */
static napi_value Send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) return throwErr(env, "tuntx send: expects (handle, memory, descBase, count)");
  struct tap *t = tapOf(env, argv[0]);
  if (!t) return throwErr(env, "tuntx send: bad handle");
  void *memp;
  size_t memLen;
  uint32_t base, count;
  if (napi_get_arraybuffer_info(env, argv[1], &memp, &memLen) != napi_ok) return throwErr(env, "tuntx send: memory must be an ArrayBuffer");
  if (napi_get_value_uint32(env, argv[2], &base) != napi_ok || napi_get_value_uint32(env, argv[3], &count) != napi_ok)
    return throwErr(env, "tuntx send: descBase and count must be non-negative integers");
  if ((uint64_t)base + (uint64_t)count * TT_DESC > memLen) return throwErr(env, "tuntx send: descriptors outside the memory");
  uint8_t *mem = memp;
  uint32_t sent = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint8_t *d = mem + base + (size_t)i * TT_DESC;
    uint32_t hoff = rd32le(d + TD_HDR), doff = rd32le(d + TD_DATA);
    struct frame f = { NULL, rd16le(d + TD_HDRLEN), rd32le(d + TD_DATALEN), rd16le(d + TD_GSO), rd16le(d + TD_OUTER_TH),
                       rd16le(d + TD_INNER_NH), rd16le(d + TD_INNER_TH), rd16le(d + TD_FLAGS), NULL };
    int st;
    struct vnetTnlHdr v;
    if ((uint64_t)hoff + f.hl > memLen || (uint64_t)doff + f.dl > memLen) st = TT_E_RANGE;
    else {
      f.h = mem + hoff;
      f.d = mem + doff;
      st = prepare(t, &f, &v);
    }
    if (st == TT_OK) {
      struct iovec iov[3] = { { &v, sizeof v }, { f.h, f.hl }, { mem + doff, f.dl } };
      ssize_t w = writev(t->fd, iov, 3);
      if (w < 0) {
        st = (errno == EAGAIN || errno == ENOBUFS) ? TT_E_BUSY : TT_E_WRITE;
        t->lastErrno = errno;
      } else {
        sent++;
        t->frames++;
        t->bytes += f.hl + f.dl;
        t->segments += (f.flags & TT_PLAIN) ? 1 : (f.dl + f.gso - 1) / f.gso;
      }
    }
    if (st != TT_OK) t->errors[st]++;
    wr32le(d + TD_STATUS, (uint32_t)st);
  }
  return num(env, sent);
}

static napi_value Stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct tap *t = argc >= 1 ? tapOf(env, argv[0]) : NULL;
  if (!t) return throwErr(env, "tuntx stats: bad handle");
  napi_value o, e;
  napi_create_object(env, &o);
  napi_create_object(env, &e);
  setNum(env, o, "frames", (double)t->frames);
  setNum(env, o, "bytes", (double)t->bytes);
  setNum(env, o, "segments", (double)t->segments);
  setNum(env, o, "lastErrno", t->lastErrno);
  setNum(env, o, "tapIndex", t->tapIndex);
  setNum(env, o, "uplinkIndex", t->uplinkIndex);
  for (int r = 1; r < TT_E_N; r++) setNum(env, e, reasonName[r], (double)t->errors[r]);
  napi_set_named_property(env, o, "errors", e);
  return o;
}

// the lab's VM side (tuntx_lab.c): tests and the bench only
napi_value TunTxLabOpen(napi_env env, napi_callback_info info);
napi_value TunTxLabRead(napi_env env, napi_callback_info info);
napi_value TunTxLabClose(napi_env env, napi_callback_info info);

NAPI_MODULE_INIT() {
  napi_value reasons, consts;
  napi_create_array_with_length(env, TT_E_N, &reasons);
  for (int r = 0; r < TT_E_N; r++) {
    napi_value s;
    napi_create_string_utf8(env, reasonName[r], NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, reasons, r, s);
  }
  napi_create_object(env, &consts);
  setNum(env, consts, "DESC", TT_DESC);
  setNum(env, consts, "OUTER6", TT_OUTER6);
  setNum(env, consts, "INNER6", TT_INNER6);
  setNum(env, consts, "UDP_CSUM", TT_UDP_CSUM);
  setNum(env, consts, "INNER_UDP", TT_INNER_UDP);
  setNum(env, consts, "ECN", TT_ECN);
  setNum(env, consts, "PLAIN", TT_PLAIN);
  napi_property_descriptor d[] = {
    { "open", NULL, Open, NULL, NULL, NULL, napi_enumerable, NULL },
    { "close", NULL, Close, NULL, NULL, NULL, napi_enumerable, NULL },
    { "send", NULL, Send, NULL, NULL, NULL, napi_enumerable, NULL },
    { "stats", NULL, Stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "reasons", NULL, NULL, NULL, NULL, reasons, napi_enumerable, NULL },
    { "consts", NULL, NULL, NULL, NULL, consts, napi_enumerable, NULL },
    { "labOpen", NULL, TunTxLabOpen, NULL, NULL, NULL, napi_enumerable, NULL },
    { "labRead", NULL, TunTxLabRead, NULL, NULL, NULL, napi_enumerable, NULL },
    { "labClose", NULL, TunTxLabClose, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}
