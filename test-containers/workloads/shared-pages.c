/* shared-pages: memory of one kind (or all of them) with a known number of pages holding data,
 * for the page counts of stats-dump; after restore each area checks its own bytes.
 *   shared-pages DIR KIND     KIND: private | anon | memfd | memfd-fd | sysv | all
 *   private  a private anonymous area of 9 pages, 5 of them written
 *   anon     a MAP_SHARED|MAP_ANONYMOUS area of 6 pages, 3 of them written
 *   memfd    a memfd of 7 pages mapped shared, 4 of them written
 *   memfd-fd a memfd of 5 pages only held open (not mapped), 2 of them written
 *   sysv     a SysV segment of 5 pages attached, 2 of them written (the process first enters an
 *            ipc namespace of its own, which the dump then holds)
 * Pages not written must still read as zeroes. Prints "ready PID KIND", waits for DIR/check,
 * then "ok ITEM" / "FAIL ITEM: why" and "result PASS|FAIL". */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <unistd.h>
#include "selfcheck.h"

#define PAGE 4096

struct area {
  const char *name;
  unsigned char *at;
  int pages;
  const int *written; /* page numbers written, -1 ends */
};

static unsigned char fill(int area, int page) { return (unsigned char)(0x21 + area * 16 + page); }

static void write_pages(int n, struct area *a) {
  for (const int *p = a->written; *p >= 0; p++) memset(a->at + *p * PAGE, fill(n, *p), PAGE);
}

static void check(int n, struct area *a) {
  for (int page = 0; page < a->pages; page++) {
    int was_written = 0;
    for (const int *p = a->written; *p >= 0; p++) was_written |= *p == page;
    unsigned char want = was_written ? fill(n, page) : 0;
    for (int i = 0; i < PAGE; i++) {
      if (a->at[page * PAGE + i] != want) {
        report(0, a->name, "page %d byte %d is 0x%02x, not 0x%02x", page, i, a->at[page * PAGE + i], want);
        return;
      }
    }
  }
  report(1, a->name, "-");
}

static const int private_pages[] = { 0, 2, 3, 5, 8, -1 };
static const int anon_pages[] = { 1, 2, 5, -1 };
static const int memfd_pages[] = { 0, 3, 4, 6, -1 };
static const int sysv_pages[] = { 1, 4, -1 };
static const int memfd_fd_pages[] = { 1, 3, -1 };

/* The memfd only held open: its pages read back through the descriptor. */
static void check_fd(int fd) {
  unsigned char page[PAGE];
  for (int p = 0; p < 5; p++) {
    unsigned char want = (p == memfd_fd_pages[0] || p == memfd_fd_pages[1]) ? fill(9, p) : 0;
    if (pread(fd, page, PAGE, (off_t)p * PAGE) != PAGE) {
      report(0, "memfd-fd", "page %d cannot be read", p);
      return;
    }
    for (int i = 0; i < PAGE; i++) {
      if (page[i] != want) {
        report(0, "memfd-fd", "page %d byte %d is 0x%02x, not 0x%02x", p, i, page[i], want);
        return;
      }
    }
  }
  report(1, "memfd-fd", "-");
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 3 || chdir(argv[1])) return 2;
  const char *kind = argv[2];
  int all = !strcmp(kind, "all");
  struct area areas[4];
  int n = 0;
  if (all || !strcmp(kind, "private")) {
    unsigned char *p = mmap(NULL, 9 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 2;
    areas[n++] = (struct area){ "private-anonymous", p, 9, private_pages };
  }
  if (all || !strcmp(kind, "anon")) {
    unsigned char *p = mmap(NULL, 6 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 2;
    areas[n++] = (struct area){ "shared-anonymous", p, 6, anon_pages };
  }
  if (all || !strcmp(kind, "memfd")) {
    int fd = memfd_create("shared-pages", 0);
    if (fd < 0 || ftruncate(fd, 7 * PAGE)) return 2;
    unsigned char *p = mmap(NULL, 7 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return 2;
    close(fd);
    areas[n++] = (struct area){ "memfd-shared", p, 7, memfd_pages };
  }
  int held = -1;
  if (all || !strcmp(kind, "memfd-fd")) {
    held = memfd_create("held-open", 0);
    if (held < 0 || ftruncate(held, 5 * PAGE)) return 2;
    unsigned char page[PAGE];
    for (const int *p = memfd_fd_pages; *p >= 0; p++) {
      memset(page, fill(9, *p), PAGE);
      if (pwrite(held, page, PAGE, (off_t)*p * PAGE) != PAGE) return 2;
    }
  }
  if (all || !strcmp(kind, "sysv")) {
    if (unshare(CLONE_NEWIPC)) return 2;
    int id = shmget(IPC_PRIVATE, 5 * PAGE, IPC_CREAT | 0600);
    unsigned char *p = id < 0 ? (void *)-1 : shmat(id, NULL, 0);
    if (p == (void *)-1) return 2;
    areas[n++] = (struct area){ "sysv-shm", p, 5, sysv_pages };
  }
  if (!n && held < 0) return 2;
  for (int i = 0; i < n; i++) write_pages(i, &areas[i]);
  printf("ready %d %s\n", getpid(), kind);
  wait_check();
  for (int i = 0; i < n; i++) check(i, &areas[i]);
  if (held >= 0) check_fd(held);
  return result();
}
