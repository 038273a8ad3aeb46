// Packet I/O for nvedge: AF_PACKET sockets with a memory-mapped TPACKET_V2
// receive ring, and sendmmsg() with a two-piece gather list per frame. Frames
// are copied from the ring straight into the WebAssembly memory's slots and
// sent straight out of it (the in-desc / out-desc ABI of assembly/abi.ts).
// Only batching and the ring protocol live here; everything else is in
// host/io/afpacket.ts and worker.ts.
//
// Exports:
//   open(ifname, opts) -> handle        opts: { blockSize, blockCount, blockTimeoutMs (ignored: no V3 blocks),
//                                               fanout (group id, -1 none), netns (path), qdiscBypass,
//                                               vnetHdr (1: PACKET_VNET_HDR, needs descFlags first) }
//   descFlags(vnet, gsoSeg, gsoLast, segShift)  the in-desc flag bits (the data plane's
//                                       constants, assembly/abi.ts IF_*, passed in by the caller)
//   recv(handle, mem, slotBase, slotSize, headroom, inDescBase, first, max, port, timeoutMs) -> count
//   send(handles[], mem, outDescBase, hdrBase, hdrSlot, count) -> sent
//   poll(handles[], timeoutMs, wakeFd) -> number of ready descriptors (0 on timeout)
//   eventfd() -> fd; wake(fd)           so another thread can cut a poll() short
//   stats(handle) -> { rxFrames, rxBytes, txFrames, txBytes, txErrors, oversize, csumNotReady, gsoFrames,
//                      gsoSegments, gsoBad, kernelDrops, kernelFreezes, copied }
//
// Why TPACKET_V2 and not V3 (issue 11, session 8): a V3 ring hands a block
// to user space only when it is full or when its retire timer fires
// (tp_retire_blk_tov, 1 ms at the least; one jiffy, 4 ms, before Linux 6.18),
// and wakes poll() only then (tpacket_rcv calls sk_data_ready per frame for
// V1/V2 only). A lone frame (a ping, a TCP ACK) never fills a block, so every
// crossing of the NVE waited for the timer: 1.1-1.7 ms added to each round
// trip here, and TCP through nvedge bound by its round trip. V2 gives each
// frame its own status word and wakes the reader per frame.
// A V2 frame has a fixed size (RING_FRAME, room for a 1500-byte MTU frame
// and its headers): a longer one (a GSO super-frame, a jumbo frame) is put in
// its ring frame truncated with TP_STATUS_COPY, and, with PACKET_COPY_THRESH
// set, a clone of its skb is queued on the socket (tpacket_rcv, under the
// receive queue's lock, so the queue's order is the ring's order of COPY
// frames): recv() takes it whole with recvmsg() into a buffer of the socket's
// own (BIG_MAX), in its place in the ring's order. stats: copied.
//   abiHash                             NVEDGE_ABI_HASH of the abi.h compiled in (host/io/addon.ts checks it)
//
// Offloads (issue 11): with vnetHdr the kernel puts a struct virtio_net_hdr
// before each received frame (PACKET_VNET_HDR; tpacket_rcv writes it right
// before the MAC header). A frame whose L4 checksum its local sender left
// partial (CHECKSUM_PARTIAL) goes to the data plane with that header in its
// slot's headroom and the IF_VNET flag, and the data plane completes the
// checksum. A GSO super-frame (TSO/USO from a local stack, or a kernel VTEP's
// tunnel GSO) is cut here into one slot per gso_size bytes of payload, each
// with a copy of the super-frame's headers (IF_GSO_SEG, its index, IF_GSO_LAST
// on the last), and the data plane makes each segment's headers real
// (assembly/pipeline/offload.ts): so a super-frame is never dropped for being
// longer than a slot.
// A TCP super-frame (TSO, or a kernel VTEP's tunnel GSO) is first offered
// whole (open's `whole`, on by default with vnetHdr; assembly/pipeline/gso.ts):
// only segment 0 goes to its slot, with IF_GSO_WHOLE and a whole record
// (abi.h IW_*: a token naming it, the payload bytes left), and the frame
// waits in a buffer of the socket's own (bufs[], see Recv). If the data plane
// promotes segment 0's output (OF_GSO, a GSO record at the end of its header
// slot), send() gathers [its virtio-net header]
// [header piece][data piece][the rest of the payload, from that buffer] into one
// message: one skb with a TSO request (gsoWholeSent). Otherwise the next recv
// cuts the rest, segments 1.., as above. stats: gsoWholeSent, gsoWholeStale
// (a whole output whose super-frame was no longer waiting: not sent),
// gsoWholeErrors (its port cannot ask for segmentation: lost).
// An encap super-frame (the data plane's OGK_TUNNEL output, promoted only
// when the host set GSO_CAP_TUNNEL on the underlay port) leaves through the
// tunnel TX tap the host attached to the uplink's socket (tunnelTx: a tuntx
// tap, host/io/native/tuntx.c, whose ingress tc redirects to the uplink): one
// writev() of ONE VXLAN/Geneve frame with a UDP-tunnel GSO request
// (tuntx_core.h ttSendPieces), in the socket's output order among the
// frames its sendmmsg() sends. stats: gsoTunnelSent, gsoTunnelErrors.
//   tunnelTx(handle, fd, udpCsum, mtu)  attach a tuntx tap's fd to the socket (fd -1: detach)
//   close(handle)
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <linux/virtio_net.h>
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5 // virtio 1.1 §5.1.6 (USO); older uapi headers lack it
#endif
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "abi.h"       // the memory ABI (generated from assembly/ by scripts/abi.mjs)
#include "io_common.h" // N-API helpers, recv/send arguments, descriptors, netns, poll (shared with afxdp/afxdp.c)
#include "tuntx_core.h" // ttSendPieces: an encap super-frame through a tuntx tap (issue 11)

#define MAX_HANDLES 256

struct tagInfo { int on; uint16_t tpid, tci; };

// A GSO super-frame being cut into slots over one or more recv() calls: where
// it is in the ring, its headers' length, its virtio-net header and tag.
struct cut {
  const uint8_t *frame;
  uint32_t len, hl, gso, segs;
  struct virtio_net_hdr vh;
  struct tagInfo tag;
  uint8_t *buf;                        // the socket's buffer the frame is in (given back once sent or cut)
};

// A super-frame offered whole (IF_GSO_WHOLE, assembly/pipeline/gso.ts): its
// segment 0 with the data plane (send() may take it whole), taken, or left
// to be cut (the next recv found it not taken).
enum { W_PENDING = 1, W_TAKEN, W_CUT };
// Super-frames offered whole by one recv() (a power of two: a token's low 16
// bits name the entry). Each waits in a buffer of the socket's (cut.buf)
// until sent or cut.
#define PEND_MAX 16
struct pend { struct cut cut; uint32_t segK, gen; int state; };
// Buffers a socket may hold at once: one per pending super-frame, one for the
// super-frame being cut, one to receive the next long frame into.
#define NBUF (PEND_MAX + 2)
// One V2 ring frame: its header (TPACKET2_HDRLEN, aligned), 16 bytes for the
// MAC header's alignment, a virtio-net header and a 1500-byte MTU frame with
// an 802.1Q tag fit (macoff is 66, 76 with vnetHdr).
#define RING_FRAME 2048
// The longest frame taken from the copy queue: a 64 KiB GSO super-frame
// (gso_max_size 65536, IPv4 total length at most 65535) and its MAC header.
#define BIG_MAX (65536 + 256)

struct sock {
  int fd;
  char ifname[IFNAMSIZ];
  uint8_t *ring;
  size_t ringLen;
  unsigned frameNr;                    // ring frames of RING_FRAME bytes
  unsigned head;                       // next ring frame to read
  int vnet;                            // PACKET_VNET_HDR is on
  uint32_t segK;                       // next segment of the super-frame being cut (0: none started)
  struct cut cut;                      // ... that super-frame (in cut.buf)
  // Buffers of BIG_MAX bytes for frames longer than a ring frame (recvmsg'd
  // from the copy queue) and for super-frames that outlive their ring frame
  // (cut over several calls, offered whole): allocated on first use (bufs[],
  // nBufs of them), and those not holding a frame kept on a stack (freeBuf[],
  // nFree), the last one given back on top. Why a stack (issue 11, session
  // 9): each super-frame is copied into its buffer by recvmsg() and out of it
  // by send() moments later; taking the buffer the last send() just read
  // keeps the copy's destination in this core's cache (one or two buffers in
  // use while super-frames go whole one by one), where a buffer per pending
  // entry (gen % 16) cycled through 17 of them, 1.1 MiB, every copy's
  // destination long evicted. stats: bigBuffers.
  uint8_t *bufs[NBUF], *freeBuf[NBUF];
  unsigned nBufs, nFree;
  uint64_t copied;                     // frames received whole through the copy queue
  uint16_t id;                         // this socket's handle (a whole super-frame's token names it)
  int wholeOn;                         // offer TCP super-frames whole (open's `whole`, default on with vnetHdr)
  struct pend pend[PEND_MAX];          // super-frames offered whole, generations firstGen .. nextGen-1 (entry gen % PEND_MAX)
  uint32_t firstGen, nextGen;
  int lastTaken;                       // the last one resolved was sent whole (then offer every one; else one in 64)
  uint32_t probe;
  uint64_t gsoWholeSent, gsoWholeStale, gsoWholeErrors;
  uint64_t rxFrames, rxBytes, txFrames, txBytes, txErrors, oversize, csumNotReady, kernelDrops, kernelFreezes;
  uint64_t gsoFrames, gsoSegments, gsoBad;
  uint16_t vlan;                       // underlay.vlan: frames carry this 802.1Q tag on the wire, none in the data plane (0: off)
  uint8_t vlanTag[4];                  // the tag sent: TPID 0x8100, PCP 0, VID vlan
  uint64_t vlanOther;                  // frames received without the tag, or with another (dropped)
  int tunFd;                           // a tuntx tap's fd for whole encap super-frames (tunnelTx; -1: none). Not ours to close
  int tunCsum;                         // the tap takes outer UDP checksums (TUN_F_UDP_TUNNEL_GSO_CSUM)
  unsigned tunMtu;                     // the uplink's MTU (no segment longer)
  uint64_t gsoTunnelSent, gsoTunnelErrors; // encap super-frames sent whole through the tap; refused by it (lost: TCP resends)
  int tunLastError;                    // the last refusal's TT_E_* reason (tuntx_core.h)
};

// The in-desc flag bits, from the data plane (descFlags): 0 until set.
static uint16_t fVnet, fGsoSeg, fGsoLast;
static uint32_t fSegShift;

static struct sock *handles[MAX_HANDLES];
static pthread_mutex_t handlesLock = PTHREAD_MUTEX_INITIALIZER;

static struct sock *getSock(napi_env env, napi_value v) {
  uint32_t h;
  if (!getU32(env, v, &h) || h >= MAX_HANDLES || !handles[h]) return NULL;
  return handles[h];
}

// ---- open -----------------------------------------------------------------

// Runs the whole socket setup; on failure fills msg and returns -1.
static int setup(struct sock *s, const char *ifname, uint32_t blockSize, uint32_t blockCount,
                 int32_t fanout, int qdiscBypass, int vnetHdr, char *msg, size_t msgLen) {
  unsigned ifindex = if_nametoindex(ifname);
  if (ifindex == 0) {
    if (errno == ENODEV || errno == ENXIO) snprintf(msg, msgLen, "interface %s does not exist", ifname);
    else snprintf(msg, msgLen, "interface %s: %s", ifname, strerror(errno));
    return -1;
  }
  // Protocol 0 until bind(): a socket opened with ETH_P_ALL would queue every
  // frame of every interface before it is bound to ours.
  s->fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (s->fd < 0) {
    if (errno == EPERM || errno == EACCES)
      snprintf(msg, msgLen, "interface %s: opening an AF_PACKET socket needs CAP_NET_RAW (run as root or grant cap_net_raw)", ifname);
    else snprintf(msg, msgLen, "interface %s: socket(AF_PACKET): %s", ifname, strerror(errno));
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
  if (ioctl(s->fd, SIOCGIFFLAGS, &ifr) < 0) {
    snprintf(msg, msgLen, "interface %s: SIOCGIFFLAGS: %s", ifname, strerror(errno));
    return -1;
  }
  if (!(ifr.ifr_flags & IFF_UP)) {
    snprintf(msg, msgLen, "interface %s is down (ip link set %s up)", ifname, ifname);
    return -1;
  }
  int v = 1;
  // Before the ring: the kernel refuses PACKET_VNET_HDR once one is set up.
  if (vnetHdr) {
    if (setsockopt(s->fd, SOL_PACKET, PACKET_VNET_HDR, &v, sizeof v) < 0) {
      snprintf(msg, msgLen, "interface %s: PACKET_VNET_HDR: %s", ifname, strerror(errno));
      return -1;
    }
    s->vnet = 1;
  }
  v = TPACKET_V2;
  if (setsockopt(s->fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) {
    snprintf(msg, msgLen, "interface %s: PACKET_VERSION TPACKET_V2: %s", ifname, strerror(errno));
    return -1;
  }
  // A frame longer than a ring frame is also queued whole on the socket
  // (TP_STATUS_COPY) while the queue holds less than its receive buffer:
  // room for a TCP window of 64 KiB super-frames (the kernel doubles it).
  v = 1;
  if (setsockopt(s->fd, SOL_PACKET, PACKET_COPY_THRESH, &v, sizeof v) < 0) {
    snprintf(msg, msgLen, "interface %s: PACKET_COPY_THRESH: %s", ifname, strerror(errno));
    return -1;
  }
  int rcvbuf = (int)((size_t)blockSize * blockCount > (8u << 20) ? (8u << 20) : (size_t)blockSize * blockCount);
  if (rcvbuf < (1 << 20)) rcvbuf = 1 << 20;
  if (setsockopt(s->fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
    setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf); // without CAP_NET_ADMIN: up to rmem_max
  struct tpacket_req req;
  memset(&req, 0, sizeof req);
  req.tp_block_size = blockSize;
  req.tp_block_nr = blockCount;
  req.tp_frame_size = RING_FRAME;
  req.tp_frame_nr = (blockSize / RING_FRAME) * blockCount;
  if (setsockopt(s->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) {
    snprintf(msg, msgLen, "interface %s: PACKET_RX_RING (%u blocks of %u bytes): %s", ifname, blockCount, blockSize, strerror(errno));
    return -1;
  }
  s->ringLen = (size_t)blockSize * blockCount;
  s->ring = mmap(NULL, s->ringLen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED | MAP_POPULATE, s->fd, 0);
  if (s->ring == MAP_FAILED) s->ring = mmap(NULL, s->ringLen, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
  if (s->ring == MAP_FAILED) {
    s->ring = NULL;
    snprintf(msg, msgLen, "interface %s: mmap of the receive ring: %s", ifname, strerror(errno));
    return -1;
  }
  s->frameNr = req.tp_frame_nr; // RING_FRAME divides blockSize: frame i is at i * RING_FRAME
  // What we send must never come back to us through our own tap.
  v = 1;
  if (setsockopt(s->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &v, sizeof v) < 0) {
    snprintf(msg, msgLen, "interface %s: PACKET_IGNORE_OUTGOING: %s", ifname, strerror(errno));
    return -1;
  }
  if (qdiscBypass) {
    v = 1;
    setsockopt(s->fd, SOL_PACKET, PACKET_QDISC_BYPASS, &v, sizeof v);
  }
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = (int)ifindex;
  if (bind(s->fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    snprintf(msg, msgLen, "interface %s: bind: %s", ifname, strerror(errno));
    return -1;
  }
  if (fanout >= 0) {
    // Hash fanout keeps each flow on one socket (so one worker), in order.
    // PACKET_IGNORE_OUTGOING above is the socket's own hook's; a fanout
    // group has its own hook, which ignores outgoing frames only with this
    // flag (Linux 6.2): without it every frame another sender puts on the
    // link (the kernel's, tuntx's tap redirected here) comes back as received.
#ifndef PACKET_FANOUT_FLAG_IGNORE_OUTGOING
#define PACKET_FANOUT_FLAG_IGNORE_OUTGOING 0x4000
#endif
    int arg = (fanout & 0xffff) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_IGNORE_OUTGOING) << 16);
    if (setsockopt(s->fd, SOL_PACKET, PACKET_FANOUT, &arg, sizeof arg) < 0) {
      snprintf(msg, msgLen, "interface %s: PACKET_FANOUT group %d: %s", ifname, fanout & 0xffff, strerror(errno));
      return -1;
    }
  }
  return 0;
}

struct setupCtx {
  struct sock *s; const char *ifname; uint32_t blockSize, blockCount; int32_t fanout; int bypass, vnetHdr; char *msg; size_t msgLen;
};
static int setupThunk(void *p) {
  struct setupCtx *c = p;
  return setup(c->s, c->ifname, c->blockSize, c->blockCount, c->fanout, c->bypass, c->vnetHdr, c->msg, c->msgLen);
}

static void freeSock(struct sock *s) {
  for (unsigned i = 0; i < s->nBufs; i++) free(s->bufs[i]);
  if (s->ring) munmap(s->ring, s->ringLen);
  if (s->fd >= 0) close(s->fd);
  free(s);
}

static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ifname[IFNAMSIZ + 1];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], ifname, sizeof ifname, &len) != napi_ok)
    return throwErr(env, "open: interface name must be a string");
  if (len == 0 || len >= IFNAMSIZ) return throwErr(env, "open: interface name must be 1 to 15 characters");
  uint32_t blockSize = 1 << 18, blockCount = UINT32_MAX, tov = 1 /* checked, then unused: a V2 ring has no block timer */, bypass = 0, vnetHdr = 0, vlan = 0, whole = 1;
  int32_t fanout = -1;
  char netns[256] = "";
  if (argc >= 2) {
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t == napi_object) {
      napi_value v;
      bool has;
      if (!optU32(env, argv[1], "blockSize", &blockSize) || !optU32(env, argv[1], "blockCount", &blockCount) ||
          !optU32(env, argv[1], "blockTimeoutMs", &tov) || !optU32(env, argv[1], "qdiscBypass", &bypass) ||
          !optU32(env, argv[1], "vnetHdr", &vnetHdr) || !optU32(env, argv[1], "vlan", &vlan) || !optU32(env, argv[1], "whole", &whole))
        return throwErr(env, "open: blockSize, blockCount, blockTimeoutMs, qdiscBypass, vnetHdr, vlan, whole must be non-negative integers");
      if (napi_has_named_property(env, argv[1], "fanout", &has) == napi_ok && has) {
        napi_get_named_property(env, argv[1], "fanout", &v);
        napi_typeof(env, v, &t);
        if (t != napi_undefined && !getI32(env, v, &fanout)) return throwErr(env, "open: fanout must be an integer group id");
      }
      if (!optStr(env, argv[1], "netns", netns, sizeof netns)) return throwErr(env, "open: netns must be a path (string)");
    }
  }
  // With vnetHdr, GSO super-frames of up to 64 KiB arrive (through the copy
  // queue, its receive buffer sized from the ring): 64 blocks (16 MiB, 8192
  // ring frames) as in the V3 days, when 16 dropped ring-full frames
  // (kernelDrops) and cost TCP retransmissions in bench/tcp under load.
  // 16 blocks (4 MiB, 2048 ring frames) otherwise.
  if (blockCount == UINT32_MAX) blockCount = vnetHdr ? 64 : 16; // not given
  long page = sysconf(_SC_PAGESIZE);
  if (blockSize < 4096 || blockSize % page != 0 || (blockSize & (blockSize - 1)) != 0)
    return throwErr(env, "open: blockSize must be a power of two and at least one page");
  if (blockCount < 1 || blockCount > 65536) return throwErr(env, "open: blockCount must be 1..65536");
  if (vlan > 4094) return throwErr(env, "open: vlan must be 0 (none) or a VLAN id 1..4094");
  if (vnetHdr && !fVnet) return throwErr(env, "open: vnetHdr needs descFlags() first (the data plane's in-desc flag bits)");

  struct sock *s = calloc(1, sizeof *s);
  if (!s) return throwErr(env, "open: out of memory");
  s->fd = -1;
  s->tunFd = -1;
  memcpy(s->ifname, ifname, IFNAMSIZ);
  s->vlan = (uint16_t)vlan;
  s->wholeOn = vnetHdr && whole;
  s->lastTaken = 1;
  vlanTagBytes(s->vlanTag, (uint16_t)vlan);
  char msg[320];
  int rc;
  struct setupCtx c = { s, ifname, blockSize, blockCount, fanout, (int)bypass, (int)vnetHdr, msg, sizeof msg };
  if (netns[0]) {
    rc = inNetns(netns, ifname, setupThunk, &c, msg, sizeof msg);
  } else {
    rc = setupThunk(&c);
  }
  if (rc < 0) {
    freeSock(s);
    return throwErr(env, msg);
  }
  pthread_mutex_lock(&handlesLock);
  int h = -1;
  for (int i = 0; i < MAX_HANDLES; i++)
    if (!handles[i]) { handles[i] = s; h = i; s->id = (uint16_t)i; break; }
  pthread_mutex_unlock(&handlesLock);
  if (h < 0) {
    freeSock(s);
    return throwErr(env, "open: too many open interfaces");
  }
  return num(env, h);
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t h;
  if (argc < 1 || !getU32(env, argv[0], &h) || h >= MAX_HANDLES) return throwErr(env, "close: bad handle");
  pthread_mutex_lock(&handlesLock);
  struct sock *s = handles[h];
  handles[h] = NULL;
  pthread_mutex_unlock(&handlesLock);
  if (s) freeSock(s);
  return NULL;
}

// ---- receive --------------------------------------------------------------

static inline struct tpacket2_hdr *frameAt(struct sock *s, unsigned i) {
  return (struct tpacket2_hdr *)(s->ring + (size_t)i * RING_FRAME);
}

/** A free BIG_MAX buffer: the one given back last, else a new one (NULL: out of memory). */
static uint8_t *takeBuf(struct sock *s) {
  if (s->nFree) return s->freeBuf[--s->nFree];
  if (s->nBufs == NBUF) return NULL; // cannot happen: at most NBUF are held at once (see NBUF)
  uint8_t *b = malloc(BIG_MAX);
  if (b) s->bufs[s->nBufs++] = b;
  return b;
}

/** Gives b back (on top of the stack: the next takeBuf's, while its lines are in this core's cache). */
static void giveBuf(struct sock *s, uint8_t *b) {
  if (b) s->freeBuf[s->nFree++] = b;
}

/*
 * Writes one frame into slot i and its in-desc: hdr[0..hl) then data[0..dl)
 * (a GSO segment: the super-frame's headers, then its payload piece), the
 * 802.1Q tag re-inserted after the MACs when `tag` is on, and with flags set,
 * the virtio-net header in the 10 bytes before the frame, its csum_start moved
 * by the tag. Returns the frame's offset in its slot.
 */
static uint32_t putFrame(struct sock *s, uint8_t *mem, uint32_t slotBase, uint32_t slotSize, uint32_t headroom,
                     uint32_t inDescBase, uint32_t i, uint32_t port, const struct virtio_net_hdr *vh,
                     const struct tagInfo *tag, const uint8_t *hdr, uint32_t hl, const uint8_t *data, uint32_t dl,
                     uint16_t flags) {
  uint8_t *slot = mem + slotBase + (size_t)i * slotSize;
  uint32_t off = headroom, total = hl + dl;
  if (tag->on) {
    off = headroom - 4;
    uint8_t *d = slot + off;
    memcpy(d, hdr, 12);
    d[12] = tag->tpid >> 8; d[13] = tag->tpid & 0xff;
    d[14] = tag->tci >> 8; d[15] = tag->tci & 0xff;
    memcpy(d + 16, hdr + 12, hl - 12);
    total += 4;
  } else {
    memcpy(slot + off, hdr, hl);
  }
  if (dl) memcpy(slot + off + total - dl, data, dl);
  if (flags) {
    struct virtio_net_hdr *c = (struct virtio_net_hdr *)(slot + off - sizeof *c);
    memcpy(c, vh, sizeof *c);
    if (tag->on) c->csum_start += 4;
  }
  putInDesc(mem, inDescBase, i, off, total, port, flags);
  s->rxFrames++;
  s->rxBytes += total;
  return off;
}

/**
 * Segments *segK.. of the super-frame c into slots first + *n.. (up to max):
 * the headers, then one gso_size piece each. Returns 1 when the last is
 * written, 0 when the batch filled first (*segK says where to go on).
 */
static int cutRun(struct sock *s, const struct cut *c, uint32_t *segK, uint8_t *mem, uint32_t slotBase, uint32_t slotSize,
                  uint32_t headroom, uint32_t inDescBase, uint32_t first, uint32_t max, uint32_t port, uint32_t *n) {
  while (*segK < c->segs && *n < max) {
    uint32_t k = *segK, from = c->hl + k * c->gso;
    uint32_t plen = c->len - from < c->gso ? c->len - from : c->gso;
    uint16_t fl = fVnet | fGsoSeg | (uint16_t)(k << fSegShift) | (k + 1 == c->segs ? fGsoLast : 0);
    putFrame(s, mem, slotBase, slotSize, headroom, inDescBase, first + *n, port, &c->vh, &c->tag, c->frame, c->hl, c->frame + from, plen, fl);
    (*n)++;
    (*segK)++;
    s->gsoSegments++;
  }
  return *segK >= c->segs;
}

#define PEND(s, g) (&(s)->pend[(g) % PEND_MAX])

static napi_value Recv(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 10) return throwErr(env, "recv: expects 10 arguments");
  struct sock *s = getSock(env, argv[0]);
  if (!s) return throwErr(env, "recv: bad handle");
  struct recvArgs a;
  if (!readRecvArgs(env, argv, &a, 4)) return NULL; // room for a tag re-inserted in front
  uint8_t *mem = a.mem;
  uint32_t slotBase = a.slotBase, slotSize = a.slotSize, headroom = a.headroom, inDescBase = a.inDescBase, first = a.first, max = a.max, port = a.port;
  int32_t timeout = a.timeout;
  uint32_t room = slotSize - headroom;
  uint32_t n = 0;
  // The super-frames the last call offered whole: sent by send() since, or
  // cut now, in ring order, before anything newer (their segments first).
  for (uint32_t g = s->firstGen; g != s->nextGen; g++)
    if (PEND(s, g)->state == W_PENDING) PEND(s, g)->state = W_CUT; // too late for send() now
  while (s->firstGen != s->nextGen) {
    struct pend *p = PEND(s, s->firstGen);
    if (p->state == W_TAKEN) {
      s->gsoWholeSent++;
      s->lastTaken = 1;
    } else {
      s->lastTaken = 0;
      if (!cutRun(s, &p->cut, &p->segK, mem, slotBase, slotSize, headroom, inDescBase, first, max, port, &n)) return num(env, n);
      s->gsoFrames++;
    }
    giveBuf(s, p->cut.buf); // sent (send() read it since the last call) or cut: free
    p->cut.buf = NULL;
    s->firstGen++;
  }
  while (n < max) {
    // A super-frame whose cut filled the last batch: the rest of its segments
    // (its ring frame is long handed back: it is in cut.buf).
    if (s->segK) {
      if (!cutRun(s, &s->cut, &s->segK, mem, slotBase, slotSize, headroom, inDescBase, first, max, port, &n)) break; // the batch is full
      s->segK = 0;
      s->gsoFrames++;
      giveBuf(s, s->cut.buf);
      s->cut.buf = NULL;
      continue;
    }
    // PEND_MAX super-frames offered whole in this batch: the rest waits for the
    // next one (cutting the next super-frame instead would send it before them)
    if (s->nextGen - s->firstGen >= PEND_MAX) break;
    struct tpacket2_hdr *h = frameAt(s, s->head);
    uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
    if (!(st & TP_STATUS_USER)) {
      if (n > 0 || timeout <= 0) break;
      struct pollfd pf = { .fd = s->fd, .events = POLLIN | POLLERR };
      int r = poll(&pf, 1, timeout);
      timeout = 0; // wait at most once
      if (r <= 0) break;
      continue;
    }
    uint8_t *frame = (uint8_t *)h + h->tp_mac;
    uint32_t len = h->tp_snaplen;
    // tpacket_rcv puts the virtio-net header right before the MAC header
    const struct virtio_net_hdr *vh = s->vnet ? (const struct virtio_net_hdr *)(frame - sizeof *vh) : NULL;
    struct virtio_net_hdr vhCopy;
    int fromBig = 0, lost = 0;
    uint8_t *inBuf = NULL; // the buffer a long frame was received into: given back below unless kept
    if (st & TP_STATUS_COPY) {
      // Longer than a ring frame: the whole frame is the next skb on the
      // socket's queue (see the top of this file), with its own virtio-net header.
      uint8_t *buf = inBuf = takeBuf(s);
      struct iovec iov[2] = { { &vhCopy, sizeof vhCopy }, { buf, BIG_MAX } };
      struct msghdr m = { .msg_iov = s->vnet ? iov : iov + 1, .msg_iovlen = s->vnet ? 2 : 1 };
      uint8_t none[1];
      if (!buf) { iov[1] = (struct iovec){ none, sizeof none }; } // out of memory: the skb is still taken off the queue (lost), which stays in step with the ring
      ssize_t r = recvmsg(s->fd, &m, MSG_DONTWAIT | MSG_TRUNC);
      uint32_t vl = s->vnet ? sizeof vhCopy : 0;
      if (!buf || r < (ssize_t)vl || (uint32_t)r - vl > BIG_MAX || (uint32_t)r - vl != h->tp_len) {
        lost = 1; // no memory, longer than BIG_MAX, or not the frame this ring frame stands for (cannot happen: a guard)
      } else {
        frame = buf;
        len = (uint32_t)r - vl;
        vh = s->vnet ? &vhCopy : NULL;
        fromBig = 1;
        s->copied++;
      }
    } else if (h->tp_len != h->tp_snaplen) {
      lost = 1; // truncated and not queued: the copy queue was over its receive buffer
    }
    // veth and most NICs move the 802.1Q tag into the packet's metadata
    // (PACKET_AUXDATA / tp_vlan_tci); the data plane needs it back in the
    // frame (IEEE 802.1Q: TPID at offset 12, TCI at 14), so write the frame 4
    // bytes earlier in the slot with the tag in front of the EtherType.
    struct tagInfo tag = { 0, 0, 0 };
    tag.on = (st & TP_STATUS_VLAN_VALID) != 0 && len >= 12; // a runt: left to the data plane's `truncated`
    if (tag.on) {
      tag.tpid = (st & TP_STATUS_VLAN_TPID_VALID) && h->tp_vlan_tpid ? h->tp_vlan_tpid : ETH_P_8021Q;
      tag.tci = h->tp_vlan_tci;
    }
    // A tagged uplink (underlay.vlan, INTERFACES.md): the data plane sees the
    // underlay untagged, as on a VLAN device. The tag is taken off here, from
    // the metadata or, when the NIC left it in the frame, by moving the MACs
    // 4 bytes up (in the ring frame, ours until handed back, or our buffer),
    // the virtio-net header's offsets following; any other frame is not ours.
    int notOurVlan = 0;
    struct virtio_net_hdr vhMoved;
    if (s->vlan && !lost) {
      if (tag.on) {
        notOurVlan = tag.tpid != ETH_P_8021Q || (tag.tci & 0xfff) != s->vlan;
        tag.on = 0;
      } else if (len >= 18 && frame[12] == 0x81 && frame[13] == 0x00 && (((frame[14] << 8) | frame[15]) & 0xfff) == s->vlan) {
        memmove(frame + 4, frame, 12);
        frame += 4;
        len -= 4;
        if (vh) {
          vhMoved = *vh;
          if (vhMoved.csum_start >= 4) vhMoved.csum_start -= 4;
          vh = &vhMoved;
        }
      } else {
        notOurVlan = 1;
      }
    }
    uint8_t gsoType = vh ? vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN : VIRTIO_NET_HDR_GSO_NONE;
    int stop = 0;
    if (lost) {
      s->oversize++;
    } else if (notOurVlan) {
      s->vlanOther++;
    } else if (gsoType != VIRTIO_NET_HDR_GSO_NONE) {
      // Cut the super-frame: headers (to the end of the L4 header) + gso_size
      // bytes of payload per slot.
      uint32_t cs = vh->csum_start, gso = vh->gso_size, l4h = 0;
      if (gsoType == VIRTIO_NET_HDR_GSO_UDP_L4) l4h = 8;
      else if (cs + 20 <= len) l4h = (uint32_t)(frame[cs + 12] >> 4) * 4;
      uint32_t hl = cs + l4h;
      uint32_t segs = gso && len > hl ? (len - hl + gso - 1) / gso : 0;
      // It outlives its ring frame (handed back below): kept in a buffer of
      // its own (the one it was received into, if it came from the copy queue).
      int offer = 0;
      uint8_t *keep = NULL, *owner = NULL;
      if (!(l4h < 8 || hl > len || segs == 0 || hl + gso + 4 > room || segs > (0xffffu >> fSegShift) + 1)) {
        // Offered whole: every TCP super-frame while they go whole, one in 64
        // while they do not (a VM's to a remote without a tunnel GSO output):
        // an untaken one's rest is only cut by the next call, after the frames
        // read behind it, which reorders its flow, and its batch is cut short.
        offer = s->wholeOn && segs >= 2 && (gsoType == VIRTIO_NET_HDR_GSO_TCPV4 || gsoType == VIRTIO_NET_HDR_GSO_TCPV6) &&
                headroom >= 4 + sizeof *vh + IW_SIZE && (s->lastTaken || (++s->probe & 63) == 0);
        if (fromBig) {
          keep = frame; // in inBuf (4 bytes in when a tag was taken off), kept
          owner = inBuf;
          inBuf = NULL;
        } else if ((owner = takeBuf(s))) {
          keep = memcpy(owner, frame, len);
        }
      }
      if (!keep) {
        // Not cut: one slot with as much as fits, marked as a segment that is
        // not the last, so the data plane drops it as bad-gso-size (or
        // bad-vnet-header) under its own name.
        s->gsoBad++;
        putFrame(s, mem, slotBase, slotSize, headroom, inDescBase, first + n, port, vh, &tag,
                 frame, len > room - 4 ? room - 4 : len, NULL, 0, fVnet | fGsoSeg);
        n++;
      } else {
        struct cut c = { keep, len, hl, gso, segs, *vh, tag, owner };
        if (offer) {
          // Segment 0 alone, the rest kept for the data plane's verdict
          // (assembly/pipeline/gso.ts): taken whole by send(), or cut by the
          // next call.
          uint32_t off = putFrame(s, mem, slotBase, slotSize, headroom, inDescBase, first + n, port, vh, &tag, keep, hl,
                                  keep + hl, gso, fVnet | fGsoSeg | IF_GSO_WHOLE);
          uint8_t *rec = mem + slotBase + (size_t)(first + n) * slotSize + off - sizeof *vh - IW_SIZE;
          uint32_t g = s->nextGen++;
          *PEND(s, g) = (struct pend){ c, 1, g, W_PENDING };
          uint32_t token = ((uint32_t)s->id << 16) | (g & 0xffff), rest = len - hl - gso;
          memcpy(rec + IW_TOKEN, &token, 4);
          memcpy(rec + IW_REST, &rest, 4);
          s->gsoSegments++;
          n++;
          if (!s->lastTaken) stop = 1; // a probe: alone in its batch, its flow kept in order
        } else {
          s->cut = c;
          s->segK = 0;
          if (cutRun(s, &s->cut, &s->segK, mem, slotBase, slotSize, headroom, inDescBase, first, max, port, &n)) {
            s->segK = 0;
            s->gsoFrames++;
            giveBuf(s, s->cut.buf);
            s->cut.buf = NULL;
          } else {
            stop = 1; // the batch is full: the rest next call (segK > 0)
          }
        }
      }
    } else if (len + (tag.on ? 4 : 0) > room) {
      s->oversize++;
    } else {
      uint16_t fl = 0;
      // A frame from a local stack with checksum offload carries a partial
      // L4 checksum: the data plane completes it (offload.ts).
      if (st & TP_STATUS_CSUMNOTREADY) s->csumNotReady++;
      if (vh && (vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)) fl = fVnet;
      putFrame(s, mem, slotBase, slotSize, headroom, inDescBase, first + n, port, vh, &tag, frame, len, NULL, 0, fl);
      n++;
    }
    giveBuf(s, inBuf); // a long frame copied to its slot, dropped, or lost: its buffer is free again
    // Everything of this ring frame is in a slot or a buffer of ours: back to the kernel.
    __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    s->head = s->head + 1 == s->frameNr ? 0 : s->head + 1;
    if (stop) break;
  }
  return num(env, n);
}

// ---- send -----------------------------------------------------------------

// Per-thread scratch (each worker thread has its own), grown on demand.
static __thread struct mmsghdr *tMsgs;
static __thread struct iovec *tIov;
static __thread uint32_t *tOrder;
static __thread uint32_t tCap;
static __thread struct virtio_net_hdr *tVnet; // a whole super-frame's virtio-net header, per message
static __thread struct pend **tFrom;          // a whole super-frame's entry in its receiving socket, per output (NULL: none)
static __thread const uint8_t **tTun;         // an encap super-frame's GSO record (for the tap), per message (NULL: sendmmsg)
static const struct virtio_net_hdr zeroVnet;
#define IOV_PER_MSG 6 // virtio-net header, header piece (3 with a tag), data piece, a whole super-frame's rest

static int grow(uint32_t n) {
  if (n <= tCap) return 1;
  struct mmsghdr *m = realloc(tMsgs, n * sizeof *m);
  if (!m) return 0;
  tMsgs = m;
  struct iovec *v = realloc(tIov, IOV_PER_MSG * n * sizeof *v);
  if (!v) return 0;
  tIov = v;
  struct virtio_net_hdr *vn = realloc(tVnet, n * sizeof *vn);
  if (!vn) return 0;
  tVnet = vn;
  struct pend **fr = realloc(tFrom, n * sizeof *fr);
  if (!fr) return 0;
  tFrom = fr;
  const uint8_t **tt = realloc(tTun, n * sizeof *tt);
  if (!tt) return 0;
  tTun = tt;
  uint32_t *o = realloc(tOrder, n * sizeof *o);
  if (!o) return 0;
  tOrder = o;
  tCap = n;
  return 1;
}

/**
 * Message k, an encap super-frame (the data plane's OGK_TUNNEL output: outer
 * headers in its header piece, the inner IP header on in its data piece, the
 * rest of the payload in the receiving ring), through the socket's tunnel TX
 * tap as ONE frame with a UDP-tunnel GSO request (tuntx_core.h). The GSO
 * record's offsets are the frame's in the data plane; an underlay.vlan tag
 * among the pieces moves them by 4. Counted as the uplink counts one GSO skb
 * (one frame of its whole length). Returns 1 if sent.
 */
static uint32_t sendTunnel(struct sock *s, uint32_t k) {
  const uint8_t *rec = tTun[k];
  struct virtio_net_hdr vh;
  memcpy(&vh, rec + OG_VNET, sizeof vh);
  unsigned add = s->vlan ? 4 : 0;
  const struct msghdr *m = &tMsgs[k].msg_hdr;
  int st = ttSendPieces(s->tunFd, s->tunCsum, s->tunMtu, vh.flags, vh.gso_type, le16toh(vh.gso_size), getU16(rec + OG_OUTER_TH) + add,
                        getU16(rec + OG_INNER_NH) + add, le16toh(vh.csum_start) + add, m->msg_iov, (int)m->msg_iovlen);
  if (st != TT_OK) {
    s->txErrors++;
    s->gsoTunnelErrors++;
    s->tunLastError = st;
    return 0;
  }
  s->txFrames++;
  s->txBytes += tOrder[k];
  s->gsoTunnelSent++;
  return 1;
}

static napi_value Send(napi_env env, napi_callback_info info) {
  static __thread struct sendArgs a; // per worker thread: too big for the stack of every call
  if (!readSendArgs(env, info, &a)) return NULL;
  uint32_t nports = a.nports, count = a.count, hdrSlot = a.hdrSlot;
  uint8_t *mem = a.mem;
  struct sock *byPort[IO_MAX_BY_PORT];
  uint32_t counts[IO_MAX_BY_PORT + 1];
  for (uint32_t p = 0; p < nports; p++) byPort[p] = a.handle[p] >= 0 && a.handle[p] < MAX_HANDLES ? handles[a.handle[p]] : NULL;
  if (count == 0) return num(env, 0);
  if (!grow(count)) return throwErr(env, "send: out of memory");

  // A whole super-frame's output (OF_GSO, assembly/pipeline/gso.ts) is
  // claimed first: the super-frame its token names must be the one at the
  // head of its receiving ring, still waiting (recv); else it is not sent at
  // all (stale: once promoted, its segment 0 is not a frame of its own).
  int anyGso = 0;
  for (uint32_t j = 0; j < count; j++) {
    const uint8_t *d = mem + a.outDescBase + (size_t)j * OUT_DESC;
    tFrom[j] = NULL;
    if (!(getU16(d + O_PORT) & OF_GSO)) continue;
    anyGso = 1;
    uint16_t p = getU16(d + O_PORT) & ~OF_GSO;
    // The record sits at the end of a HDR_SLOT-byte header slot: with any
    // other slot size it is not there, and reading it would run past the
    // caller's header area, so nothing is claimed (the frame is not sent).
    if (hdrSlot != HDR_SLOT) continue;
    const uint8_t *rec = mem + a.hdrBase + (size_t)j * hdrSlot + HDR_SLOT - OG_SIZE;
    uint32_t token;
    memcpy(&token, rec + OG_TOKEN, 4);
    struct sock *from = handles[(token >> 16) % MAX_HANDLES];
    struct pend *pe = from ? PEND(from, token & 0xffff) : NULL;
    if (!pe || pe->state != W_PENDING || (pe->gen & 0xffff) != (token & 0xffff)) {
      if (from) from->gsoWholeStale++;
      continue;
    }
    // taken either way: sent whole, or lost when its port cannot ask for
    // segmentation (a TSO record on a socket without vnet header, a tunnel
    // GSO record on one without a tunnel TX tap): TCP resends
    pe->state = W_TAKEN;
    struct sock *out = p < nports ? byPort[p] : NULL;
    if (!out || (rec[OG_KIND] == OGK_TUNNEL ? out->tunFd < 0 : !out->vnet || rec[OG_KIND] != OGK_TSO)) { from->gsoWholeErrors++; continue; }
    tFrom[j] = pe;
  }
#define SKIPPED(j, o) (anyGso && (o) && !tFrom[j])
  // Counting sort of the outputs by port, so each socket gets one sendmmsg()
  // for all of its frames, in their original order.
  memset(counts, 0, (nports + 1) * sizeof counts[0]);
  for (uint32_t j = 0; j < count; j++) {
    uint16_t raw = getU16(mem + a.outDescBase + (size_t)j * OUT_DESC + O_PORT), p = raw & ~OF_GSO;
    if (p < nports && byPort[p] && !SKIPPED(j, raw & OF_GSO)) counts[p + 1]++;
  }
  for (uint32_t p = 0; p < nports; p++) counts[p + 1] += counts[p];
  for (uint32_t j = 0; j < count; j++) {
    struct outDesc o = outDescAt(mem, a.outDescBase, j);
    if (o.port >= nports || !byPort[o.port] || SKIPPED(j, o.gso)) continue; // the caller sees them as count - sent
    uint32_t k = counts[o.port]++;
    if (!outDescOk(&a, &o)) return throwErr(env, "send: an out-desc points outside the memory");
    // A socket with PACKET_VNET_HDR takes a virtio-net header in front of
    // every frame it sends (packet_snd): an all-zero one, no offload asked;
    // a whole super-frame's asks for TSO, and its payload after segment 0 is
    // still in the receiving socket's ring (recv).
    struct iovec *v = tIov + IOV_PER_MSG * k;
    struct sock *so = byPort[o.port];
    struct pend *from = o.gso ? tFrom[j] : NULL;
    uint8_t *hp = mem + a.hdrBase + (size_t)j * hdrSlot;
    // an encap super-frame goes to the tap (its own virtio-net header, ttSendPieces), not to sendmmsg
    int tun = from && hp[HDR_SLOT - OG_SIZE + OG_KIND] == OGK_TUNNEL;
    tTun[k] = tun ? hp + HDR_SLOT - OG_SIZE : NULL;
    if (from && !tun) {
      memcpy(&tVnet[k], hp + HDR_SLOT - OG_SIZE + OG_VNET, sizeof tVnet[k]);
      if (so->vlan) { tVnet[k].csum_start += 4; tVnet[k].hdr_len += 4; } // the tag goes in after the MACs
    }
    int n = 0;
    if (so->vnet && !tun) v[n++] = (struct iovec){ from ? (void *)&tVnet[k] : (void *)&zeroVnet, sizeof zeroVnet };
    // underlay.vlan: the tag goes in after the MACs, as a VLAN device would put it
    n += framePieces(v + n, hp, o.hdrLen, mem + o.data, o.dataLen, so->vlan ? so->vlanTag : NULL, &tOrder[k]);
    if (from) {
      const struct cut *c = &from->cut;
      uint32_t at = c->hl + c->gso;
      v[n++] = (struct iovec){ (void *)(c->frame + at), c->len - at };
      tOrder[k] += c->len - at;
    }
    struct msghdr *m = &tMsgs[k].msg_hdr;
    memset(m, 0, sizeof *m);
    m->msg_iov = v;
    m->msg_iovlen = n;
  }
  // counts[p] is now the end of port p's run; its start is the previous end.
  uint32_t sent = 0, start = 0;
  for (uint32_t p = 0; p < nports; p++) {
    uint32_t end = counts[p];
    struct sock *s = byPort[p];
    uint32_t i = start;
    while (s && i < end) {
      if (tTun[i]) { sent += sendTunnel(s, i); i++; continue; }
      // the run up to the next encap super-frame (sent in its place, in order)
      uint32_t chunk = 0;
      while (i + chunk < end && chunk < 1024 && !tTun[i + chunk]) chunk++;
      int r = sendmmsg(s->fd, tMsgs + i, chunk, 0);
      if (r < 0) {
        if (errno == EINTR) continue;
        // The first frame of the run failed (link down, too big, no buffers):
        // count it and go on with the next.
        s->txErrors++;
        i++;
        continue;
      }
      for (int q = 0; q < r; q++) s->txBytes += tOrder[i + q];
      s->txFrames += (uint64_t)r;
      sent += (uint32_t)r;
      i += (uint32_t)r;
    }
    start = end;
  }
  return num(env, sent);
}

// ---- poll / wake / stats --------------------------------------------------

static int sockFd(napi_env env, napi_value v) {
  struct sock *s = getSock(env, v);
  return s ? s->fd : -1;
}

// A socket error (ENETDOWN when the link goes down, ENODEV when it is
// deleted) keeps POLLERR raised until read; clear it so an idle worker
// sleeps instead of spinning. Frames resume by themselves when the link is up.
static void clearErr(int fd, short revents) {
  if (!(revents & POLLERR)) return;
  int soerr;
  socklen_t l = sizeof soerr;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
}

static napi_value Poll(napi_env env, napi_callback_info info) { return pollHandles(env, info, POLLIN | POLLERR, sockFd, clearErr); }

/*
 * tunnelTx(handle, fd, udpCsum, mtu): encap super-frames this socket sends
 * go whole through the tuntx tap `fd` (host/io/tuntx.ts TunTx.fd, opened on
 * this socket's interface; closed by its owner after this socket or after
 * tunnelTx(handle, -1)); udpCsum: the tap took TUN_F_UDP_TUNNEL_GSO_CSUM;
 * mtu: the uplink's (TunTx stats). The host sets GSO_CAP_TUNNEL on the port
 * only after this, so the data plane promotes nothing the socket cannot send.
 */
static napi_value TunnelTx(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct sock *s = argc >= 4 ? getSock(env, argv[0]) : NULL;
  int32_t fd;
  uint32_t csum, mtu;
  if (!s) return throwErr(env, "tunnelTx: bad handle");
  if (!getI32(env, argv[1], &fd) || fd < -1 || !getU32(env, argv[2], &csum) || !getU32(env, argv[3], &mtu))
    return throwErr(env, "tunnelTx: expects (handle, fd or -1, udpCsum 0/1, mtu)");
  s->tunFd = fd;
  s->tunCsum = csum != 0;
  s->tunMtu = mtu;
  return NULL;
}

static napi_value DescFlags(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t v[4];
  for (int i = 0; i < 4; i++)
    if (argc < 4 || !getU32(env, argv[i], &v[i])) return throwErr(env, "descFlags: expects 4 non-negative integers");
  if (!v[0] || v[0] > 0xffff || v[1] > 0xffff || v[2] > 0xffff || v[3] > 15) return throwErr(env, "descFlags: flag bits out of range");
  // IF_GSO_WHOLE (abi.h) is this addon's own: no other flag, nor a segment index, may use its bit
  if (((v[0] | v[1] | v[2]) & IF_GSO_WHOLE) || (1u << v[3]) <= IF_GSO_WHOLE) return throwErr(env, "descFlags: the flag bits overlap IF_GSO_WHOLE (abi.h)");
  fVnet = (uint16_t)v[0]; fGsoSeg = (uint16_t)v[1]; fGsoLast = (uint16_t)v[2]; fSegShift = v[3];
  return NULL;
}

static napi_value EventFd(napi_env env, napi_callback_info info) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return throwErr(env, strerror(errno));
  return num(env, fd);
}

static napi_value Wake(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || !getI32(env, argv[0], &fd) || fd < 0) return throwErr(env, "wake: bad fd");
  uint64_t one = 1;
  if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN) return throwErr(env, strerror(errno));
  return NULL;
}

static napi_value CloseFd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  if (argc < 1 || !getI32(env, argv[0], &fd) || fd < 0) return throwErr(env, "closeFd: bad fd");
  close(fd);
  return NULL;
}

static napi_value Stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct sock *s = argc ? getSock(env, argv[0]) : NULL;
  if (!s) return throwErr(env, "stats: bad handle");
  // PACKET_STATISTICS resets on every read, so accumulate.
  struct tpacket_stats_v3 st = { 0 }; // a V2 socket fills its first two fields (struct tpacket_stats)
  socklen_t l = sizeof st;
  if (getsockopt(s->fd, SOL_PACKET, PACKET_STATISTICS, &st, &l) == 0) {
    s->kernelDrops += st.tp_drops;
    s->kernelFreezes += st.tp_freeze_q_cnt;
  }
  napi_value o;
  napi_create_object(env, &o);
  setNum(env, o, "rxFrames", (double)s->rxFrames);
  setNum(env, o, "rxBytes", (double)s->rxBytes);
  setNum(env, o, "txFrames", (double)s->txFrames);
  setNum(env, o, "txBytes", (double)s->txBytes);
  setNum(env, o, "txErrors", (double)s->txErrors);
  setNum(env, o, "oversize", (double)s->oversize);
  setNum(env, o, "csumNotReady", (double)s->csumNotReady);
  setNum(env, o, "gsoFrames", (double)s->gsoFrames);
  setNum(env, o, "gsoSegments", (double)s->gsoSegments);
  setNum(env, o, "gsoBad", (double)s->gsoBad);
  setNum(env, o, "gsoWholeSent", (double)s->gsoWholeSent);
  setNum(env, o, "gsoWholeStale", (double)s->gsoWholeStale);
  setNum(env, o, "gsoWholeErrors", (double)s->gsoWholeErrors);
  setNum(env, o, "kernelDrops", (double)s->kernelDrops);
  setNum(env, o, "kernelFreezes", (double)s->kernelFreezes);
  setNum(env, o, "copied", (double)s->copied);
  setNum(env, o, "bigBuffers", (double)s->nBufs);
  setNum(env, o, "vlanOther", (double)s->vlanOther);
  setNum(env, o, "gsoTunnelSent", (double)s->gsoTunnelSent);
  setNum(env, o, "gsoTunnelErrors", (double)s->gsoTunnelErrors);
  if (s->gsoTunnelErrors) { // why the last one was refused (tuntx_core.h's reason names, as TunTx's stats)
    napi_value r;
    napi_create_string_utf8(env, s->tunLastError > 0 && s->tunLastError < TT_E_N ? ttReasonName[s->tunLastError] : "unknown", NAPI_AUTO_LENGTH, &r);
    napi_set_named_property(env, o, "gsoTunnelLastError", r);
  }
  return o;
}

/*
 * adviseHuge(buffer, offset, length): madvise(MADV_HUGEPAGE) on the 2 MiB
 * pages wholly inside buffer[offset, offset + length), so that the data
 * plane's tables, faulted in later, are backed by transparent huge pages:
 * a lookup in a 32 MiB table then misses the TLB far less often (the reason
 * VPP and DPDK keep their tables in huge pages). Returns the bytes advised
 * (0 when the range holds no whole 2 MiB page); throws with errno's text.
 * Pages already faulted in stay small until khugepaged collapses them.
 */
static napi_value AdviseHuge(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data;
  size_t len;
  double off, n;
  if (argc < 3 || napi_get_arraybuffer_info(env, argv[0], &data, &len) != napi_ok)
    return throwErr(env, "adviseHuge: expected (ArrayBuffer, offset, length)");
  if (napi_get_value_double(env, argv[1], &off) != napi_ok || napi_get_value_double(env, argv[2], &n) != napi_ok ||
      off < 0 || n < 0 || off + n > (double)len)
    return throwErr(env, "adviseHuge: offset/length outside the buffer");
  const uintptr_t huge = 2u << 20;
  uintptr_t a = ((uintptr_t)data + (uintptr_t)off + huge - 1) & ~(huge - 1);
  uintptr_t b = ((uintptr_t)data + (uintptr_t)off + (uintptr_t)n) & ~(huge - 1);
  if (b <= a) return num(env, 0);
  if (madvise((void *)a, b - a, MADV_HUGEPAGE) != 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "adviseHuge: madvise(MADV_HUGEPAGE): %s", strerror(errno));
    return throwErr(env, msg);
  }
  return num(env, (double)(b - a));
}

/*
 * prefault(buffer, ranges): faults in ranges of buffer (a Float64Array of
 * [offset, length] pairs) on a thread of its own, with
 * madvise(MADV_POPULATE_WRITE) (Linux 5.14), the last range first and each
 * from its end down, 2 MiB at a time; returns a handle for prefaultJoin.
 * Issue 15: restoring a table image writes ~120 MB of fresh memory, and each
 * of its pages costs a fault (2 MiB pages zeroed by the guest; on a VM whose
 * free memory the host took back, every 4 KiB of it faulted in on the host as
 * well: 2-4 ms per MiB here). The caller expands the image from the bottom up
 * while this thread faults from the top down, on the other core; whichever
 * reaches a page first faults it, the other finds it present. The buffer
 * must stay mapped until prefaultJoin returns.
 */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
struct prefault { pthread_t th; uintptr_t base; size_t n; double *ranges; double bytes; int err; };

static void *prefaultRun(void *arg) {
  struct prefault *p = arg;
  const size_t step = 2u << 20, pg = 4096;
  for (size_t i = p->n; i-- > 0;) {
    uintptr_t a = (p->base + (uintptr_t)p->ranges[2 * i]) & ~(uintptr_t)(pg - 1);
    uintptr_t e = (p->base + (uintptr_t)p->ranges[2 * i] + (uintptr_t)p->ranges[2 * i + 1] + pg - 1) & ~(uintptr_t)(pg - 1);
    while (e > a) {
      uintptr_t s = e - a > step ? ((e - step) & ~(uintptr_t)(step - 1)) : a;
      if (s < a) s = a;
      if (madvise((void *)s, e - s, MADV_POPULATE_WRITE) != 0) { p->err = errno; return NULL; }
      p->bytes += (double)(e - s);
      e = s;
    }
  }
  return NULL;
}

/* The handle's finalizer: a thread never joined is joined first (the memory it writes must outlive it). */
static void prefaultFree(napi_env env, void *d, void *hint) {
  struct prefault *p = d;
  if (p->ranges) { pthread_join(p->th, NULL); free(p->ranges); }
  free(p);
}

static napi_value Prefault(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data, *rs;
  size_t len, rn;
  napi_typedarray_type t;
  if (argc < 2 || napi_get_arraybuffer_info(env, argv[0], &data, &len) != napi_ok ||
      napi_get_typedarray_info(env, argv[1], &t, &rn, &rs, NULL, NULL) != napi_ok || t != napi_float64_array || rn % 2)
    return throwErr(env, "prefault: expected (ArrayBuffer, Float64Array of [offset, length] pairs)");
  for (size_t i = 0; i < rn; i += 2) {
    double o = ((double *)rs)[i], n = ((double *)rs)[i + 1];
    if (!(o >= 0 && n >= 0 && o + n <= (double)len)) return throwErr(env, "prefault: a range outside the buffer");
  }
  struct prefault *p = calloc(1, sizeof *p);
  if (!p || !(p->ranges = malloc((rn ? rn : 1) * sizeof(double)))) { free(p); return throwErr(env, "prefault: out of memory"); }
  memcpy(p->ranges, rs, rn * sizeof(double));
  p->base = (uintptr_t)data;
  p->n = rn / 2;
  int rc = pthread_create(&p->th, NULL, prefaultRun, p);
  if (rc != 0) {
    free(p->ranges);
    free(p);
    char msg[96];
    snprintf(msg, sizeof msg, "prefault: pthread_create: %s", strerror(rc));
    return throwErr(env, msg);
  }
  napi_value h;
  napi_create_external(env, p, prefaultFree, NULL, &h);
  return h;
}

/* prefaultJoin(handle): waits for the thread; the bytes it faulted in, or throws with errno's text (once per handle). */
static napi_value PrefaultJoin(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct prefault *p = NULL;
  if (argc < 1 || napi_get_value_external(env, argv[0], (void **)&p) != napi_ok || !p || !p->ranges)
    return throwErr(env, "prefaultJoin: expected a handle from prefault, not joined yet");
  pthread_join(p->th, NULL);
  free(p->ranges);
  p->ranges = NULL; // joined: a second call throws (the struct is kept: the handle may still be referenced)
  if (p->err) {
    char msg[128];
    snprintf(msg, sizeof msg, "prefault: madvise(MADV_POPULATE_WRITE): %s", strerror(p->err));
    return throwErr(env, msg);
  }
  return num(env, p->bytes);
}

/*
 * schedSelf(policy, nice, sliceUs, rtPrio) -> "" or why not: the calling
 * thread's scheduling (a packet I/O worker's, issue 11 session 8). A worker
 * sleeping in poll() is woken by the kernel per frame; on a busy machine it
 * then waited behind other runnable tasks for up to a tick or more (p99 of a
 * ping 12 ms at load 9 on 2 cores, bench/latency), while the kernel's own
 * datapath runs in softirq and never waits. policy 0: SCHED_OTHER at `nice`
 * with an EEVDF slice of sliceUs (Linux 6.12+: a shorter slice preempts on
 * wake-up sooner; no more CPU share); policy 1: SCHED_FIFO at rtPrio (a
 * flood can then hold its core; the kernel's RT throttling leaves others 5 %).
 */
struct schedAttr { uint32_t size, policy; uint64_t flags; int32_t nice; uint32_t prio; uint64_t runtime, deadline, period; };
static napi_value SchedSelf(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t policy, slice, prio;
  int32_t nice;
  if (argc < 4 || !getU32(env, argv[0], &policy) || !getI32(env, argv[1], &nice) || !getU32(env, argv[2], &slice) || !getU32(env, argv[3], &prio) ||
      policy > 1 || nice < -20 || nice > 19 || (policy == 1 && (prio < 1 || prio > 99)))
    return throwErr(env, "schedSelf: expects (policy 0|1, nice -20..19, sliceUs, rtPrio 1..99 with policy 1)");
  struct schedAttr a;
  memset(&a, 0, sizeof a);
  a.size = sizeof a;
  a.policy = policy == 1 ? SCHED_FIFO : SCHED_OTHER;
  a.nice = nice;
  a.prio = policy == 1 ? prio : 0;
  a.runtime = (uint64_t)slice * 1000;
  char msg[160] = "";
  if (syscall(SYS_sched_setattr, 0, &a, 0) != 0) {
    int e = errno;
    // before Linux 6.12 a fair task's runtime is refused: the nice value alone
    if (policy == 0 && a.runtime && e == EINVAL) {
      a.runtime = 0;
      if (syscall(SYS_sched_setattr, 0, &a, 0) == 0) snprintf(msg, sizeof msg, "no EEVDF slice on this kernel (nice %d only)", nice);
      else snprintf(msg, sizeof msg, "sched_setattr: %s", strerror(errno));
    } else {
      snprintf(msg, sizeof msg, "sched_setattr: %s", strerror(e));
    }
  }
  napi_value r;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &r);
  return r;
}

NAPI_MODULE_INIT() {
  // The hash of the abi.h this was compiled with: the host refuses an addon
  // built for another data plane layout (host/io/addon.ts).
  napi_value abiHash;
  napi_create_uint32(env, NVEDGE_ABI_HASH, &abiHash);
  napi_property_descriptor d[] = {
    { "abiHash", NULL, NULL, NULL, NULL, abiHash, napi_enumerable, NULL },
    { "open", NULL, Open, NULL, NULL, NULL, napi_enumerable, NULL },
    { "close", NULL, Close, NULL, NULL, NULL, napi_enumerable, NULL },
    { "recv", NULL, Recv, NULL, NULL, NULL, napi_enumerable, NULL },
    { "send", NULL, Send, NULL, NULL, NULL, napi_enumerable, NULL },
    { "poll", NULL, Poll, NULL, NULL, NULL, napi_enumerable, NULL },
    { "descFlags", NULL, DescFlags, NULL, NULL, NULL, napi_enumerable, NULL },
    { "eventfd", NULL, EventFd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "wake", NULL, Wake, NULL, NULL, NULL, napi_enumerable, NULL },
    { "closeFd", NULL, CloseFd, NULL, NULL, NULL, napi_enumerable, NULL },
    { "stats", NULL, Stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "tunnelTx", NULL, TunnelTx, NULL, NULL, NULL, napi_enumerable, NULL },
    { "adviseHuge", NULL, AdviseHuge, NULL, NULL, NULL, napi_enumerable, NULL },
    { "prefault", NULL, Prefault, NULL, NULL, NULL, napi_enumerable, NULL },
    { "prefaultJoin", NULL, PrefaultJoin, NULL, NULL, NULL, napi_enumerable, NULL },
    { "schedSelf", NULL, SchedSelf, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}
