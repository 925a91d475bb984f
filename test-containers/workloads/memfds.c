/* memfds: one memfd reached several ways, checked after restore (once DIR/check appears).
 *  - The child opens the root's memfd through /proc/ROOT/fd/N (read-only, a description of its
 *    own) and closes what it inherited: after restore the root writes through its descriptor
 *    and the child reads the byte through its own, same flags as before.
 *  - The root opens its own memfd again through /proc/self/fd/N: two descriptions, one file.
 *  - A memfd written through its descriptor (position 6) and mapped twice, shared and private:
 *    the shared mapping shows the bytes, a write through it is what pread reads and what the
 *    private mapping (not yet written) shows; a write to the private one stays private.
 * The root prints "ok ITEM" / "FAIL ITEM: why" and "result PASS|FAIL".
 *   memfds DIR */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  int fd = memfd_create("reopened", MFD_CLOEXEC);
  if (fd < 0) return 2;
  int up[2], down[2];
  if (pipe(up) || pipe(down)) return 2;
  pid_t root = getpid();
  pid_t c = fork();
  if (c == 0) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", root, fd);
    int mine = open(path, O_RDONLY);
    if (mine < 0) _exit(2);
    close(fd);
    int fl = fcntl(mine, F_GETFL), fdfl = fcntl(mine, F_GETFD);
    (void)!write(up[1], "s", 1);
    wait_check();
    char x = 0, msg[128];
    if (read(down[0], &x, 1) != 1) _exit(2);
    ssize_t n = read(mine, &x, 1);
    if (n != 1) snprintf(msg, sizeof msg, "child read %zd bytes", n);
    else if (x != 'x') snprintf(msg, sizeof msg, "child read '%c'", x);
    else if (fcntl(mine, F_GETFL) != fl || fcntl(mine, F_GETFD) != fdfl) snprintf(msg, sizeof msg, "child's flags changed");
    else snprintf(msg, sizeof msg, "ok");
    dprintf(up[1], "%s\n", msg);
    _exit(0);
  }
  char again[64];
  snprintf(again, sizeof again, "/proc/self/fd/%d", fd);
  int fd2 = open(again, O_RDONLY);
  /* memfd02's case: written through the descriptor, mapped shared and private. */
  int m = memfd_create("mapped", MFD_CLOEXEC);
  if (fd2 < 0 || m < 0 || ftruncate(m, 6) || write(m, "write1", 6) != 6) return 2;
  char *sh = mmap(NULL, 6, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
  char *pr = mmap(NULL, 6, PROT_READ | PROT_WRITE, MAP_PRIVATE, m, 0);
  if (sh == MAP_FAILED || pr == MAP_FAILED) return 2;
  char x;
  if (read(up[0], &x, 1) != 1) return 2;
  printf("ready %d child=%d\n", getpid(), c);
  wait_check();
  /* The child's description of the root's memfd. */
  report(write(fd, "x", 1) == 1, "memfd-root-writes", "write failed");
  (void)!write(down[1], "?", 1);
  char msg[128] = {0};
  ssize_t n = 0;
  while (n < (ssize_t)sizeof msg - 1 && read(up[0], msg + n, 1) == 1 && msg[n] != '\n') n++;
  msg[n] = 0;
  report(!strcmp(msg, "ok"), "memfd-reopened-by-child", "%s", n ? msg : "no answer");
  /* The root's second description of its memfd. */
  char y = 0;
  report(pread(fd2, &y, 1, 0) == 1 && y == 'x', "memfd-reopened-by-itself", "read '%c'", y);
  /* One memfd behind the descriptor and both mappings. */
  char buf[7] = {0};
  report(!memcmp(sh, "write1", 6), "memfd-shared-map-contents", "shared map has %.6s", sh);
  memcpy(sh, "write2", 6);
  report(pread(m, buf, 6, 0) == 6 && !memcmp(buf, "write2", 6), "memfd-map-is-the-file", "pread gives %s", buf);
  report(!memcmp(pr, "write2", 6), "memfd-private-map-reads-file", "private map has %.6s", pr);
  memcpy(pr, "write3", 6);
  report(!memcmp(sh, "write2", 6), "memfd-private-write-stays", "shared map has %.6s", sh);
  report(lseek(m, 0, SEEK_CUR) == 6, "memfd-position", "at %ld", (long)lseek(m, 0, SEEK_CUR));
  int st = 0;
  waitpid(c, &st, 0);
  report(WIFEXITED(st) && WEXITSTATUS(st) == 0, "memfd-child-exit", "status %x", st);
  return result();
}
