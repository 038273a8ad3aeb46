/*
 * LD_PRELOAD shim for the answer-after-fsync test (test/fsync.test.ts, issue 17):
 * records, with CLOCK_MONOTONIC start and end times (the clock Node's
 * process.hrtime uses), every write to a regular file (write, writev, pwrite64)
 * and every fdatasync, fsync and msync of the process, one line each, to the
 * file named by NVEDGE_SYNC_LOG:
 *     <call> <fd> <start_ns> <end_ns> <dsync> <path>
 * where dsync is 1 when the file was opened O_DSYNC/O_SYNC (each write durable
 * on return). With NVEDGE_SYNC_SKIP=1 the sync calls do nothing and return 0
 * (and are not recorded): the negative control, as if the store ran noSync.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static int (*real_msync)(void *, size_t, int);
static int log_fd = -1;
static int skip_sync = 0;

__attribute__((constructor)) static void init(void) {
  real_write = dlsym(RTLD_NEXT, "write");
  real_writev = dlsym(RTLD_NEXT, "writev");
  real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
  real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
  real_fsync = dlsym(RTLD_NEXT, "fsync");
  real_msync = dlsym(RTLD_NEXT, "msync");
  const char *p = getenv("NVEDGE_SYNC_LOG");
  if (p) log_fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  const char *s = getenv("NVEDGE_SYNC_SKIP");
  skip_sync = s && strcmp(s, "1") == 0;
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void record(const char *call, int fd, long long start, long long end, int dsync) {
  if (log_fd < 0 || !real_write) return;
  char link[64], path[512], line[700];
  ssize_t k = -1;
  if (fd >= 0) {
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    k = readlink(link, path, sizeof path - 1);
  }
  path[k > 0 ? k : 0] = 0;
  if (k <= 0) strcpy(path, "-");
  int n = snprintf(line, sizeof line, "%s %d %lld %lld %d %s\n", call, fd, start, end, dsync, path);
  if (n > 0) real_write(log_fd, line, (size_t)n); /* one O_APPEND write: lines never interleave */
}

/* Writes are recorded for regular files only (not the broker socket, not stderr). */
static int regular(int fd, int *dsync) {
  struct stat st;
  if (fd == log_fd || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  int fl = fcntl(fd, F_GETFL);
  *dsync = fl >= 0 && (fl & (O_DSYNC | O_SYNC)) != 0;
  return 1;
}

ssize_t write(int fd, const void *b, size_t n) {
  int ds = 0, reg = regular(fd, &ds);
  long long t0 = now_ns();
  ssize_t r = real_write(fd, b, n);
  if (reg && r > 0) record("write", fd, t0, now_ns(), ds);
  return r;
}

ssize_t writev(int fd, const struct iovec *v, int c) {
  int ds = 0, reg = regular(fd, &ds);
  long long t0 = now_ns();
  ssize_t r = real_writev(fd, v, c);
  if (reg && r > 0) record("writev", fd, t0, now_ns(), ds);
  return r;
}

ssize_t pwrite64(int fd, const void *b, size_t n, off_t o) {
  int ds = 0, reg = regular(fd, &ds);
  long long t0 = now_ns();
  ssize_t r = real_pwrite64(fd, b, n, o);
  if (reg && r > 0) record("pwrite", fd, t0, now_ns(), ds);
  return r;
}
ssize_t pwrite(int fd, const void *b, size_t n, off_t o) { return pwrite64(fd, b, n, o); }

int fdatasync(int fd) {
  if (skip_sync) return 0;
  long long t0 = now_ns();
  int r = real_fdatasync(fd);
  if (r == 0) record("fdatasync", fd, t0, now_ns(), 0);
  return r;
}

int fsync(int fd) {
  if (skip_sync) return 0;
  long long t0 = now_ns();
  int r = real_fsync(fd);
  if (r == 0) record("fsync", fd, t0, now_ns(), 0);
  return r;
}

int msync(void *a, size_t n, int f) {
  if (skip_sync) return 0;
  long long t0 = now_ns();
  int r = real_msync(a, n, f);
  if (r == 0 && (f & MS_SYNC)) record("msync", -1, t0, now_ns(), 0);
  return r;
}
