// What a syscall costs on this machine (issue 15, bench/README.md "Session 13:
// rate15"): the floor under a broker's CPU per MQTT packet. Mosquitto 2.0.11
// makes ~5 syscalls per packet (reads of the fixed header, the remaining
// length and the body; a write; EPOLLOUT added and removed around it); on a
// VM whose syscall entry goes through the hypervisor their cost is most of
// its CPU per attach. Each loop on a Unix socket pair, as Mosquitto's
// listener on its Unix socket uses.
//   gcc -O2 -o /tmp/syscall-floor bench/native/syscall-floor.c && taskset -c 0 /tmp/syscall-floor
#define _GNU_SOURCE
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/epoll.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(void) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return perror("socketpair"), 1;
  int ep = epoll_create1(0);
  struct epoll_event ev = { .events = EPOLLIN, .data.fd = sv[1] };
  epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev);
  char b[4096] = { 0 };
  // N per loop; M for writes left queued (a Unix stream socket charges each write's whole skb to the sender's buffer: ~200 fit)
  const int N = 200000, M = 100;
  double t;
  setvbuf(stdout, NULL, _IONBF, 0);
  t = now(); for (int i = 0; i < N; i++) getppid();
  printf("getppid (entry and exit only)            %6.0f ns\n", (now() - t) / N);
  t = now(); for (int i = 0; i < M; i++) if (write(sv[0], b, 4) != 4) return 1;
  printf("write 4 B, nobody waiting                %6.0f ns\n", (now() - t) / M);
  t = now(); for (int i = 0; i < M; i++) if (read(sv[1], b, 4) != 4) return 1;
  printf("read 4 B                                 %6.0f ns\n", (now() - t) / M);
  t = now(); for (int i = 0; i < N; i++) if (write(sv[0], b, 200) != 200 || read(sv[1], b, 200) != 200) return 1;
  printf("write + read 200 B                       %6.0f ns\n", (now() - t) / N);
  // a PUBACK as Mosquitto reads it: the command byte, the remaining length, the body
  t = now(); for (int i = 0; i < N; i++) if (write(sv[0], b, 4) != 4 || read(sv[1], b, 1) != 1 || read(sv[1], b, 1) != 1 || read(sv[1], b, 2) != 2) return 1;
  printf("write 4 B + reads of 1, 1, 2 B           %6.0f ns\n", (now() - t) / N);
  t = now(); for (int i = 0; i < N; i++) { ev.events = (i & 1) ? EPOLLIN : EPOLLIN | EPOLLOUT; epoll_ctl(ep, EPOLL_CTL_MOD, sv[1], &ev); }
  printf("epoll_ctl MOD                            %6.0f ns\n", (now() - t) / N);
  t = now(); for (int i = 0; i < N; i++) epoll_ctl(ep, EPOLL_CTL_ADD, sv[1], &ev);
  printf("epoll_ctl ADD failing (EEXIST)           %6.0f ns\n", (now() - t) / N);
  struct epoll_event out[16];
  t = now(); for (int i = 0; i < N; i++) epoll_wait(ep, out, 16, 0);
  printf("epoll_wait, timeout 0, nothing ready     %6.0f ns\n", (now() - t) / N);
  return 0;
}
