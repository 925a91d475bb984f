/* link-remap: open files removed from their directory (criu's unlink_regular00, inotify00; dumped
 * with --link-remap).
 *   link-remap WORKDIR
 *   link-remap WORKDIR flock   (also holds a flock on keep through its last descriptor)
 * `linked`: a file made as WORKDIR/sub/file, linked as WORKDIR/keep, then removed from sub and
 * sub removed, written after. `watched`: WORKDIR/w watched by inotify, and its file w/x open
 * read-write and watched too, then removed (the removal's events read away).
 * Prints "ready", waits for WORKDIR/check, then checks: `linked` reads back what was written and
 * is still the inode WORKDIR/keep names (one file with two paths, not a copy), its descriptor
 * names the removed path, and neither sub nor any temporary name is left in WORKDIR; `watched`:
 * closing x gives IN_CLOSE_WRITE on x's watch, making w/x again gives IN_CREATE on w's. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include "selfcheck.h"

#define MSG "written after the unlink"
#define MASK (IN_DELETE | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_CREATE)

/* The events queued in ify (non-blocking): OR of the masks seen per wd 1 and 2. */
static void drain(int ify, unsigned seen[3]) {
  char buf[4096] __attribute__((aligned(8)));
  ssize_t n;
  while ((n = read(ify, buf, sizeof(buf))) > 0) {
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *e = (struct inotify_event *)p;
      if (e->wd >= 1 && e->wd <= 2) seen[e->wd] |= e->mask;
      p += sizeof(*e) + e->len;
    }
  }
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");

  if (mkdir("sub", 0755)) return setup_failed("mkdir sub");
  int fd = open("sub/file", O_RDWR | O_CREAT, 0640);
  if (fd < 0 || link("sub/file", "keep") || unlink("sub/file") || rmdir("sub")) return setup_failed("linked");
  if (write(fd, MSG, sizeof(MSG)) != sizeof(MSG)) return setup_failed("write linked");
  char wanted[4096], p[64];
  snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(p, wanted, sizeof(wanted) - 1);
  if (n < 0) return setup_failed("readlink linked");
  wanted[n] = 0;

  if (mkdir("w", 0755)) return setup_failed("mkdir w");
  int ify = inotify_init1(IN_NONBLOCK);
  int x = open("w/x", O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (ify < 0 || x < 0) return setup_failed("watched");
  if (inotify_add_watch(ify, "w", MASK) != 1 || inotify_add_watch(ify, "w/x", MASK) != 2) return setup_failed("inotify_add_watch");
  if (unlink("w/x")) return setup_failed("unlink w/x");
  unsigned seen[3] = {0};
  drain(ify, seen);
  int lk = argc > 2 && !strcmp(argv[2], "flock") ? open("keep", O_RDONLY) : -1;
  if (lk >= 0 && flock(lk, LOCK_EX)) return setup_failed("flock keep");

  printf("ready\n");
  wait_check();

  char got[sizeof(MSG)] = {0};
  report(pread(fd, got, sizeof(MSG), 0) == sizeof(MSG) && !strcmp(got, MSG), "linked-contents", "read '%s'", got);
  struct stat a, b;
  report(!fstat(fd, &a) && !stat("keep", &b) && a.st_ino == b.st_ino && a.st_dev == b.st_dev && b.st_nlink == 1,
    "linked-same-inode", "fd inode %lu, keep inode %lu with %lu links", (unsigned long)a.st_ino, (unsigned long)b.st_ino, (unsigned long)b.st_nlink);
  char link[4096] = {0};
  n = readlink(p, link, sizeof(link) - 1);
  report(n > 0 && !strcmp(link, wanted), "linked-path", "fd names '%s', was '%s'", link, wanted);
  int extra = 0;
  DIR *d = opendir(".");
  for (struct dirent *e; d && (e = readdir(d));) {
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "keep") && strcmp(e->d_name, "w") && strcmp(e->d_name, "check")) {
      printf("# left in WORKDIR: %s\n", e->d_name);
      extra++;
    }
  }
  if (d) closedir(d);
  report(!extra, "nothing-left", "%d unexpected names in WORKDIR", extra);

  memset(seen, 0, sizeof(seen));
  drain(ify, seen);
  report(!seen[1] && !seen[2], "watch-quiet", "events queued by the restore: wd1 0x%x wd2 0x%x", seen[1], seen[2]);
  close(x);
  drain(ify, seen);
  report(seen[2] & IN_CLOSE_WRITE, "watch-removed-file", "x's watch saw 0x%x on close", seen[2]);
  int again = open("w/x", O_RDWR | O_CREAT, 0644);
  if (again >= 0) close(again);
  drain(ify, seen);
  report(seen[1] & IN_CREATE, "watch-dir", "w's watch saw 0x%x", seen[1]);
  return result();
}
