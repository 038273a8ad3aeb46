// LD_PRELOAD shim for trafgen in the veth race (bench/race.ts, issue 11):
// every AF_PACKET socket the process opens gets a large send buffer
// (SO_SNDBUFFORCE, NVEDGE_SNDBUF bytes, default 64 MiB). trafgen's TX ring
// flush (sendto on a PACKET_TX_RING) fails with EAGAIN once the socket's
// send buffer is full of frames the receive side has not consumed yet, and
// trafgen then gives up; with RPS on the receiver that happens at once (the
// backlog drains on the other core) and the kernel's figure collapsed to
// 0.01-0.05 Mpps. trafgen has no option for it (its --no-sock-mem only keeps
// it from raising the sysctl defaults), hence the shim.
// Built by the bench: cc -O2 -shared -fPIC -o sndbuf-shim.so sndbuf-shim.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
  static int (*real)(int, int, int);
  if (!real) real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
  int fd = real(domain, type, protocol);
  if (fd >= 0 && domain == AF_PACKET) {
    const char *e = getenv("NVEDGE_SNDBUF");
    int size = e ? atoi(e) : 64 << 20;
    // SO_SNDBUFFORCE needs CAP_NET_ADMIN (the bench runs as root); the kernel doubles the value
    if (size > 0) setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
  }
  return fd;
}
