// The N-API helpers and the network-namespace switch that every native addon
// of nvedge uses: the packet I/O addons (io_common.h: afpacket.c,
// afxdp/afxdp.c) and the tunnel TX tap (tuntx.c). One copy (review 6: tuntx.c
// had copied them from io_common.h). Header-only (static functions); needs
// nothing of the memory ABI (abi.h), so tuntx.c includes it alone.
#ifndef NVEDGE_NAPI_COMMON_H
#define NVEDGE_NAPI_COMMON_H

#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- N-API helpers ----------------------------------------------------------

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

// ---- open(): the interface's network namespace ---------------------------------------

/**
 * Runs setup(ctx) with this thread in the network namespace at `path` (a
 * socket belongs to the namespace it was created in), then switches back.
 * Returns setup's result, or -1 with msg filled when the switch fails.
 */
static int inNetns(const char *path, const char *ifname, int (*setup)(void *), void *ctx, char *msg, size_t n) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), target = open(path, O_RDONLY | O_CLOEXEC);
  if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
    snprintf(msg, n, "interface %s: network namespace %s: %s", ifname, path, strerror(errno));
    if (self >= 0) close(self);
    if (target >= 0) close(target);
    return -1;
  }
  int rc = setup(ctx);
  int back = setns(self, CLONE_NEWNET);
  close(self);
  close(target);
  if (back < 0) abort(); // this thread would run in the wrong namespace from now on
  return rc;
}

#endif
