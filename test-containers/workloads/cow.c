/* cow: private memory a parent and its child still share copy-on-write, checked after restore
 * (once DIR/check appears). The root fills four pages of a private anonymous area and forks; the
 * child changes a page of a second area, the root a third page of that area, neither touches the
 * first area. After restore the first area's pages must still be one physical page each for
 * both (equal PFNs in /proc/self/pagemap, which root can read), the pages each changed must be
 * their own, the contents as they were (likewise for a 12 MiB area, which makes both processes
 * too big for stasis to fill from its side); a write by the child then gives it a copy of its own
 * while the root keeps the old bytes. The root prints "ok ITEM" / "FAIL ITEM: why" and
 * "result PASS|FAIL". With `small`, no 12 MiB area: the processes are small enough for stasis to
 * read and write all their pages itself.
 *   cow DIR [small] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

#define PG 4096
#define SHARED_PAGES 4
/* Above what stasis fills from its own side (8 MiB): the task copies such memory itself. */
#define BIG (12 << 20)
static char *big;

/* The PFN of the page at `addr` in this process (0: not present, or not visible to us). */
static uint64_t pfn_of(const void *addr) {
  int fd = open("/proc/self/pagemap", O_RDONLY);
  uint64_t e = 0;
  if (fd < 0) return 0;
  if (pread(fd, &e, sizeof e, (off_t)((uintptr_t)addr / PG * sizeof e)) != (ssize_t)sizeof e) e = 0;
  close(fd);
  if (!(e >> 63 & 1)) return 0; /* not present */
  return e & ((1ULL << 55) - 1);
}

/* The PFNs of the shared area's pages and of the two pages of the second one. */
struct pfns { uint64_t shared[SHARED_PAGES]; uint64_t mine, theirs; uint64_t big[3]; };

static void pfns_of(struct pfns *p, char *a, char *b) {
  for (int i = 0; i < SHARED_PAGES; i++) p->shared[i] = pfn_of(a + i * PG);
  p->mine = pfn_of(b); p->theirs = pfn_of(b + PG);
  if (big) { p->big[0] = pfn_of(big); p->big[1] = pfn_of(big + BIG / 2); p->big[2] = pfn_of(big + BIG - PG); }
}

static int filled(const char *p, char c, size_t n) {
  for (size_t i = 0; i < n; i++) if (p[i] != c) return 0;
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  char *a = mmap(NULL, SHARED_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *b = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (a == MAP_FAILED || b == MAP_FAILED) return 2;
  for (int i = 0; i < SHARED_PAGES; i++) memset(a + i * PG, 'A' + i, PG);
  memset(b, 'b', 2 * PG);
  if (argc < 3 || strcmp(argv[2], "small")) {
    big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (big == MAP_FAILED) return 2;
    for (size_t i = 0; i < BIG; i += PG) memset(big + i, 1 + (int)(i / PG % 250), PG);
  }
  int up[2], down[2];
  if (pipe(up) || pipe(down)) return 2;
  pid_t c = fork();
  if (c == 0) {
    memset(b, 'c', PG); /* the child's own copy of b's first page */
    struct pfns p;
    pfns_of(&p, a, b);
    if (write(up[1], &p, sizeof p) != (ssize_t)sizeof p) _exit(2);
    wait_check();
    char x;
    for (int round = 0; round < 2; round++) {
      /* The root asks (one byte), the child answers with its PFNs; between the two rounds it
       * writes into the shared area's first page. */
      if (read(down[0], &x, 1) != 1) _exit(2);
      if (round == 1) a[10] = 'w';
      int ok = filled(a + PG, 'B', PG) && filled(b, 'c', PG) && filled(b + PG, 'b', PG)
        && (round == 0 ? filled(a, 'A', PG) : a[10] == 'w' && a[0] == 'A');
      pfns_of(&p, a, b);
      if (write(up[1], &p, sizeof p) != (ssize_t)sizeof p || write(up[1], &ok, sizeof ok) != (ssize_t)sizeof ok) _exit(2);
    }
    _exit(0);
  }
  memset(b + PG, 'r', PG); /* the root's own copy of b's second page */
  struct pfns mine, theirs;
  if (read(up[0], &theirs, sizeof theirs) != (ssize_t)sizeof theirs) return 2;
  pfns_of(&mine, a, b);
  /* Shared before the dump, or the test proves nothing (PFNs need root). */
  if (!mine.shared[0] || memcmp(mine.shared, theirs.shared, sizeof mine.shared)) {
    printf("setup: the pages are not shared before the dump (not root?)\n");
    return 2;
  }
  printf("ready %d child=%d\n", getpid(), c);
  wait_check();
  int ok;
  (void)!write(down[1], "?", 1);
  if (read(up[0], &theirs, sizeof theirs) != (ssize_t)sizeof theirs || read(up[0], &ok, sizeof ok) != (ssize_t)sizeof ok) return 2;
  pfns_of(&mine, a, b);
  int same = 0;
  for (int i = 0; i < SHARED_PAGES; i++) same += mine.shared[i] && mine.shared[i] == theirs.shared[i];
  report(same == SHARED_PAGES, "cow-pages-still-shared", "%d of %d pages shared (root pfn %llx, child %llx)",
    same, SHARED_PAGES, (unsigned long long)mine.shared[0], (unsigned long long)theirs.shared[0]);
  int root_ok = filled(b, 'b', PG) && filled(b + PG, 'r', PG);
  for (int i = 0; i < SHARED_PAGES; i++) root_ok = root_ok && filled(a + i * PG, 'A' + i, PG);
  report(ok && root_ok, "cow-contents", "child %s, root %s", ok ? "right" : "wrong", root_ok ? "right" : "wrong");
  int big_same = 0;
  for (int i = 0; i < 3; i++) big_same += mine.big[i] && mine.big[i] == theirs.big[i];
  if (big) report(big_same == 3, "cow-large-area-still-shared", "%d of 3 pages of a 12 MiB area shared", big_same);
  report(mine.mine && theirs.mine && mine.mine != theirs.mine && mine.theirs != theirs.theirs, "cow-changed-pages-apart",
    "pfns root %llx/%llx child %llx/%llx", (unsigned long long)mine.mine, (unsigned long long)mine.theirs,
    (unsigned long long)theirs.mine, (unsigned long long)theirs.theirs);
  (void)!write(down[1], "?", 1);
  if (read(up[0], &theirs, sizeof theirs) != (ssize_t)sizeof theirs || read(up[0], &ok, sizeof ok) != (ssize_t)sizeof ok) return 2;
  pfns_of(&mine, a, b);
  report(ok && a[10] == 'A' && theirs.shared[0] && theirs.shared[0] != mine.shared[0] && theirs.shared[1] == mine.shared[1],
    "cow-write-unshares", "child ok=%d root a[10]=%c pfn0 %llx/%llx", ok, a[10],
    (unsigned long long)mine.shared[0], (unsigned long long)theirs.shared[0]);
  int st = 0;
  waitpid(c, &st, 0);
  report(WIFEXITED(st) && WEXITSTATUS(st) == 0, "cow-child-exit", "status %x", st);
  return result();
}
