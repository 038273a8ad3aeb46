// AF_XDP packet I/O for `nvedge run --io afxdp` (issue 11): the same calls
// as the AF_PACKET addon (open/close/recv/send/poll/stats; the worker keeps
// using that addon's eventfd/wake), over an XDP socket per interface and
// queue. The XDP program (xsk_redirect.bpf.c) is loaded with libbpf, put on
// the interface once (native XDP, else generic/SKB mode) and sends each
// frame of a queue that has a socket into it; it is taken off when the
// interface's last socket closes. No bpffs, no libxdp dispatcher. What it
// shares with afpacket.c (argument checks against abi.h, descriptors, the
// netns switch, poll) is in ../io_common.h.
//
// underlay.vlan (open's `vlan`): the XDP program sends only frames of that
// VLAN to the socket (its cfg map); recv takes the tag off in its copy into
// the slot, send puts it back after the MACs in the UMEM gather. A tag the
// driver left in the packet's metadata is written back into the frame by the
// program's device-bound variant (xsk_redirect.bpf.c).
//
// Copies per frame: receive, the kernel copies into the UMEM (copy mode) or
// the NIC writes there (zero-copy), and recv copies it into the data plane's
// slot (WebAssembly memory): 1 or 2. Send: the header slot and the frame's
// data piece are gathered into one UMEM frame (1 copy), which the kernel
// copies on in copy mode. The UMEM is this addon's own memory, not the
// WebAssembly memory: sharing that would need its slots aligned to UMEM
// chunks and frames never moved by the data plane.
//
// Offloads: an XDP socket has no virtio-net header, and XDP has no way to
// read an skb's CHECKSUM_PARTIAL state. A veth with an XDP program has its
// peer's GSO turned off by the kernel (veth_xdp_set), so no super-frames
// arrive; but a local sender's checksum offload still leaves frames whose L4
// checksum field holds only the pseudo-header sum (what Linux and virtio's
// NEEDS_CSUM leave there for the NIC: udp4_hwcsum, tcp_v4_send_check). recv
// recognises exactly that (the field equals the folded pseudo-header sum of
// the frame's own addresses, protocol and length) and hands the frame over as
// AF_PACKET's PACKET_VNET_HDR would: a virtio-net header with NEEDS_CSUM, so
// the data plane completes it (assembly/pipeline/offload.ts). A full checksum
// that happens to equal that sum is completed to the same value (the sum over
// the data is then zero), so the rule changes no valid frame.
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "abi.h"       // the memory ABI (generated from assembly/ by scripts/abi.mjs), from host/io/native (binding.gyp)
#include "io_common.h" // shared with afpacket.c: N-API helpers, recv/send arguments, descriptors, netns, poll

#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9 /* Linux 6.17 uapi; older headers lack it */
#endif

#define MAX_HANDLES 256
#define FRAME 2048u
// Receive: the UMEM frames in the fill ring, and the fill and RX rings'
// size. The socket's buffer, as AF_PACKET's ring is (16 MiB, some 100,000
// small frames): a frame the kernel has for the socket while every receive
// frame waits in the RX ring is dropped (XDP_STATISTICS rx_dropped, "fill
// ring empty"). 2,048 (4 MiB) held 1-2 ms at 1-2 Mpps, less than one of the
// race generator's catch-up bursts (2 ms of frames at once) or a scheduler
// delay of the worker, and almost every frame the race lost at moderate
// rates was lost so (issue 11); 16,384 hold 8 ms at 2 Mpps, for 32 MiB of
// UMEM per socket (pinned, like every UMEM).
#define RX_FRAMES 16384u
#define TX_FRAMES 2048u        // send: the UMEM frames free for TX, and the TX and completion rings' size

struct ring {
  uint32_t *producer, *consumer, *flags;
  void *desc;
  uint32_t mask, size;
  void *map;
  size_t mapLen;
};

// one XDP program per interface (and namespace), shared by that interface's sockets
struct prog {
  int used;
  unsigned ifindex;
  uint64_t netnsIno;
  int refs;
  uint32_t flags;              // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE: how the kernel attached it
  struct bpf_object *obj;
  struct bpf_link *link;       // the attachment: destroyed (or the process gone), the program is off the interface
  int mapFd;
  int rxCpuFd;                 // the program's rxcpu map: per queue, the CPU its frames last arrived on, plus one
  int cfgFd;                   // the program's cfg map: [0] underlay.vlan's VLAN id, [1] frames of other VLANs passed to the kernel
  int vlanMeta;                // the variant that restores a VLAN tag the driver left in the metadata runs
};

struct xsk {
  int fd;
  char ifname[IFNAMSIZ];
  uint32_t queue;
  uint8_t *umem;
  size_t umemLen;
  struct ring fill, comp, rx, tx;
  uint32_t txFree[TX_FRAMES];
  uint32_t txFreeN;
  int zeroCopy;
  struct prog *prog;
  uint64_t rxFrames, rxBytes, txFrames, txBytes, txErrors, oversize, txFull, csumNotReady, vlanOther;
  uint16_t vlan;               // underlay.vlan: frames carry this 802.1Q tag on the wire, none in the data plane (0: off)
  uint8_t vlanTag[4];          // the tag sent
};

static struct xsk *handles[MAX_HANDLES];
static uint16_t fVnet;                 // the data plane's in-desc flag bit for "virtio-net header in front" (descFlags)
static struct prog progs[MAX_HANDLES];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct xsk *getXsk(napi_env env, napi_value v) {
  int32_t h;
  if (!getI32(env, v, &h) || h < 0 || h >= MAX_HANDLES) return NULL;
  return handles[h];
}

static int mapRing(int fd, struct ring *r, uint32_t size, size_t off_prod, size_t off_cons, size_t off_desc, size_t off_flags,
                   size_t descSize, uint64_t pgoff) {
  r->mapLen = off_desc + size * descSize;
  r->map = mmap(NULL, r->mapLen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
  if (r->map == MAP_FAILED) { r->map = NULL; return -1; }
  r->producer = (uint32_t *)((uint8_t *)r->map + off_prod);
  r->consumer = (uint32_t *)((uint8_t *)r->map + off_cons);
  r->flags = (uint32_t *)((uint8_t *)r->map + off_flags);
  r->desc = (uint8_t *)r->map + off_desc;
  r->mask = size - 1;
  r->size = size;
  return 0;
}

static void freeXsk(struct xsk *s) {
  struct ring *rs[] = { &s->fill, &s->comp, &s->rx, &s->tx };
  for (int i = 0; i < 4; i++) if (rs[i]->map) munmap(rs[i]->map, rs[i]->mapLen);
  if (s->fd >= 0) close(s->fd);
  if (s->umem) munmap(s->umem, s->umemLen);
  free(s);
}

#ifndef BPF_F_XDP_DEV_BOUND_ONLY
#define BPF_F_XDP_DEV_BOUND_ONLY (1U << 6) /* Linux 6.3 uapi; older headers lack it */
#endif

/*
 * Loads and attaches one variant of the XDP program (xsk_redirect.bpf.c):
 * `meta`, nvedge_xsk_meta bound to the device (it reads a VLAN tag the
 * driver left in the metadata), else the plain nvedge_xsk. 0, or -1 with msg.
 */
static int loadProg(const char *objPath, unsigned ifindex, int meta, struct bpf_object **objOut, struct bpf_link **linkOut, char *msg, size_t n) {
  struct bpf_object *obj = bpf_object__open_file(objPath, NULL);
  if (!obj || libbpf_get_error(obj)) { snprintf(msg, n, "XDP program %s: %s", objPath, strerror(errno)); return -1; }
  struct bpf_program *plain = bpf_object__find_program_by_name(obj, "nvedge_xsk"), *withMeta = bpf_object__find_program_by_name(obj, "nvedge_xsk_meta");
  struct bpf_program *prog = meta ? withMeta : plain;
  if (!prog) { snprintf(msg, n, "XDP program %s: no %s", objPath, meta ? "nvedge_xsk_meta" : "nvedge_xsk"); bpf_object__close(obj); return -1; }
  if (plain) bpf_program__set_autoload(plain, !meta);
  if (withMeta) bpf_program__set_autoload(withMeta, meta);
  if (meta) {
    // the metadata kfuncs are for programs bound to their device (Linux 6.3+)
    bpf_program__set_ifindex(prog, ifindex);
    bpf_program__set_flags(prog, bpf_program__flags(prog) | BPF_F_XDP_DEV_BOUND_ONLY);
  }
  if (bpf_object__load(obj)) { snprintf(msg, n, "XDP program %s: load: %s", objPath, strerror(errno)); bpf_object__close(obj); return -1; }
  // A BPF link, not a netlink attach: it is undone when its fd closes, by
  // close() from any thread and namespace, or by the kernel if the process
  // dies, so no program is left behind on the interface. The kernel picks
  // native XDP where the driver has it (veth does), else generic (SKB) mode,
  // where a device-bound program is refused (the plain one is used then).
  struct bpf_link *link = bpf_program__attach_xdp(prog, (int)ifindex);
  if (!link || libbpf_get_error(link)) {
    snprintf(msg, n, "attaching the XDP program: %s (another XDP program on the interface?)", strerror(errno));
    bpf_object__close(obj);
    return -1;
  }
  *objOut = obj;
  *linkOut = link;
  return 0;
}

/* The interface's XDP program, loaded and attached on first use (lock held). */
static struct prog *progFor(unsigned ifindex, uint64_t ino, const char *objPath, char *msg, size_t n) {
  for (int i = 0; i < MAX_HANDLES; i++)
    if (progs[i].used && progs[i].ifindex == ifindex && progs[i].netnsIno == ino) { progs[i].refs++; return &progs[i]; }
  struct prog *p = NULL;
  for (int i = 0; i < MAX_HANDLES; i++) if (!progs[i].used) { p = &progs[i]; break; }
  if (!p) { snprintf(msg, n, "too many interfaces"); return NULL; }
  struct bpf_object *obj;
  struct bpf_link *link;
  // the variant that reads the VLAN metadata where the kernel and driver allow it, else the plain one
  int meta = loadProg(objPath, ifindex, 1, &obj, &link, msg, n) == 0;
  if (!meta && loadProg(objPath, ifindex, 0, &obj, &link, msg, n) < 0) return NULL;
  int mapFd = bpf_object__find_map_fd_by_name(obj, "xsks"), cfgFd = bpf_object__find_map_fd_by_name(obj, "cfg"),
      rxCpuFd = bpf_object__find_map_fd_by_name(obj, "rxcpu");
  if (mapFd < 0 || cfgFd < 0 || rxCpuFd < 0) {
    snprintf(msg, n, "XDP program %s: no xsks / cfg / rxcpu map", objPath);
    bpf_link__destroy(link);
    bpf_object__close(obj);
    return NULL;
  }
  __u32 id = 0;
  uint32_t flags = bpf_xdp_query_id((int)ifindex, XDP_FLAGS_DRV_MODE, &id) == 0 && id ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
  *p = (struct prog){ .used = 1, .ifindex = ifindex, .netnsIno = ino, .refs = 1, .flags = flags, .obj = obj, .link = link,
                      .mapFd = mapFd, .rxCpuFd = rxCpuFd, .cfgFd = cfgFd, .vlanMeta = meta };
  return p;
}

static void progRelease(struct prog *p) {
  if (!p || --p->refs > 0) return;
  bpf_link__destroy(p->link);
  bpf_object__close(p->obj);
  p->used = 0;
}

static int setup(struct xsk *s, const char *ifname, uint32_t queue, const char *objPath, int wantZc, char *msg, size_t n) {
  unsigned ifindex = if_nametoindex(ifname);
  if (!ifindex) { snprintf(msg, n, "interface %s does not exist", ifname); return -1; }
  s->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (s->fd < 0) { snprintf(msg, n, "interface %s: socket(AF_XDP): %s", ifname, strerror(errno)); return -1; }
  s->umemLen = (size_t)(RX_FRAMES + TX_FRAMES) * FRAME;
  s->umem = mmap(NULL, s->umemLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (s->umem == MAP_FAILED) { s->umem = NULL; snprintf(msg, n, "UMEM: %s", strerror(errno)); return -1; }
  struct xdp_umem_reg reg = { .addr = (uint64_t)(uintptr_t)s->umem, .len = s->umemLen, .chunk_size = FRAME, .headroom = 0 };
  if (setsockopt(s->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg)) { snprintf(msg, n, "XDP_UMEM_REG: %s", strerror(errno)); return -1; }
  uint32_t rs = RX_FRAMES, ts = TX_FRAMES;
  if (setsockopt(s->fd, SOL_XDP, XDP_UMEM_FILL_RING, &rs, sizeof rs) || setsockopt(s->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &ts, sizeof ts) ||
      setsockopt(s->fd, SOL_XDP, XDP_RX_RING, &rs, sizeof rs) || setsockopt(s->fd, SOL_XDP, XDP_TX_RING, &ts, sizeof ts)) {
    snprintf(msg, n, "XDP rings: %s", strerror(errno));
    return -1;
  }
  struct xdp_mmap_offsets off;
  socklen_t ol = sizeof off;
  if (getsockopt(s->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &ol)) { snprintf(msg, n, "XDP_MMAP_OFFSETS: %s", strerror(errno)); return -1; }
  if (mapRing(s->fd, &s->fill, RX_FRAMES, off.fr.producer, off.fr.consumer, off.fr.desc, off.fr.flags, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING) ||
      mapRing(s->fd, &s->comp, TX_FRAMES, off.cr.producer, off.cr.consumer, off.cr.desc, off.cr.flags, sizeof(uint64_t), XDP_UMEM_PGOFF_COMPLETION_RING) ||
      mapRing(s->fd, &s->rx, RX_FRAMES, off.rx.producer, off.rx.consumer, off.rx.desc, off.rx.flags, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING) ||
      mapRing(s->fd, &s->tx, TX_FRAMES, off.tx.producer, off.tx.consumer, off.tx.desc, off.tx.flags, sizeof(struct xdp_desc), XDP_PGOFF_TX_RING)) {
    snprintf(msg, n, "mapping the XDP rings: %s", strerror(errno));
    return -1;
  }
  // the receive frames of the UMEM go to the fill ring; the send frames are free
  uint64_t *fd = s->fill.desc;
  for (uint32_t i = 0; i < RX_FRAMES; i++) fd[i & s->fill.mask] = (uint64_t)i * FRAME;
  __atomic_store_n(s->fill.producer, RX_FRAMES, __ATOMIC_RELEASE);
  for (uint32_t i = 0; i < TX_FRAMES; i++) s->txFree[i] = RX_FRAMES + i;
  s->txFreeN = TX_FRAMES;
  struct sockaddr_xdp sa = { .sxdp_family = AF_XDP, .sxdp_ifindex = ifindex, .sxdp_queue_id = queue };
  // zero-copy where the driver supports it, else copy mode (veth: copy)
  int bound = -1;
  if (wantZc) {
    sa.sxdp_flags = XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP;
    bound = bind(s->fd, (struct sockaddr *)&sa, sizeof sa);
    s->zeroCopy = bound == 0;
  }
  if (bound) {
    sa.sxdp_flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
    bound = bind(s->fd, (struct sockaddr *)&sa, sizeof sa);
  }
  if (bound) { snprintf(msg, n, "interface %s queue %u: bind(AF_XDP): %s", ifname, queue, strerror(errno)); return -1; }
  // Copy mode sends from sendto() (xsk_generic_xmit), 32 frames a call by
  // default; Linux 6.17's XDP_MAX_TX_SKB_BUDGET lets one call take a whole
  // batch (MAX_BATCH, abi.h), so a batch costs one kick rather than eight.
  // Older kernels refuse the option (ENOPROTOOPT): kick() loops as before.
  if (!s->zeroCopy) {
    uint32_t budget = MAX_BATCH;
    (void)setsockopt(s->fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof budget);
  }
  uint64_t ino = 0;
  char nsPath[64];
  snprintf(nsPath, sizeof nsPath, "/proc/thread-self/ns/net");
  char link[64];
  ssize_t ll = readlink(nsPath, link, sizeof link - 1);
  if (ll > 0) { link[ll] = 0; sscanf(link, "net:[%lu]", (unsigned long *)&ino); }
  pthread_mutex_lock(&lock);
  s->prog = progFor(ifindex, ino, objPath, msg, n);
  if (s->prog) {
    int key = (int)queue, val = s->fd;
    // the interface's VLAN (underlay.vlan) for its XDP program: set by every socket of it, all alike
    uint32_t ck = 0;
    uint64_t vid = s->vlan;
    if (bpf_map_update_elem(s->prog->cfgFd, &ck, &vid, BPF_ANY)) {
      snprintf(msg, n, "setting the XDP program's VLAN: %s", strerror(errno));
      progRelease(s->prog);
      s->prog = NULL;
    } else if (bpf_map_update_elem(s->prog->mapFd, &key, &val, BPF_ANY)) {
      snprintf(msg, n, "adding the socket to the XDP map: %s", strerror(errno));
      progRelease(s->prog);
      s->prog = NULL;
    }
  }
  pthread_mutex_unlock(&lock);
  return s->prog ? 0 : -1;
}

struct setupCtx { struct xsk *s; const char *ifname, *obj; uint32_t queue; int zc; char *msg; size_t n; };
static int setupThunk(void *p) {
  struct setupCtx *c = p;
  return setup(c->s, c->ifname, c->queue, c->obj, c->zc, c->msg, c->n);
}

static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ifname[IFNAMSIZ + 1], netns[256] = "", obj[512] = "";
  size_t len = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], ifname, sizeof ifname, &len) != napi_ok || len == 0 || len >= IFNAMSIZ)
    return throwErr(env, "open: interface name must be 1 to 15 characters, then an options object");
  uint32_t queue = 0, zc = 1, vlan = 0;
  if (!optStr(env, argv[1], "netns", netns, sizeof netns) || !optStr(env, argv[1], "program", obj, sizeof obj) ||
      !optU32(env, argv[1], "queue", &queue) || !optU32(env, argv[1], "zeroCopy", &zc) || !optU32(env, argv[1], "vlan", &vlan))
    return throwErr(env, "open: netns and program are strings, queue, zeroCopy and vlan non-negative integers");
  if (!obj[0]) return throwErr(env, "open: program (the XDP object file) is required");
  if (vlan > 4094) return throwErr(env, "open: vlan must be 0 (none) or a VLAN id 1..4094");
  struct xsk *s = calloc(1, sizeof *s);
  if (!s) return throwErr(env, "open: out of memory");
  s->fd = -1;
  s->queue = queue;
  s->vlan = (uint16_t)vlan;
  vlanTagBytes(s->vlanTag, (uint16_t)vlan);
  memcpy(s->ifname, ifname, IFNAMSIZ);
  char msg[400];
  struct setupCtx c = { s, ifname, obj, queue, (int)zc, msg, sizeof msg };
  int rc = netns[0] ? inNetns(netns, ifname, setupThunk, &c, msg, sizeof msg) : setupThunk(&c);
  if (rc < 0) {
    freeXsk(s);
    return throwErr(env, msg);
  }
  pthread_mutex_lock(&lock);
  int h = -1;
  for (int i = 0; i < MAX_HANDLES; i++) if (!handles[i]) { handles[i] = s; h = i; break; }
  pthread_mutex_unlock(&lock);
  if (h < 0) { pthread_mutex_lock(&lock); progRelease(s->prog); pthread_mutex_unlock(&lock); freeXsk(s); return throwErr(env, "open: too many sockets"); }
  return num(env, h);
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t h;
  if (argc < 1 || !getI32(env, argv[0], &h) || h < 0 || h >= MAX_HANDLES) return throwErr(env, "close: bad handle");
  pthread_mutex_lock(&lock);
  struct xsk *s = handles[h];
  handles[h] = NULL;
  if (s) progRelease(s->prog);
  pthread_mutex_unlock(&lock);
  if (s) freeXsk(s);
  return NULL;
}

/** "zero-copy" or "copy", and the XDP attach mode ("native" or "generic"). */
static napi_value Mode(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], o, v;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct xsk *s = argc ? getXsk(env, argv[0]) : NULL;
  if (!s) return throwErr(env, "mode: bad handle");
  napi_create_object(env, &o);
  napi_create_string_utf8(env, s->zeroCopy ? "zero-copy" : "copy", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "socket", v);
  napi_create_string_utf8(env, s->prog->flags == XDP_FLAGS_DRV_MODE ? "native" : "generic", NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "xdp", v);
  napi_get_boolean(env, s->prog->vlanMeta != 0, &v);
  napi_set_named_property(env, o, "vlanMeta", v);
  return o;
}

static void kick(struct xsk *s);

/** Frames sent earlier whose UMEM frames the kernel is done with: back to the free list. */
static void reclaim(struct xsk *s) {
  uint32_t cons = *s->comp.consumer, prod = __atomic_load_n(s->comp.producer, __ATOMIC_ACQUIRE);
  uint64_t *d = s->comp.desc;
  while (cons != prod) s->txFree[s->txFreeN++] = (uint32_t)(d[cons++ & s->comp.mask] / FRAME);
  __atomic_store_n(s->comp.consumer, cons, __ATOMIC_RELEASE);
}

/*
 * The frame's L4 checksum was left to offload (see the top): its TCP/UDP
 * checksum field equals the folded pseudo-header sum. IPv4 (not a fragment)
 * or IPv6 without extension headers, after at most one 802.1Q/802.1ad tag.
 * Fills the virtio-net csum_start / csum_offset.
 * depth 0: the frame as received; 1: a tunnel's inner frame (looked into once).
 * A VXLAN (RFC 7348) or Geneve (RFC 8926) frame from a kernel VTEP whose
 * inner TCP/UDP checksum was left to offload carries it partial INSIDE, with
 * an outer UDP checksum that is zero or already counts the inner one as
 * completed (local checksum offload): the inner L4 is the one to complete,
 * as the virtio-net header of AF_PACKET says for the same frame (its
 * csum_start is the inner L4's). Without this the data plane dropped the
 * remote VTEP's TCP as bad-udp-checksum (issue 11, session 8: TCP through
 * --io afxdp in the pair lab never completed).
 */
static int partialL4(const uint8_t *f, uint32_t len, uint16_t *start, uint16_t *offset, int depth) {
  if (len < 14) return 0;
  uint32_t o = 12, et = (uint32_t)(f[12] << 8 | f[13]);
  if ((et == 0x8100 || et == 0x88a8) && len >= 18) { o = 16; et = (uint32_t)(f[16] << 8 | f[17]); }
  o += 2;
  uint32_t l4, l4len, proto, a0, a1; // a0..a1: the source and destination addresses in the IP header
  const uint8_t *ip = f + o;
  if (et == 0x0800) {
    if (len < o + 20) return 0;
    uint32_t ihl = (uint32_t)(ip[0] & 0xf) * 4, tot = (uint32_t)(ip[2] << 8 | ip[3]);
    if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || o + tot > len) return 0;
    if ((ip[6] & 0x3f) || ip[7]) return 0; // a fragment (MF or an offset)
    proto = ip[9];
    l4 = o + ihl;
    l4len = tot - ihl;
    a0 = 12; a1 = 20;
  } else if (et == 0x86dd) {
    if (len < o + 40) return 0;
    proto = ip[6];
    l4 = o + 40;
    l4len = (uint32_t)(ip[4] << 8 | ip[5]);
    if (l4 + l4len > len) return 0;
    a0 = 8; a1 = 40;
  } else {
    return 0;
  }
  uint32_t field;
  if (proto == 17 && l4len >= 8) field = 6;
  else if (proto == 6 && l4len >= 20) field = 16;
  else return 0;
  if (proto == 17 && depth == 0) {
    // a tunnel: the inner Ethernet frame after the VXLAN header (8 bytes) or
    // the Geneve header with its options (8 + 4 x opt len, protocol 0x6558)
    uint32_t dport = (uint32_t)(f[l4 + 2] << 8 | f[l4 + 3]), in = 0;
    if (dport == 4789 && l4len >= 16) in = l4 + 16;
    else if (dport == 6081 && l4len >= 16 && (f[l4 + 10] << 8 | f[l4 + 11]) == 0x6558) in = l4 + 16 + (uint32_t)(f[l4 + 8] & 0x3f) * 4;
    uint16_t is, io;
    if (in && in < l4 + l4len && partialL4(f + in, l4 + l4len - in, &is, &io, 1)) {
      *start = (uint16_t)(in + is);
      *offset = io;
      return 1;
    }
  }
  // A checksum left to offload holds the folded pseudo-header sum, never 0
  // (it counts the protocol); 0 is UDP's "no checksum" (RFC 768), as in the
  // race's frames and in VXLAN's outer header (RFC 7348 §5): no sum to
  // compute (session 11: partialL4 was 2 % of the worker on decap, summing
  // both headers of every VXLAN frame for nothing).
  uint32_t have = (uint32_t)(f[l4 + field] << 8 | f[l4 + field + 1]);
  if (have == 0) return 0;
  uint32_t sum = proto + l4len;
  for (uint32_t i = a0; i < a1; i += 2) sum += (uint32_t)(ip[i] << 8 | ip[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  if (have != sum) return 0;
  *start = (uint16_t)l4;
  *offset = (uint16_t)field;
  return 1;
}

static napi_value DescFlags(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t v;
  if (argc < 1 || !getU32(env, argv[0], &v) || v == 0 || v > 0xffff) return throwErr(env, "descFlags: the vnet flag bit is required");
  fVnet = (uint16_t)v;
  return NULL;
}

static napi_value Recv(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 10) return throwErr(env, "recv: expects 10 arguments");
  struct xsk *s = getXsk(env, argv[0]);
  if (!s) return throwErr(env, "recv: bad handle");
  struct recvArgs a;
  if (!readRecvArgs(env, argv, &a, 0)) return NULL;
  uint8_t *mem = a.mem;
  if (*s->tx.producer != __atomic_load_n(s->tx.consumer, __ATOMIC_ACQUIRE)) kick(s); // frames a previous kick left
  uint32_t cons = *s->rx.consumer, prod = __atomic_load_n(s->rx.producer, __ATOMIC_ACQUIRE);
  if (cons == prod && a.timeout > 0) {
    struct pollfd p = { .fd = s->fd, .events = POLLIN };
    if (poll(&p, 1, a.timeout) > 0) prod = __atomic_load_n(s->rx.producer, __ATOMIC_ACQUIRE);
  }
  struct xdp_desc *rd = s->rx.desc;
  uint64_t *fd = s->fill.desc;
  uint32_t fprod = *s->fill.producer;
  uint32_t room = a.slotSize - a.headroom, n = 0;
  while (cons != prod && n < a.max) {
    struct xdp_desc d = rd[cons++ & s->rx.mask];
    const uint8_t *f = s->umem + d.addr;
    uint32_t len = d.len;
    // underlay.vlan: the XDP program let only frames with our tag through
    // (xsk_redirect.bpf.c); the tag comes off here, in the copy, so the data
    // plane sees the underlay untagged, as on a VLAN device
    int untag = s->vlan && taggedWith(f, len, s->vlan);
    if (s->vlan && !untag) {
      s->vlanOther++;
    } else if (len - (untag ? 4 : 0) > room) {
      s->oversize++;
    } else {
      uint32_t i = a.first + n;
      uint8_t *dst = mem + a.slotBase + (size_t)i * a.slotSize + a.headroom;
      if (untag) {
        memcpy(dst, f, 12);
        memcpy(dst + 12, f + 16, len - 16);
        len -= 4;
      } else {
        memcpy(dst, f, len);
      }
      uint16_t flags = 0, cs, co;
      if (fVnet && a.headroom >= 10 && partialL4(dst, len, &cs, &co, 0)) {
        // struct virtio_net_hdr, little-endian, in the 10 bytes before the frame: NEEDS_CSUM, no GSO
        uint8_t *vh = dst - 10;
        memset(vh, 0, 10);
        vh[0] = 1;
        putU16(vh + 6, cs);
        putU16(vh + 8, co);
        flags = fVnet;
        s->csumNotReady++;
      }
      putInDesc(mem, a.inDescBase, i, a.headroom, len, a.port, flags);
      s->rxFrames++;
      s->rxBytes += len;
      n++;
    }
    // the frame goes straight back to the fill ring (chunk-aligned address)
    fd[fprod++ & s->fill.mask] = d.addr & ~(uint64_t)(FRAME - 1);
  }
  __atomic_store_n(s->rx.consumer, cons, __ATOMIC_RELEASE);
  __atomic_store_n(s->fill.producer, fprod, __ATOMIC_RELEASE);
  // with XDP_USE_NEED_WAKEUP the kernel asks to be woken to take fill entries
  if (__atomic_load_n(s->fill.flags, __ATOMIC_ACQUIRE) & XDP_RING_NEED_WAKEUP) {
    struct pollfd p = { .fd = s->fd, .events = POLLIN };
    poll(&p, 1, 0);
  }
  return num(env, n);
}

/*
 * Makes the kernel send what the TX ring holds. In copy mode one sendto()
 * sends at most a batch (xsk_generic_xmit: 32 frames, or MAX_BATCH where
 * XDP_MAX_TX_SKB_BUDGET was taken) and may answer
 * EAGAIN / EBUSY, so it is repeated until the ring is drained (bounded); what
 * is left is sent by the next kick (every recv and send kicks).
 */
static void kick(struct xsk *s) {
  for (int tries = 0; tries < 256; tries++) {
    if (__atomic_load_n(s->tx.consumer, __ATOMIC_ACQUIRE) == *s->tx.producer) break;
    if (sendto(s->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN && errno != EBUSY && errno != ENOBUFS && errno != EINTR) {
      s->txErrors++;
      break;
    }
  }
  reclaim(s);
}

static napi_value Send(napi_env env, napi_callback_info info) {
  static __thread struct sendArgs a; // per worker thread: too big for the stack of every call
  if (!readSendArgs(env, info, &a)) return NULL;
  uint8_t *mem = a.mem;
  struct xsk *byPort[IO_MAX_BY_PORT];
  for (uint32_t p = 0; p < a.nports; p++) byPort[p] = a.handle[p] >= 0 && a.handle[p] < MAX_HANDLES ? handles[a.handle[p]] : NULL;
  uint32_t sent = 0;
  uint8_t touched[IO_MAX_BY_PORT];
  memset(touched, 0, a.nports);
  for (uint32_t j = 0; j < a.count; j++) {
    struct outDesc o = outDescAt(mem, a.outDescBase, j);
    if (o.port >= a.nports || !byPort[o.port]) continue;
    struct xsk *s = byPort[o.port];
    if (!outDescOk(&a, &o)) return throwErr(env, "send: an out-desc points outside the memory");
    struct iovec v[4];
    uint32_t len;
    int np = framePieces(v, mem + a.hdrBase + (size_t)j * a.hdrSlot, o.hdrLen, mem + o.data, o.dataLen, s->vlan ? s->vlanTag : NULL, &len);
    if (len > FRAME) { s->txErrors++; continue; }
    if (s->txFreeN == 0) reclaim(s);
    uint32_t tprod = *s->tx.producer, tcons = __atomic_load_n(s->tx.consumer, __ATOMIC_ACQUIRE);
    if (s->txFreeN == 0 || tprod - tcons >= s->tx.size) { s->txFull++; continue; }
    uint32_t f = s->txFree[--s->txFreeN];
    // the frame's pieces gathered into its UMEM frame (with underlay.vlan's tag after the MACs)
    uint8_t *dst = s->umem + (size_t)f * FRAME;
    for (int q = 0; q < np; q++) { memcpy(dst, v[q].iov_base, v[q].iov_len); dst += v[q].iov_len; }
    struct xdp_desc *td = s->tx.desc;
    td[tprod & s->tx.mask] = (struct xdp_desc){ .addr = (uint64_t)f * FRAME, .len = len, .options = 0 };
    __atomic_store_n(s->tx.producer, tprod + 1, __ATOMIC_RELEASE);
    s->txFrames++;
    s->txBytes += len;
    sent++;
    touched[o.port] = 1;
  }
  // one kick per socket (copy mode sends from the sendto() call)
  for (uint32_t p = 0; p < a.nports; p++) {
    if (!touched[p]) continue;
    kick(byPort[p]);
  }
  return num(env, sent);
}

static int xskFd(napi_env env, napi_value v) {
  struct xsk *s = getXsk(env, v);
  return s ? s->fd : -1;
}

static napi_value Poll(napi_env env, napi_callback_info info) { return pollHandles(env, info, POLLIN, xskFd, NULL); }

static napi_value Stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct xsk *s = argc ? getXsk(env, argv[0]) : NULL;
  if (!s) return throwErr(env, "stats: bad handle");
  struct xdp_statistics st = { 0 };
  socklen_t l = sizeof st;
  getsockopt(s->fd, SOL_XDP, XDP_STATISTICS, &st, &l);
  napi_value o;
  napi_create_object(env, &o);
  setNum(env, o, "rxFrames", (double)s->rxFrames);
  setNum(env, o, "rxBytes", (double)s->rxBytes);
  setNum(env, o, "txFrames", (double)s->txFrames);
  setNum(env, o, "txBytes", (double)s->txBytes);
  setNum(env, o, "txErrors", (double)s->txErrors);
  setNum(env, o, "oversize", (double)s->oversize);
  setNum(env, o, "txFull", (double)s->txFull);
  // the kernel's own (XDP_STATISTICS): frames dropped for want of a fill
  // entry (rx_dropped, which also counts frames longer than a chunk) or of
  // RX ring room (rx_ring_full). rx_fill_ring_empty_descs and
  // tx_ring_empty_descs count the times the kernel found the fill ring, or
  // the TX ring when asked to send, empty: events, not frames (the first is
  // most of the time the same event as an rx_dropped).
  setNum(env, o, "kernelDrops", (double)(st.rx_dropped + st.rx_ring_full));
  setNum(env, o, "rxDropped", (double)st.rx_dropped);
  setNum(env, o, "rxRingFull", (double)st.rx_ring_full);
  setNum(env, o, "fillRingEmpty", (double)st.rx_fill_ring_empty_descs);
  setNum(env, o, "txRingEmpty", (double)st.tx_ring_empty_descs);
  setNum(env, o, "invalidDescs", (double)(st.rx_invalid_descs + st.tx_invalid_descs));
  setNum(env, o, "csumNotReady", (double)s->csumNotReady);
  // frames of another VLAN (or untagged) on a tagged uplink: the XDP program's count (passed to the kernel) and ours
  uint64_t passed = 0;
  uint32_t ok = 1;
  if (s->vlan && s->prog && s->queue == 0) bpf_map_lookup_elem(s->prog->cfgFd, &ok, &passed); // one count per interface: queue 0's socket reports it
  setNum(env, o, "vlanOther", (double)(s->vlanOther + passed));
  for (const char **k = (const char *[]){ "gsoFrames", "gsoSegments", "gsoBad", "kernelFreezes", NULL }; *k; k++) setNum(env, o, *k, 0);
  return o;
}

/** rxCpu(h): the CPU the socket's queue last received a frame on (its XDP program's rxcpu map), or -1 (none yet). */
static napi_value RxCpu(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  struct xsk *s = argc ? getXsk(env, argv[0]) : NULL;
  if (!s) return throwErr(env, "rxCpu: bad handle");
  uint32_t k = s->queue, v = 0;
  if (bpf_map_lookup_elem(s->prog->rxCpuFd, &k, &v)) v = 0;
  return num(env, (double)v - 1);
}

/*
 * The worker off the CPU its frames arrive on (issue 11, session 10). In copy
 * mode the receive softirq of each socket's queue runs the XDP program and
 * copies every frame into the UMEM (on a NIC: the core of the queue's
 * interrupt; on a veth: the core of whoever sent to it). A worker thread
 * that the scheduler puts on that core shares it with that softirq, which
 * runs first (at every interrupt and every local_bh_enable of the worker's
 * own sendto) and which that core's other networking work joins: in the veth
 * race under load, 60 % of the worker's samples were on the generator's core,
 * most of them that core's softirq (bench/README.md, session 10). The
 * kernel's own datapath is moved off that core by RPS in the same race.
 *
 * avoidRxCpus(handles) -> 1 when the calling thread's CPU set changed, 0 when
 * not, -errno when the kernel refused: the thread's CPUs become those it was
 * allowed the first time it called (its cpuset, taskset) minus every CPU that
 * one of `handles` last received on, unless that leaves none (then nothing
 * changes: one core, or frames arriving on all of them). The set is only
 * narrowed from the first allowed one, so a queue whose frames move to
 * another core frees the old one again.
 */
static __thread cpu_set_t baseCpus, appliedCpus;
static __thread int baseKnown, applied;

static napi_value AvoidRxCpus(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t n;
  if (argc < 1 || !getArray(env, argv[0], &n)) return throwErr(env, "avoidRxCpus: handles must be an array");
  if (!baseKnown) {
    if (sched_getaffinity(0, sizeof baseCpus, &baseCpus)) return num(env, -errno);
    baseKnown = 1;
  }
  cpu_set_t want = baseCpus;
  int seen = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    napi_get_element(env, argv[0], i, &v);
    struct xsk *s = getXsk(env, v);
    if (!s) return throwErr(env, "avoidRxCpus: bad handle");
    uint32_t k = s->queue, c = 0;
    if (bpf_map_lookup_elem(s->prog->rxCpuFd, &k, &c) || c == 0 || c > CPU_SETSIZE) continue;
    CPU_CLR(c - 1, &want);
    seen = 1;
  }
  if (!seen || CPU_COUNT(&want) == 0) return num(env, 0);
  if (applied && CPU_EQUAL(&want, &appliedCpus)) return num(env, 0);
  if (sched_setaffinity(0, sizeof want, &want)) return num(env, -errno);
  appliedCpus = want;
  applied = 1;
  return num(env, 1);
}

/** cpus() -> the calling thread's CPUs (sched_getaffinity). */
static napi_value Cpus(napi_env env, napi_callback_info info) {
  cpu_set_t set;
  napi_value a, v;
  napi_create_array(env, &a);
  if (sched_getaffinity(0, sizeof set, &set)) return throwErr(env, strerror(errno));
  uint32_t k = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) if (CPU_ISSET(c, &set)) { napi_create_uint32(env, (uint32_t)c, &v); napi_set_element(env, a, k++, v); }
  return a;
}

/** setCpus(list): the calling thread's CPUs, and avoidRxCpus starts again from them. */
static napi_value SetCpus(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t n;
  if (argc < 1 || !getArray(env, argv[0], &n)) return throwErr(env, "setCpus: expects an array of CPU numbers");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    uint32_t c;
    napi_get_element(env, argv[0], i, &v);
    if (!getU32(env, v, &c) || c >= CPU_SETSIZE) return throwErr(env, "setCpus: expects an array of CPU numbers");
    CPU_SET(c, &set);
  }
  if (sched_setaffinity(0, sizeof set, &set)) return throwErr(env, strerror(errno));
  baseKnown = applied = 0;
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor d[] = {
    { "open", NULL, Open, NULL, NULL, NULL, napi_enumerable, NULL },
    { "close", NULL, Close, NULL, NULL, NULL, napi_enumerable, NULL },
    { "mode", NULL, Mode, NULL, NULL, NULL, napi_enumerable, NULL },
    { "descFlags", NULL, DescFlags, NULL, NULL, NULL, napi_enumerable, NULL },
    { "recv", NULL, Recv, NULL, NULL, NULL, napi_enumerable, NULL },
    { "send", NULL, Send, NULL, NULL, NULL, napi_enumerable, NULL },
    { "poll", NULL, Poll, NULL, NULL, NULL, napi_enumerable, NULL },
    { "stats", NULL, Stats, NULL, NULL, NULL, napi_enumerable, NULL },
    { "rxCpu", NULL, RxCpu, NULL, NULL, NULL, napi_enumerable, NULL },
    { "avoidRxCpus", NULL, AvoidRxCpus, NULL, NULL, NULL, napi_enumerable, NULL },
    { "cpus", NULL, Cpus, NULL, NULL, NULL, napi_enumerable, NULL },
    { "setCpus", NULL, SetCpus, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}
