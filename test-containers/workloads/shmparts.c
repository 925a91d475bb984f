/* shmparts: SysV shared memory attached in parts, in an ipc namespace of the process's own
 * (with `unshare-ipc` it makes one: in a container it has one).
 *   shmparts DIR [hugetlb] [unshare-ipc]
 * Segment "split" (3 pages) attached whole, its first page made read-only (two VMAs: read at
 * offset 0, read-write at offset 1 page); segment "middle" (4 pages) attached whole, then its
 * first and last pages unmapped (one VMA of 2 pages at offset 1 page). With `hugetlb`, segment
 * "huge" (2 huge pages, SHM_HUGETLB) attached whole with a pattern on both huge pages.
 * Prints "ready", waits for DIR/check, then checks for each: the VMAs where they were, with
 * their offsets and protections (/proc/self/maps), the contents, and that the attachment still
 * shares the segment (a write through it shows in a new attachment, and the other way round). */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include "selfcheck.h"

#define PAGE 4096UL
#define HUGE (2UL << 20)

static unsigned char pattern(size_t i, int seed) { return (unsigned char)(i * 13 + seed); }

/* The maps line starting at `addr`: its end, permissions and offset. */
static int vma_at(uintptr_t addr, uintptr_t *end, char perms[5], unsigned long *off) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  int found = 0;
  while (f && fgets(line, sizeof line, f)) {
    uintptr_t s, e;
    unsigned long o;
    char p[5];
    if (sscanf(line, "%lx-%lx %4s %lx", &s, &e, p, &o) != 4 || s != addr) continue;
    *end = e;
    memcpy(perms, p, 5);
    *off = o;
    found = 1;
    break;
  }
  if (f) fclose(f);
  return found;
}

static void check_vma(const char *item, void *at, size_t len, const char *perms, unsigned long off) {
  uintptr_t end = 0;
  char p[5] = "";
  unsigned long o = 0;
  if (!vma_at((uintptr_t)at, &end, p, &o)) {
    report(0, item, "no mapping starts at %p", at);
    return;
  }
  report(end == (uintptr_t)at + len && !strncmp(p, perms, 4) && o == off, item,
         "%p-%#lx %s offset %#lx, not -%#lx %s offset %#lx", at, (unsigned long)end, p, o,
         (unsigned long)((uintptr_t)at + len), perms, off);
}

static void check_bytes(const char *item, const unsigned char *p, size_t from, size_t to, int seed) {
  for (size_t i = from; i < to; i++) {
    if (p[i - from] != pattern(i, seed)) {
      report(0, item, "byte %zu is %d, not %d", i, p[i - from], pattern(i, seed));
      return;
    }
  }
  report(1, item, "%s", "");
}

/* A write through `mapped` (offset `off` of segment `id`) shows in a new attachment, and back. */
static void check_shared(const char *item, int id, unsigned char *mapped, size_t off) {
  unsigned char *fresh = shmat(id, NULL, 0);
  if (fresh == (void *)-1) {
    report(0, item, "shmat: %s", strerror(errno));
    return;
  }
  mapped[0] ^= 0xff;
  int seen = fresh[off] == mapped[0];
  fresh[off + 1] ^= 0xff;
  int back = fresh[off + 1] == mapped[1];
  report(seen && back, item, "a write through the restored attachment %s in a new one, a write there %s",
         seen ? "shows" : "does not show", back ? "shows" : "does not show");
  shmdt(fresh);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");
  int huge = 0, own = 0;
  for (int i = 2; i < argc; i++) {
    huge |= !strcmp(argv[i], "hugetlb");
    own |= !strcmp(argv[i], "unshare-ipc");
  }
  if (own && unshare(CLONE_NEWIPC)) return setup_failed("unshare ipc");

  int split = shmget(IPC_PRIVATE, 3 * PAGE, IPC_CREAT | 0600);
  if (split < 0) return setup_failed("shmget split");
  unsigned char *ps = shmat(split, NULL, 0);
  if (ps == (void *)-1) return setup_failed("shmat split");
  for (size_t i = 0; i < 3 * PAGE; i++) ps[i] = pattern(i, 1);
  if (mprotect(ps, PAGE, PROT_READ)) return setup_failed("mprotect split");

  int middle = shmget(IPC_PRIVATE, 4 * PAGE, IPC_CREAT | 0600);
  if (middle < 0) return setup_failed("shmget middle");
  unsigned char *pm = shmat(middle, NULL, 0);
  if (pm == (void *)-1) return setup_failed("shmat middle");
  for (size_t i = 0; i < 4 * PAGE; i++) pm[i] = pattern(i, 2);
  if (munmap(pm, PAGE) || munmap(pm + 3 * PAGE, PAGE)) return setup_failed("munmap middle");
  unsigned char *mid = pm + PAGE;

  int hg = -1;
  unsigned char *ph = NULL;
  if (huge) {
    hg = shmget(IPC_PRIVATE, 2 * HUGE, IPC_CREAT | SHM_HUGETLB | 0600);
    if (hg < 0) return setup_failed("shmget huge");
    ph = shmat(hg, NULL, 0);
    if (ph == (void *)-1) return setup_failed("shmat huge");
    for (size_t i = 0; i < 2 * HUGE; i += 512) ph[i] = pattern(i, 3);
  }

  printf("ready\n");
  wait_check();

  check_vma("split-read-only-part", ps, PAGE, "r--s", 0);
  check_vma("split-writable-part", ps + PAGE, 2 * PAGE, "rw-s", PAGE);
  check_bytes("split-contents", ps, 0, 3 * PAGE, 1);
  check_shared("split-shared", split, ps + PAGE, PAGE);
  check_vma("middle-mapping", mid, 2 * PAGE, "rw-s", PAGE);
  uintptr_t end;
  char perms[5];
  unsigned long off;
  report(!vma_at((uintptr_t)pm, &end, perms, &off), "middle-head-unmapped", "the first page is mapped again");
  report(!vma_at((uintptr_t)pm + 3 * PAGE, &end, perms, &off), "middle-tail-unmapped", "the last page is mapped again");
  check_bytes("middle-contents", mid, PAGE, 3 * PAGE, 2);
  check_shared("middle-shared", middle, mid, PAGE);
  if (huge) {
    check_vma("huge-mapping", ph, 2 * HUGE, "rw-s", 0);
    int bad = -1;
    for (size_t i = 0; i < 2 * HUGE; i += 512) if (ph[i] != pattern(i, 3)) { bad = (int)i; break; }
    report(bad < 0, "huge-contents", "byte %d is %d, not %d", bad, bad < 0 ? 0 : ph[bad], bad < 0 ? 0 : pattern(bad, 3));
    check_shared("huge-shared", hg, ph + HUGE, HUGE);
  }
  return result();
}
