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
// The frame's headers are finalised (tuntx_core.h, which any addon holding
// the tap's fd can use: the AF_PACKET addon for the data plane's whole encap
// super-frames) - the lengths and checksums that only
// the whole frame's length decides): the outer IPv4 total length and header
// checksum or IPv6 payload length, the outer UDP length and checksum field
// (0 - RFC 7348 section 5's SHOULD for IPv4 - or, with TT_UDP_CSUM, the
// pseudo-header sum the segmenter completes per segment), the inner IP
// length (and IPv4 checksum) and the inner TCP/UDP checksum field set to the
// pseudo-header sum over the whole L4 length, which is what the kernel's
// segmenter (tcp_gso_segment, __udp_gso_segment) expects of a super-frame.
// Every other byte is the caller's. A frame is refused, nothing of it
// written, when it breaks virtio_net_hdr_tnl_to_skb()'s rules or its flags,
// or when a segment would not fit the uplink's MTU (a wrong gso_size); a
// TT_PLAIN frame (no GSO) gets both checksums completed in software instead.
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
//   +22 u16 flags    TT_* (tuntx_core.h)
//   +24 u32 status   written by send(): 0 sent, else a TT_E_* reason (tuntx_core.h)
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

#include "napi_common.h" // throwErr, num, setNum, inNetns (shared with the packet I/O addons)
#include "tuntx_core.h"

// tcx attach points (include/uapi/linux/bpf.h, Linux 6.6)
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

// ---- handles -------------------------------------------------------------------------

// One tap per sender thread (counters are plain: a nvedge worker has its own).
#define MAX_HANDLES 64
struct tap {
  int fd, linkIn, linkOut;
  unsigned tapIndex, uplinkIndex, mtu;
  int udpCsum;
  char name[IFNAMSIZ];
  uint64_t frames, bytes, segments, errors[TT_E_N];
  int lastErrno;
};
static struct tap *handles[MAX_HANDLES];
static pthread_mutex_t handlesLock = PTHREAD_MUTEX_INITIALIZER;



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
  struct ifreq mr;
  memset(&mr, 0, sizeof mr);
  snprintf(mr.ifr_name, IFNAMSIZ, "%s", c->uplink);
  if (ioctl(s, SIOCGIFMTU, &mr) == 0) t->mtu = (unsigned)mr.ifr_mtu; // each segment must fit it
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

static int setupThunk(void *c) { return setupTap(c); }

static void freeTap(struct tap *t) {
  if (t->linkIn >= 0) close(t->linkIn);
  if (t->linkOut >= 0) close(t->linkOut);
  if (t->fd >= 0) close(t->fd); // the tap (not persistent) goes with its last fd
  free(t);
}

/*
 * One tap's making: the arguments, then what setupTap gave. open() makes it on
 * the calling thread; openStart() on a thread of its own, which openFinish()
 * joins (issue 15: a packet I/O worker restores its table image meanwhile;
 * the tcx attaches and TUNSETIFF wait 30-45 ms inside the kernel).
 */
struct openJob {
  struct tap *t;
  char uplink[IFNAMSIZ + 1], netns[256], msg[384];
  int rc;
  pthread_t th;
  int started, finished;
};

/** Parses open()'s arguments into a new job (NULL: an exception is pending). */
static struct openJob *parseOpen(napi_env env, napi_callback_info info, const char *what) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[IFNAMSIZ + 1], uplink[IFNAMSIZ + 1], netns[256] = "", msg[96];
  size_t n1 = 0, n2 = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &n1) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], uplink, sizeof uplink, &n2) != napi_ok) {
    snprintf(msg, sizeof msg, "tuntx %s: expects (tapName, uplinkName, options?)", what);
    throwErr(env, msg);
    return NULL;
  }
  if (n1 == 0 || n1 >= IFNAMSIZ || n2 == 0 || n2 >= IFNAMSIZ) {
    snprintf(msg, sizeof msg, "tuntx %s: interface names must be 1 to 15 characters", what);
    throwErr(env, msg);
    return NULL;
  }
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
        if (ty != napi_undefined && (ty != napi_string || napi_get_value_string_utf8(env, v, netns, sizeof netns, &l) != napi_ok)) {
          snprintf(msg, sizeof msg, "tuntx %s: netns must be a path (string)", what);
          throwErr(env, msg);
          return NULL;
        }
      }
      if (napi_has_named_property(env, argv[2], "udpCsum", &has) == napi_ok && has) {
        napi_get_named_property(env, argv[2], "udpCsum", &v);
        napi_typeof(env, v, &ty);
        if (ty != napi_undefined && napi_get_value_bool(env, v, &udpCsum) != napi_ok) {
          snprintf(msg, sizeof msg, "tuntx %s: udpCsum must be a boolean", what);
          throwErr(env, msg);
          return NULL;
        }
      }
    }
  }
  struct openJob *j = calloc(1, sizeof *j);
  struct tap *t = calloc(1, sizeof *t);
  if (!j || !t) {
    free(j);
    free(t);
    snprintf(msg, sizeof msg, "tuntx %s: out of memory", what);
    throwErr(env, msg);
    return NULL;
  }
  t->fd = t->linkIn = t->linkOut = -1;
  t->udpCsum = udpCsum;
  memcpy(t->name, name, IFNAMSIZ);
  j->t = t;
  memcpy(j->uplink, uplink, sizeof j->uplink);
  memcpy(j->netns, netns, sizeof j->netns);
  return j;
}

/** Makes the job's tap on this thread: rc 0, or -1 with msg. */
static void runJob(struct openJob *j) {
  struct openCtx c = { j->t, j->uplink, j->msg, sizeof j->msg };
  // a tap and an ifindex belong to the namespace of the thread that makes them
  if (j->netns[0]) j->rc = inNetns(j->netns, j->t->name, setupThunk, &c, j->msg, sizeof j->msg);
  else j->rc = setupTap(&c);
}

static void *runJobThread(void *arg) { runJob(arg); return NULL; }

/** The job's tap as a handle, or throws with why it was not made; the job is spent (its tap owned by the handle or freed). */
static napi_value finishJob(napi_env env, struct openJob *j) {
  struct tap *t = j->t;
  j->t = NULL;
  if (j->rc < 0) {
    freeTap(t);
    return throwErr(env, j->msg);
  }
  pthread_mutex_lock(&handlesLock);
  int h = -1;
  for (int i = 0; i < MAX_HANDLES; i++)
    if (!handles[i]) { handles[i] = t; h = i; break; }
  pthread_mutex_unlock(&handlesLock);
  if (h < 0) { freeTap(t); return throwErr(env, "tuntx open: too many open taps"); }
  return num(env, h);
}

/** open(tapName, uplink, { netns?, udpCsum? }) -> handle. */
static napi_value Open(napi_env env, napi_callback_info info) {
  struct openJob *j = parseOpen(env, info, "open");
  if (!j) return NULL;
  runJob(j);
  napi_value h = finishJob(env, j);
  free(j);
  return h;
}

/* A job's finalizer: one never finished is joined and its tap freed (nothing may outlive it half made). */
static void jobFree(napi_env env, void *d, void *hint) {
  struct openJob *j = d;
  if (j->started && !j->finished) pthread_join(j->th, NULL);
  if (j->t) freeTap(j->t);
  free(j);
}

/** openStart(tapName, uplink, options?) -> a job making the tap on a thread of its own; openFinish(job) -> handle. */
static napi_value OpenStart(napi_env env, napi_callback_info info) {
  struct openJob *j = parseOpen(env, info, "openStart");
  if (!j) return NULL;
  int rc = pthread_create(&j->th, NULL, runJobThread, j);
  if (rc != 0) {
    freeTap(j->t);
    free(j);
    char msg[96];
    snprintf(msg, sizeof msg, "tuntx openStart: pthread_create: %s", strerror(rc));
    return throwErr(env, msg);
  }
  j->started = 1;
  napi_value v;
  napi_create_external(env, j, jobFree, NULL, &v);
  return v;
}

/** openFinish(job): waits for openStart's thread; the tap's handle, or throws as open() would. Once per job. */
static napi_value OpenFinish(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct openJob *j = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&j) != napi_ok || !j || j->finished)
    return throwErr(env, "tuntx openFinish: expects a job from openStart, not finished yet");
  pthread_join(j->th, NULL);
  j->finished = 1;
  return finishJob(env, j);
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

/**
 * Counts one frame's outcome: sent (its bytes and the segments the kernel
 * will cut it into), or refused under its TT_E_* reason (the write's errno
 * kept for stats.lastErrno). Call right after ttSend/ttSendPieces.
 */
static void account(struct tap *t, int st, uint64_t bytes, uint64_t segments) {
  if (st == TT_E_WRITE || st == TT_E_BUSY) t->lastErrno = errno;
  if (st != TT_OK) { t->errors[st]++; return; }
  t->frames++;
  t->bytes += bytes;
  t->segments += segments;
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
    uint32_t hoff = rd32le(d + TD_HDR), hl = rd16le(d + TD_HDRLEN), doff = rd32le(d + TD_DATA), dl = rd32le(d + TD_DATALEN);
    unsigned gso = rd16le(d + TD_GSO), flags = rd16le(d + TD_FLAGS);
    int st;
    if ((uint64_t)hoff + hl > memLen || (uint64_t)doff + dl > memLen) {
      st = TT_E_RANGE;
    } else {
      struct iovec pay = { mem + doff, dl };
      st = ttSend(t->fd, t->udpCsum, t->mtu, mem + hoff, hl, gso, rd16le(d + TD_OUTER_TH), rd16le(d + TD_INNER_NH), rd16le(d + TD_INNER_TH), flags, &pay, 1);
    }
    account(t, st, hl + dl, (flags & TT_PLAIN) ? 1 : st == TT_OK ? (dl + gso - 1) / gso : 0);
    if (st == TT_OK) sent++;
    wr32le(d + TD_STATUS, (uint32_t)st);
  }
  return num(env, sent);
}

/**
 * sendVnet(handle, mem, hdr, hdrLen, vnet, outerTh, innerNh, data, dataLen)
 * -> status (an index into reasons): one frame, in two pieces split anywhere
 * (mem[hdr, +hdrLen) then mem[data, +dataLen)), described as the data plane
 * describes a whole super-frame output (a 10-byte struct virtio_net_hdr at
 * mem[vnet], assembly/abi.ts OG_VNET; the tunnel offsets beside it), sent
 * through tuntx_core.h's ttSendPieces as the AF_PACKET addon would.
 */
static napi_value SendVnet(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 9) return throwErr(env, "tuntx sendVnet: expects (handle, memory, hdr, hdrLen, vnet, outerTh, innerNh, data, dataLen)");
  struct tap *t = tapOf(env, argv[0]);
  if (!t) return throwErr(env, "tuntx sendVnet: bad handle");
  void *memp;
  size_t memLen;
  uint32_t a[7];
  if (napi_get_arraybuffer_info(env, argv[1], &memp, &memLen) != napi_ok) return throwErr(env, "tuntx sendVnet: memory must be an ArrayBuffer");
  for (int i = 0; i < 7; i++)
    if (napi_get_value_uint32(env, argv[2 + i], &a[i]) != napi_ok) return throwErr(env, "tuntx sendVnet: offsets and lengths must be non-negative integers");
  uint32_t hoff = a[0], hl = a[1], voff = a[2], outerTh = a[3], innerNh = a[4], doff = a[5], dl = a[6];
  uint8_t *mem = memp;
  int st;
  if ((uint64_t)hoff + hl > memLen || (uint64_t)voff + 10 > memLen || (uint64_t)doff + dl > memLen || hl > 0xffff || outerTh > 0xffff || innerNh > 0xffff) {
    st = TT_E_RANGE;
  } else {
    const uint8_t *vh = mem + voff; // flags, gso_type, hdr_len, gso_size, csum_start, csum_offset (little-endian)
    struct iovec pieces[2] = { { mem + hoff, hl }, { mem + doff, dl } };
    st = ttSendPieces(t->fd, t->udpCsum, t->mtu, vh[0], vh[1], rd16le(vh + 4), outerTh, innerNh, rd16le(vh + 6), pieces, 2);
  }
  uint16_t gso = st == TT_OK ? rd16le(mem + voff + 4) : 0;
  account(t, st, hl + dl, gso ? (dl + gso - 1) / gso : 1);
  return num(env, st);
}

/**
 * fd(handle) -> the tap's file descriptor, for another addon of this process
 * to send through with tuntx_core.h (the AF_PACKET addon's whole encap
 * super-frames); it stays this module's to close.
 */
static napi_value Fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct tap *t = argc >= 1 ? tapOf(env, argv[0]) : NULL;
  if (!t) return throwErr(env, "tuntx fd: bad handle");
  return num(env, t->fd);
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
  setNum(env, o, "mtu", t->mtu);
  for (int r = 1; r < TT_E_N; r++) setNum(env, e, ttReasonName[r], (double)t->errors[r]);
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
    napi_create_string_utf8(env, ttReasonName[r], NAPI_AUTO_LENGTH, &s);
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
    { "openStart", NULL, OpenStart, NULL, NULL, NULL, napi_enumerable, NULL },
    { "openFinish", NULL, OpenFinish, NULL, NULL, NULL, napi_enumerable, NULL },
    { "close", NULL, Close, NULL, NULL, NULL, napi_enumerable, NULL },
    { "send", NULL, Send, NULL, NULL, NULL, napi_enumerable, NULL },
    { "stats", NULL, Stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "fd", NULL, Fd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "sendVnet", NULL, SendVnet, NULL, NULL, NULL, napi_enumerable, NULL },
    { "reasons", NULL, NULL, NULL, NULL, reasons, napi_enumerable, NULL },
    { "consts", NULL, NULL, NULL, NULL, consts, napi_enumerable, NULL },
    { "labOpen", NULL, TunTxLabOpen, NULL, NULL, NULL, napi_enumerable, NULL },
    { "labRead", NULL, TunTxLabRead, NULL, NULL, NULL, napi_enumerable, NULL },
    { "labClose", NULL, TunTxLabClose, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}
