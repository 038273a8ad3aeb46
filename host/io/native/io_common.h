// What the two packet I/O addons share (issue 11 review: afxdp/afxdp.c had
// copied the run/batch logic of afpacket.c): the N-API argument helpers, the
// checked arguments of recv() and send() (the one wasm<->native memory
// layout, abi.h, generated from assembly/), the in-desc and out-desc
// accessors, a frame's pieces on a tagged uplink (underlay.vlan), the
// poll() with its wake eventfd (the N-API helpers and the network-namespace
// switch of open() are napi_common.h's, shared with tuntx.c).
// Header-only (static functions), included by afpacket.c and afxdp/afxdp.c;
// each addon keeps its own socket table and ring protocol.
#ifndef NVEDGE_IO_COMMON_H
#define NVEDGE_IO_COMMON_H

#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "napi_common.h" // throwErr, num, setNum, inNetns (shared with tuntx.c)
#include "abi.h" // the memory ABI (generated from assembly/ by scripts/abi.mjs)

#define IO_MAX_BY_PORT 1024 // entries of send()'s port -> handle list
#define IO_MAX_POLL 256     // sockets one poll() waits on

// ---- N-API helpers ----------------------------------------------------------

static int getU32(napi_env env, napi_value v, uint32_t *out) { return napi_get_value_uint32(env, v, out) == napi_ok; }
static int getI32(napi_env env, napi_value v, int32_t *out) { return napi_get_value_int32(env, v, out) == napi_ok; }
/** 1 when v is an array, its length in *n; 0 when not (the caller throws its own message). */
static int getArray(napi_env env, napi_value v, uint32_t *n) {
  bool isArr;
  return napi_is_array(env, v, &isArr) == napi_ok && isArr && napi_get_array_length(env, v, n) == napi_ok;
}

/** An optional non-negative integer property: 1 when absent (out untouched) or valid. */
static int optU32(napi_env env, napi_value obj, const char *key, uint32_t *out) {
  bool has = false;
  napi_value v;
  napi_valuetype t;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return 1;
  napi_get_named_property(env, obj, key, &v);
  napi_typeof(env, v, &t);
  if (t == napi_undefined) return 1;
  return getU32(env, v, out);
}

/** An optional string property: 1 when absent (buf = "") or a string. */
static int optStr(napi_env env, napi_value obj, const char *key, char *buf, size_t n) {
  bool has = false;
  napi_value v;
  napi_valuetype t;
  size_t len;
  buf[0] = 0;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok || !has) return 1;
  napi_get_named_property(env, obj, key, &v);
  napi_typeof(env, v, &t);
  if (t == napi_undefined) return 1;
  return t == napi_string && napi_get_value_string_utf8(env, v, buf, n, &len) == napi_ok;
}

// ---- little-endian fields of the descriptors (abi.h) ---------------------------

static inline void putU16(uint8_t *p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
static inline uint16_t getU16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t getU32le(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }

/** Input i's in-desc: where its frame starts in its slot, its length, its port, its flags (IF_*). */
static inline void putInDesc(uint8_t *mem, uint32_t inDescBase, uint32_t i, uint32_t off, uint32_t len, uint32_t port, uint16_t flags) {
  uint8_t *d = mem + inDescBase + (size_t)i * IN_DESC;
  putU16(d + I_OFF, (uint16_t)off);
  putU16(d + I_LEN, (uint16_t)len);
  putU16(d + I_PORT, (uint16_t)port);
  putU16(d + I_FLAGS, flags);
}

struct outDesc { uint16_t port, hdrLen, dataLen; uint32_t data; int gso; };

/**
 * Output j's out-desc: its port, its header piece (in header slot j), its data
 * piece (anywhere in the memory), and whether it is a whole GSO super-frame
 * (OF_GSO in the port field, its record at the end of the header slot).
 */
static inline struct outDesc outDescAt(const uint8_t *mem, uint32_t outDescBase, uint32_t j) {
  const uint8_t *d = mem + outDescBase + (size_t)j * OUT_DESC;
  uint16_t port = getU16(d + O_PORT);
  return (struct outDesc){ (uint16_t)(port & ~OF_GSO), getU16(d + O_HDRLEN), getU16(d + O_DATALEN), getU32le(d + O_DATA), (port & OF_GSO) != 0 };
}

// ---- recv() and send() arguments ---------------------------------------------------

/** recv(handle, mem, slotBase, slotSize, headroom, inDescBase, first, max, port, timeoutMs): the nine after the handle. */
struct recvArgs {
  uint8_t *mem;
  size_t memLen;
  uint32_t slotBase, slotSize, headroom, inDescBase, first, max, port;
  int32_t timeout;
};

/** Reads and checks recv's arguments argv[1..9] (slots and in-descs inside the memory); throws and returns 0 if bad. */
static int readRecvArgs(napi_env env, napi_value *argv, struct recvArgs *a, uint32_t minHeadroom) {
  void *memp;
  if (napi_get_arraybuffer_info(env, argv[1], &memp, &a->memLen) != napi_ok) { throwErr(env, "recv: memory must be an ArrayBuffer"); return 0; }
  a->mem = memp;
  if (!getU32(env, argv[2], &a->slotBase) || !getU32(env, argv[3], &a->slotSize) || !getU32(env, argv[4], &a->headroom) ||
      !getU32(env, argv[5], &a->inDescBase) || !getU32(env, argv[6], &a->first) || !getU32(env, argv[7], &a->max) ||
      !getU32(env, argv[8], &a->port) || !getI32(env, argv[9], &a->timeout)) {
    throwErr(env, "recv: arguments must be non-negative integers");
    return 0;
  }
  if (a->headroom < minHeadroom || a->headroom >= a->slotSize || a->port > 0xffff ||
      (uint64_t)a->slotBase + ((uint64_t)a->first + a->max) * a->slotSize > a->memLen ||
      (uint64_t)a->inDescBase + ((uint64_t)a->first + a->max) * IN_DESC > a->memLen) {
    throwErr(env, "recv: slots or descriptors outside the memory");
    return 0;
  }
  return 1;
}

/** send(handles[], mem, outDescBase, hdrBase, hdrSlot, count): handles[] is indexed by the data plane's port (-1: no socket). */
struct sendArgs {
  uint32_t nports;
  int32_t handle[IO_MAX_BY_PORT];
  uint8_t *mem;
  size_t memLen;
  uint32_t outDescBase, hdrBase, hdrSlot, count;
};

/** Reads and checks send's arguments (out-descs and header slots inside the memory); throws and returns 0 if bad. */
static int readSendArgs(napi_env env, napi_callback_info info, struct sendArgs *a) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 6) { throwErr(env, "send: expects 6 arguments"); return 0; }
  if (!getArray(env, argv[0], &a->nports)) { throwErr(env, "send: handles must be an array"); return 0; }
  if (a->nports > IO_MAX_BY_PORT) { throwErr(env, "send: too many ports"); return 0; }
  for (uint32_t p = 0; p < a->nports; p++) {
    napi_value v;
    napi_get_element(env, argv[0], p, &v);
    if (!getI32(env, v, &a->handle[p])) a->handle[p] = -1;
  }
  void *memp;
  if (napi_get_arraybuffer_info(env, argv[1], &memp, &a->memLen) != napi_ok) { throwErr(env, "send: memory must be an ArrayBuffer"); return 0; }
  a->mem = memp;
  if (!getU32(env, argv[2], &a->outDescBase) || !getU32(env, argv[3], &a->hdrBase) || !getU32(env, argv[4], &a->hdrSlot) ||
      !getU32(env, argv[5], &a->count)) {
    throwErr(env, "send: arguments must be non-negative integers");
    return 0;
  }
  if ((uint64_t)a->outDescBase + (uint64_t)a->count * OUT_DESC > a->memLen || (uint64_t)a->hdrBase + (uint64_t)a->count * a->hdrSlot > a->memLen) {
    throwErr(env, "send: descriptors outside the memory");
    return 0;
  }
  return 1;
}

/** An out-desc's pieces stay inside the memory (else send throws: the data plane's output is corrupt). */
static inline int outDescOk(const struct sendArgs *a, const struct outDesc *o) {
  return o->hdrLen <= a->hdrSlot && (uint64_t)o->data + o->dataLen <= a->memLen;
}

// ---- underlay.vlan: a tagged uplink (INTERFACES.md) --------------------------------

/** The 802.1Q tag a tagged uplink's frames carry on the wire: TPID 0x8100, PCP 0, the VID. */
static inline void vlanTagBytes(uint8_t tag[4], uint16_t vid) {
  tag[0] = 0x81; tag[1] = 0x00; tag[2] = (uint8_t)(vid >> 8); tag[3] = (uint8_t)(vid & 0xff);
}

/**
 * Output j's frame as up to 4 pieces: its header piece, with `tag` (when not
 * NULL) inserted after the MACs as a VLAN device would put it, then its data
 * piece. Returns the number of pieces; *len gets the frame's length.
 */
static inline int framePieces(struct iovec v[4], uint8_t *hp, uint16_t hl, uint8_t *data, uint16_t dl, const uint8_t *tag, uint32_t *len) {
  int n = 0;
  if (tag && hl >= 12) {
    v[n++] = (struct iovec){ hp, 12 };
    v[n++] = (struct iovec){ (void *)tag, 4 };
    v[n++] = (struct iovec){ hp + 12, (size_t)hl - 12 };
    *len = (uint32_t)hl + 4 + dl;
  } else {
    v[n++] = (struct iovec){ hp, hl };
    *len = (uint32_t)hl + dl;
  }
  v[n++] = (struct iovec){ data, dl };
  return n;
}

/** The frame carries, in its bytes, the 802.1Q tag of VLAN `vid` (TPID 0x8100, at offset 12). */
static inline int taggedWith(const uint8_t *f, uint32_t len, uint16_t vid) {
  return len >= 18 && f[12] == 0x81 && f[13] == 0x00 && (((f[14] << 8) | f[15]) & 0xfff) == vid;
}

// ---- poll(handles[], timeoutMs, wakeFd) ------------------------------------------------

/**
 * Waits until a socket of handles[] is readable, the wake eventfd is written
 * (drained here) or the timeout passes; returns how many are ready (0 on a
 * timeout or a signal). `fdOf` gives a handle's fd (-1: bad handle, thrown);
 * `after` (may be NULL) sees each socket's revents.
 */
static napi_value pollHandles(napi_env env, napi_callback_info info, short events, int (*fdOf)(napi_env, napi_value),
                              void (*after)(int fd, short revents)) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  uint32_t n;
  if (argc < 2 || !getArray(env, argv[0], &n)) return throwErr(env, "poll: handles must be an array");
  if (n > IO_MAX_POLL) return throwErr(env, "poll: too many handles");
  struct pollfd p[IO_MAX_POLL + 1];
  uint32_t k = 0;
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    napi_get_element(env, argv[0], i, &v);
    int fd = fdOf(env, v);
    if (fd < 0) return throwErr(env, "poll: bad handle");
    p[k++] = (struct pollfd){ .fd = fd, .events = events };
  }
  int32_t timeout, wakeFd = -1;
  int32_t spinUs = 0;
  if (!getI32(env, argv[1], &timeout)) return throwErr(env, "poll: timeout must be an integer");
  if (argc >= 3) getI32(env, argv[2], &wakeFd);
  if (argc >= 4 && (!getI32(env, argv[3], &spinUs) || spinUs < 0 || spinUs > 1000000))
    return throwErr(env, "poll: spinUs must be a non-negative integer, at most 1000000 (1 s)");
  if (wakeFd >= 0) p[k++] = (struct pollfd){ .fd = wakeFd, .events = POLLIN };
  // spinUs: look (poll with no wait) for up to that long before sleeping, so
  // a frame that comes soon finds the caller awake (worker.ts: after a batch;
  // a sleeping reader costs the kernel a wake-up per frame). Spinning here,
  // not in JS: a JS clock read per turn allocates, and the garbage stops the
  // worker for a scavenge now and then.
  int r = 0;
  if (spinUs > 0) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
      r = poll(p, k, 0);
      if (r != 0) break;
      clock_gettime(CLOCK_MONOTONIC, &t1);
      if ((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) >= (long)spinUs * 1000) break;
    }
  }
  if (r == 0 && (spinUs == 0 || timeout != 0)) r = poll(p, k, timeout);
  if (r < 0 && errno != EINTR) return throwErr(env, strerror(errno));
  if (after) for (uint32_t i = 0; r > 0 && i < n; i++) after(p[i].fd, p[i].revents);
  if (wakeFd >= 0 && (p[k - 1].revents & POLLIN)) {
    uint64_t c;
    if (read(wakeFd, &c, sizeof c) < 0) { /* already drained by a racing read */ }
  }
  return num(env, r < 0 ? 0 : r);
}

#endif
