// The VM side of the tunnel-TX lab (tests and bench/tunnel-tx.ts, not the
// data path): a tap whose owner reads what the kernel sends through it, with
// the checksum and TSO offloads on, so a TCP sender behind it hands over
// whole super-frames and partial checksums as a VM's virtio-net would
// (each frame preceded by its 12-byte virtio_net_hdr_v1). The lab
// encapsulates them and sends them through tuntx.c's tap.
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/if_tun.h>

#define LAB_VNET 12 // sizeof(struct virtio_net_hdr_v1)

static napi_value labErr(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/** labOpen(name, netnsPath | "") -> fd of a new tap with IFF_VNET_HDR (12 bytes) and TUN_F_CSUM|TSO4|TSO6 (non-blocking). */
napi_value TunTxLabOpen(napi_env env, napi_callback_info info) {
  size_t argc = 2, l;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[IFNAMSIZ + 1], netns[256] = "", msg[320];
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &l) != napi_ok || l == 0 || l >= IFNAMSIZ ||
      napi_get_value_string_utf8(env, argv[1], netns, sizeof netns, &l) != napi_ok)
    return labErr(env, "tuntx labOpen: expects (tapName, netnsPath)");
  int self = -1, target = -1;
  if (netns[0]) {
    self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    target = open(netns, O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
      snprintf(msg, sizeof msg, "tuntx labOpen: network namespace %s: %s", netns, strerror(errno));
      if (self >= 0) close(self);
      if (target >= 0) close(target);
      return labErr(env, msg);
    }
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC), sz = LAB_VNET;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, IFNAMSIZ);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  msg[0] = 0;
  if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0 ||
      ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN) < 0) {
    snprintf(msg, sizeof msg, "tuntx labOpen: tap %s: %s", name, strerror(errno));
    if (fd >= 0) close(fd);
  }
  if (netns[0]) {
    if (setns(self, CLONE_NEWNET) < 0) abort(); // this thread would stay in the wrong namespace
    close(self);
    close(target);
  }
  if (msg[0]) return labErr(env, msg);
  napi_value v;
  napi_create_int32(env, fd, &v);
  return v;
}

/**
 * labRead(fd, mem, slotBase, slotSize, max, lenBase, timeoutMs) -> frames:
 * waits up to timeoutMs for the tap, then reads up to max frames, frame i
 * (its virtio-net header first) into slot i, its length (u32 LE) at lenBase + 4i.
 */
napi_value TunTxLabRead(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd, timeout;
  uint32_t slotBase, slotSize, max, lenBase;
  void *memp;
  size_t memLen;
  if (argc < 7 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_arraybuffer_info(env, argv[1], &memp, &memLen) != napi_ok ||
      napi_get_value_uint32(env, argv[2], &slotBase) != napi_ok || napi_get_value_uint32(env, argv[3], &slotSize) != napi_ok ||
      napi_get_value_uint32(env, argv[4], &max) != napi_ok || napi_get_value_uint32(env, argv[5], &lenBase) != napi_ok ||
      napi_get_value_int32(env, argv[6], &timeout) != napi_ok)
    return labErr(env, "tuntx labRead: expects (fd, ArrayBuffer, slotBase, slotSize, max, lenBase, timeoutMs)");
  if ((uint64_t)slotBase + (uint64_t)slotSize * max > memLen || (uint64_t)lenBase + 4ull * max > memLen) return labErr(env, "tuntx labRead: slots outside the memory");
  uint8_t *mem = memp;
  struct pollfd p = { .fd = fd, .events = POLLIN };
  uint32_t n = 0;
  if (poll(&p, 1, timeout) > 0) {
    for (; n < max; n++) {
      ssize_t r = read(fd, mem + slotBase + (size_t)n * slotSize, slotSize);
      if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) break;
        char msg[128];
        snprintf(msg, sizeof msg, "tuntx labRead: %s", strerror(errno));
        return labErr(env, msg);
      }
      uint8_t *l = mem + lenBase + 4 * n;
      l[0] = r; l[1] = r >> 8; l[2] = r >> 16; l[3] = r >> 24;
    }
  }
  napi_value v;
  napi_create_uint32(env, n, &v);
  return v;
}

/** labClose(fd): the tap goes with it. */
napi_value TunTxLabClose(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 3) return labErr(env, "tuntx labClose: bad fd");
  close(fd);
  return NULL;
}
