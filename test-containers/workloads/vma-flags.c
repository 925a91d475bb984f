/* vma-flags: anonymous mappings made with mmap flags and madvise advice that show in their
 * VmFlags (/proc/self/smaps), checked by the process itself once DIR/check appears (after
 * restore): each mapping is where it was, holds its bytes, and has the same flags of interest.
 *   vma-flags DIR
 * Mappings (two pages each, apart from one another; MAP_PRIVATE but the last): MAP_NORESERVE + MADV_DONTDUMP;
 * MAP_LOCKED + MADV_SEQUENTIAL; plain + MADV_DONTFORK; plain + MADV_HUGEPAGE; plain +
 * MADV_MERGEABLE; MAP_NORESERVE + MADV_RANDOM + MADV_WIPEONFORK; a MAP_GROWSDOWN stack; a
 * MAP_DROPPABLE one (its own mapping type, with neither MAP_PRIVATE nor MAP_SHARED: the kernel
 * may free its pages under pressure, so they may come back as zeros; it is not reserved, copied
 * on fork or put in core dumps). */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "selfcheck.h"

#define LEN 8192
/* The VmFlags mnemonics that record an mmap flag or an advice (not accounting, soft-dirty...). */
static const char *const OF_INTEREST[] = { "gd", "lo", "nr", "ht", "sr", "rr", "dc", "dd", "mg", "hg", "nh", "wf", "dp" };
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif

/* The flags of interest of the VMA holding `addr`, space-separated, from /proc/self/smaps. */
static void flags_of(const void *addr, char *out, size_t n) {
  char all[512];
  vmflags(addr, all, sizeof all - 1);
  strcat(all, " "); /* every flag between spaces, the last one too */
  out[0] = 0;
  for (size_t i = 0; i < sizeof OF_INTEREST / sizeof *OF_INTEREST; i++) {
    char want[8];
    snprintf(want, sizeof want, " %s ", OF_INTEREST[i]);
    if (strstr(all, want)) snprintf(out + strlen(out), n - strlen(out), "%s ", OF_INTEREST[i]);
  }
}

/* flags: what mmap gets besides MAP_ANONYMOUS|MAP_FIXED (MAP_PRIVATE unless a type is given). */
struct area { const char *name; int flags; int advice[2]; char *at; char before[128]; };

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct area areas[] = {
    { "noreserve-dontdump", MAP_PRIVATE | MAP_NORESERVE, { MADV_DONTDUMP, -1 } },
    { "locked-sequential", MAP_PRIVATE | MAP_LOCKED, { MADV_SEQUENTIAL, -1 } },
    { "dontfork", MAP_PRIVATE, { MADV_DONTFORK, -1 } },
    { "hugepage", MAP_PRIVATE, { MADV_HUGEPAGE, -1 } },
    { "mergeable", MAP_PRIVATE, { MADV_MERGEABLE, -1 } },
    { "noreserve-random-wipeonfork", MAP_PRIVATE | MAP_NORESERVE, { MADV_RANDOM, MADV_WIPEONFORK } },
    { "growsdown", MAP_PRIVATE | MAP_GROWSDOWN, { -1, -1 } },
    { "droppable", MAP_DROPPABLE, { -1, -1 } },
  };
  const int n = sizeof areas / sizeof *areas;
  /* One reservation, then each area at every other slot of it, so none merges with another. */
  char *base = mmap(NULL, (size_t)(2 * n + 1) * LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) { perror("reserve"); return 2; }
  for (int i = 0; i < n; i++) {
    struct area *a = &areas[i];
    a->at = mmap(base + (size_t)(2 * i + 1) * LEN, LEN, PROT_READ | PROT_WRITE,
                 MAP_ANONYMOUS | MAP_FIXED | a->flags, -1, 0);
    if (a->at == MAP_FAILED) { perror(a->name); return 2; }
    for (int k = 0; k < 2; k++) {
      if (a->advice[k] >= 0 && madvise(a->at, LEN, a->advice[k])) { perror(a->name); return 2; }
    }
    memset(a->at, 'a' + i, LEN);
    flags_of(a->at, a->before, sizeof a->before);
  }
  printf("ready %d\n", getpid());
  for (int i = 0; i < n; i++) printf("before %s: %s\n", areas[i].name, areas[i].before);
  wait_check();

  for (int i = 0; i < n; i++) {
    struct area *a = &areas[i];
    char now[128];
    flags_of(a->at, now, sizeof now);
    int same = a->at[0] == 'a' + i && a->at[LEN - 1] == 'a' + i;
    /* The kernel may free a droppable mapping's pages at any time (CRIU leaves them out). */
    if (a->flags & MAP_DROPPABLE) same = same || (a->at[0] == 0 && a->at[LEN - 1] == 0);
    report(same && !strcmp(now, a->before), a->name, "flags '%s' (were '%s'), bytes %s", now, a->before, same ? "kept" : "lost");
  }
  return result();
}
