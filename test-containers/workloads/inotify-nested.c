/* inotify-nested: inotify watches on a tmpfs only a child's mount namespace has.
 * Run with DIR (the cwd from the start): prints "ready", waits for DIR/check (after restore),
 * then checks each item ("ok"/"FAIL" lines, "result PASS|FAIL").
 * As PID 1 (a container) the root first makes its mounts private. A child unshares its mount
 * namespace (its copies made slaves), mounts a tmpfs on DIR/sub with a file `kept` in it and
 * holds the directory open as fd 100. The parent reaches the tmpfs through /proc/CHILD/fd/100,
 * creates `file` there, holds it open for writing, and watches the directory and the file.
 *   file-on-tmpfs       the parent's open file is on the child's tmpfs, its data there
 *   tmpfs-contents      the tmpfs has its other file again
 *   parent-no-tmpfs     the parent's own DIR/sub is no tmpfs (the child's namespace is its own)
 *   close-write-dir     closing the file: IN_CLOSE_WRITE on the directory's watch, named `file`
 *   close-write-file    ... and on the file's own watch
 *   fanotify-inode      ... and a fanotify mark on the file
 *   fanotify-mount      ... and a fanotify mark on the child's tmpfs mount */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

#define TMPFS_MAGIC 0x01021994

static int is_tmpfs(const char *p) {
  struct statfs s;
  return statfs(p, &s) == 0 && s.f_type == TMPFS_MAGIC;
}

/* Whether a FAN_CLOSE_WRITE event is queued on the group (its event descriptors closed). */
static int fanotified(int group) {
  char buf[4096];
  ssize_t n = read(group, buf, sizeof buf);
  int seen = 0;
  for (struct fanotify_event_metadata *m = (void *)buf; n > 0 && FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
    if (m->mask & FAN_CLOSE_WRITE) seen = 1;
    if (m->fd >= 0) close(m->fd);
  }
  return seen;
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (getpid() == 1 && mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL)) return setup_failed("make / private");
  mkdir("sub", 0755);
  int ready[2];
  if (pipe(ready)) return setup_failed("pipe");
  pid_t pid = fork();
  if (pid < 0) return setup_failed("fork");
  if (pid == 0) {
    close(ready[0]);
    if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL)) return setup_failed("child mount namespace");
    if (mount("stasis-inotify", "sub", "tmpfs", 0, NULL)) return setup_failed("child tmpfs");
    FILE *f = fopen("sub/kept", "w");
    if (!f || fputs("kept", f) < 0 || fclose(f)) return setup_failed("file in the tmpfs");
    int d = open("sub", O_RDONLY | O_DIRECTORY);
    if (d < 0 || dup2(d, 100) != 100) return setup_failed("hold the tmpfs");
    close(d);
    if (write(ready[1], "r", 1) != 1) return setup_failed("tell the parent");
    for (;;) pause();
  }
  close(ready[1]);
  char c;
  if (read(ready[0], &c, 1) != 1) return setup_failed("child setup");
  char dir[64], file[96], kept[96];
  snprintf(dir, sizeof dir, "/proc/%d/fd/100", pid);
  snprintf(file, sizeof file, "%s/file", dir);
  snprintf(kept, sizeof kept, "%s/kept", dir);
  int in = inotify_init1(IN_NONBLOCK);
  int fd = open(file, O_CREAT | O_TRUNC | O_RDWR, 0644);
  if (in < 0 || fd < 0 || write(fd, "data", 4) != 4) return setup_failed("file on the child's tmpfs");
  unsigned mask = IN_DELETE | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_CREATE;
  int wdir = inotify_add_watch(in, dir, mask), wfile = inotify_add_watch(in, file, mask);
  if (wdir < 0 || wfile < 0) return setup_failed("inotify_add_watch");
  int fa_inode = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY), fa_mount = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
  if (fa_inode < 0 || fa_mount < 0 || fanotify_mark(fa_inode, FAN_MARK_ADD, FAN_CLOSE_WRITE, AT_FDCWD, file)
    || fanotify_mark(fa_mount, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, AT_FDCWD, dir)) return setup_failed("fanotify");
  printf("ready\n");
  wait_check();

  struct stat fs_, ds;
  char buf[4096] = {0};
  report(fstat(fd, &fs_) == 0 && stat(dir, &ds) == 0 && fs_.st_dev == ds.st_dev && is_tmpfs(dir)
    && pread(fd, buf, sizeof buf - 1, 0) == 4 && !strcmp(buf, "data"), "file-on-tmpfs", "the open file is not on the child's tmpfs (or lost its data: '%s')", buf);
  int k = open(kept, O_RDONLY);
  memset(buf, 0, sizeof buf);
  report(k >= 0 && read(k, buf, sizeof buf - 1) == 4 && !strcmp(buf, "kept"), "tmpfs-contents", "%s: '%s'", kept, buf);
  if (k >= 0) close(k);
  report(!is_tmpfs("sub"), "parent-no-tmpfs", "the parent sees a tmpfs on DIR/sub");
  close(fd);
  nap(50);
  int on_dir = 0, on_file = 0;
  ssize_t n = read(in, buf, sizeof buf);
  for (char *p = buf; n > 0 && p < buf + n;) {
    struct inotify_event *e = (struct inotify_event *)p;
    if ((e->mask & IN_CLOSE_WRITE) && e->wd == wdir && e->len && !strcmp(e->name, "file")) on_dir = 1;
    if ((e->mask & IN_CLOSE_WRITE) && e->wd == wfile) on_file = 1;
    p += sizeof *e + e->len;
  }
  report(on_dir, "close-write-dir", "no IN_CLOSE_WRITE for `file` on the directory's watch (read %zd bytes)", n);
  report(on_file, "close-write-file", "no IN_CLOSE_WRITE on the file's watch (read %zd bytes)", n);
  report(fanotified(fa_inode), "fanotify-inode", "no FAN_CLOSE_WRITE on the file's mark");
  report(fanotified(fa_mount), "fanotify-mount", "no FAN_CLOSE_WRITE on the tmpfs mount's mark");
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return result();
}
