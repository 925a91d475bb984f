/* shm: memory shared between processes, checked after restore (once DIR/check appears): a
 * MAP_SHARED|MAP_ANONYMOUS area, a memfd mapped shared (and mapped again, read-only, by the root
 * through a second open file description of it), a file mapped shared, and a private
 * area inherited across fork that each process has changed on its own, and an anonymous and a
 * file-backed private area only the root writes after the fork (the child must still see zeroes
 * and the file's bytes there). The child writes into
 * the shared areas, the root must see it (and the reverse); the private copies stay apart.
 * Prints "ok ITEM" / "FAIL ITEM: why" and "result PASS|FAIL" (the root).
 *   shm DIR */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "selfcheck.h"


int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  char *a = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  memset(a, 'a', 65536);
  int mfd = memfd_create("shared-buf", 0);
  if (ftruncate(mfd, 16384)) return 2;
  char *m = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  /* The same memfd through a second, read-only open file description, mapped again: one object. */
  char again[64]; snprintf(again, sizeof again, "/proc/self/fd/%d", mfd);
  int mfd2 = open(again, O_RDONLY);
  char *m2 = mmap(NULL, 8192, PROT_READ, MAP_SHARED, mfd2, 4096);
  if (mfd2 < 0 || m2 == MAP_FAILED) return 2;
  close(mfd2);
  close(mfd);
  memset(m, 'm', 16384);
  int ffd = open("sharedfile", O_RDWR | O_CREAT | O_TRUNC, 0644);
  char page[4096]; memset(page, 'f', sizeof page);
  if (write(ffd, page, sizeof page) != (ssize_t)sizeof page) return 2;
  char *f = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ffd, 0);
  char *g = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, ffd, 0);
  close(ffd);
  char *q = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(p, 'p', 8192);
  int toroot[2], tochild[2];
  if (pipe(toroot) || pipe(tochild)) return 2;
  pid_t c = fork();
  if (c == 0) {
    memset(p, 'c', 8192);
    wait_check();
    a[100] = 'C'; m[200] = 'C'; f[300] = 'C';
    msync(f, 4096, MS_SYNC);
    (void)!write(toroot[1], "w", 1);
    char x; (void)!read(tochild[0], &x, 1);
    char msg[160];
    if (a[101] != 'R' || m[201] != 'R') snprintf(msg, sizeof msg, "child sees a[101]=%c m[201]=%c", a[101], m[201]);
    else if (p[0] != 'c' || p[8191] != 'c') snprintf(msg, sizeof msg, "child's private copy %c%c", p[0], p[8191]);
    else if (q[0] || q[8191]) snprintf(msg, sizeof msg, "child sees the root's anonymous writes %c%c", q[0], q[8191]);
    else if (g[0] != 'f') snprintf(msg, sizeof msg, "child sees the root's private file write %c", g[0]);
    else snprintf(msg, sizeof msg, "ok");
    dprintf(toroot[1], "%s\n", msg);
    _exit(0);
  }
  memset(q, 'r', 8192);
  g[0] = 'r';
  while (p[0] != 'p') nap(1);
  nap(50);
  printf("ready %d child=%d\n", getpid(), c);
  wait_check();
  char x; (void)!read(toroot[0], &x, 1);
  report(a[100] == 'C' && a[0] == 'a', "shared-anon-child-to-root", "a[100]=%c", a[100]);
  report(m[200] == 'C' && m[0] == 'm', "memfd-child-to-root", "m[200]=%c", m[200]);
  m[4096 + 7] = 'T';
  report(m2[7] == 'T' && m2[0] == 'm', "memfd-mapped-twice", "m2[7]=%c", m2[7]);
  report(f[300] == 'C', "shared-file-child-to-root", "f[300]=%c", f[300]);
  char disk[4096] = {0};
  int rf = open("sharedfile", O_RDONLY); (void)!read(rf, disk, sizeof disk); close(rf);
  report(disk[300] == 'C' && disk[0] == 'f', "shared-file-on-disk", "disk[300]=%c", disk[300]);
  report(p[0] == 'p' && p[8191] == 'p', "private-copy-root", "root's private copy %c%c", p[0], p[8191]);
  report(q[0] == 'r' && q[8191] == 'r' && g[0] == 'r', "root-only-writes", "root's own writes %c%c %c", q[0], q[8191], g[0]);
  a[101] = 'R'; m[201] = 'R';
  (void)!write(tochild[1], "r", 1);
  char msg[160] = {0}; ssize_t n = read(toroot[0], msg, sizeof msg - 1);
  if (n > 0 && msg[n - 1] == '\n') msg[n - 1] = 0;
  report(n > 0 && !strcmp(msg, "ok"), "root-to-child-and-child-private", "%s", msg);
  int st; waitpid(c, &st, 0);
  return result();
}
