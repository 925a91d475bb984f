/* mntns-open: a child in a mount namespace of its own, holding one file through two mounts.
 * Run with DIR (the cwd from the start): prints "ready", waits for DIR/check (after restore),
 * then checks each item ("ok"/"FAIL" lines, "result PASS|FAIL").
 * The parent opens DIR/F, forks a child that unshares its mount namespace (its copies made
 * slaves, so that nothing it mounts reaches the parent's), opens DIR/F itself and mounts a
 * tmpfs on DIR/m with a file in it.
 *   mnt-ids-differ        the child's inherited descriptor and its own are on different mounts
 *   inherited-on-parents  the inherited one on a mount of the parent's namespace, not the child's
 *   own-on-own            the child's own on a mount of its namespace
 *   namespaces-differ     the child's mount namespace is not the parent's
 *   child-tmpfs           DIR/m is the child's tmpfs again, with its file
 *   parent-no-tmpfs       the parent does not see it
 *   child-mount-unseen    a tmpfs the child mounts after the restore is not seen by the parent
 *   propagation-as-was    each mount of the child's namespace is shared, a slave or private as before
 *                         (mounts the host made or removed since, in a plain tree, aside)
 *   mounts-as-were        in a container: the same mounts, each with the same propagation
 *   copy-read-only        its copy of /dev/shm, which it made read-only, is read-only still
 *   parent-shm-writable   the parent's /dev/shm is not
 *   child-passed          the child's own checks passed
 * A second child of the parent enters the first one's namespace (setns) before the dump:
 *   joiner-same-ns        it is in the first child's namespace still
 *   joiner-sees-tmpfs     and sees its tmpfs with its file
 *   joiner-passed         its checks passed
 * A child of the first child goes back into the parent's namespace (setns) before the dump:
 *   returner-same-ns      it is in the parent's namespace still
 *   returner-no-tmpfs     and does not see the first child's tmpfs
 *   returner-passed       its checks passed
 * With "ramfs" the child also mounts a ramfs on DIR/r (a filesystem stasis cannot make again:
 * its dump must refuse). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

#define TMPFS_MAGIC 0x01021994

/* The mnt_id line of a descriptor's fdinfo (-1 if none). */
static int mnt_id_of(int fd) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  int id = -1;
  while (f && fgets(line, sizeof line, f)) if (sscanf(line, "mnt_id: %d", &id) == 1) break;
  if (f) fclose(f);
  return id;
}

/* Whether mount `id` is listed in /proc/PID/mountinfo. */
static int has_mount(pid_t pid, int id) {
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%d/mountinfo", pid);
  FILE *f = fopen(path, "r");
  int found = 0, m;
  while (f && fgets(line, sizeof line, f)) if (sscanf(line, "%d ", &m) == 1 && m == id) found = 1;
  if (f) fclose(f);
  return found;
}

static int is_tmpfs(const char *p) {
  struct statfs s;
  return statfs(p, &s) == 0 && s.f_type == TMPFS_MAGIC;
}

static void ns_of(pid_t pid, char *out, size_t n) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/mnt", pid);
  ssize_t l = readlink(path, out, n - 1);
  out[l < 0 ? 0 : l] = 0;
}

static int by_text(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Each mount of the namespace as "MOUNTPOINT KIND" (shared, slave, shared+slave or private), sorted. */
static void propagation(char *out, size_t n) {
  FILE *f = fopen("/proc/self/mountinfo", "r");
  char line[1024], mp[512], *lines[256];
  int count = 0;
  size_t at = 0;
  out[0] = 0;
  while (f && fgets(line, sizeof line, f) && count < 256) {
    if (sscanf(line, "%*d %*d %*s %*s %511s", mp) != 1) continue;
    int shared = strstr(line, " shared:") != NULL, slave = strstr(line, " master:") != NULL;
    if (asprintf(&lines[count], "%s %s\n", mp, shared && slave ? "shared+slave" : shared ? "shared" : slave ? "slave" : "private") > 0) count++;
  }
  if (f) fclose(f);
  qsort(lines, count, sizeof *lines, by_text);
  for (int i = 0; i < count; i++) {
    if (at < n) at += snprintf(out + at, n - at, "%s", lines[i]);
    free(lines[i]);
  }
}

static char before[16384], after[16384];

/* The first child's child: back into the parent's namespace (`nsfd`, opened before), then DIR. */
static int returner(int nsfd, const char *dir) {
  pid_t parent = getppid(), grandparent = 0;
  char path[64], line[256];
  if (setns(nsfd, CLONE_NEWNS) || chdir(dir)) return setup_failed("returner setns");
  close(nsfd);
  wait_check();
  /* The first child's parent, from its status. */
  snprintf(path, sizeof path, "/proc/%d/status", parent);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof line, f)) if (sscanf(line, "PPid: %d", &grandparent) == 1) break;
  if (f) fclose(f);
  char mine[64], theirs[64];
  ns_of(getpid(), mine, sizeof mine);
  ns_of(grandparent, theirs, sizeof theirs);
  report(mine[0] && !strcmp(mine, theirs), "returner-same-ns", "returner %s, parent %s", mine, theirs);
  report(!is_tmpfs("m"), "returner-no-tmpfs", "it sees the first child's tmpfs");
  return failures ? 1 : 0;
}

static int shm_read_only(void) {
  struct statvfs v;
  return statvfs("/dev/shm", &v) == 0 && (v.f_flag & ST_RDONLY);
}

/* Remount the (top) mount at `where` read-only, its other per-mount flags kept; 0 on success. */
static int read_only(const char *where) {
  struct statvfs v;
  if (statvfs(where, &v)) return -1;
  unsigned long f = MS_REMOUNT | MS_BIND | MS_RDONLY;
  if (v.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (v.f_flag & ST_NODEV) f |= MS_NODEV;
  if (v.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  return mount(NULL, where, NULL, f, NULL);
}

static int child(int inherited, int to_parent, int from_parent, int ramfs, const char *dir) {
  int parents_ns = open("/proc/self/ns/mnt", O_RDONLY);
  if (parents_ns < 0 || unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL)) return setup_failed("child mount namespace");
  int own = open("F", O_RDWR);
  if (own < 0) return setup_failed("child open F");
  if (mount("stasis-mntns", "m", "tmpfs", 0, NULL)) return setup_failed("child tmpfs");
  if (ramfs && (mkdir("r", 0755) || mount("stasis-mntns-ramfs", "r", "ramfs", 0, NULL))) return setup_failed("child ramfs");
  if (read_only("/dev/shm")) return setup_failed("child's /dev/shm read-only");
  propagation(before, sizeof before);
  FILE *f = fopen("m/kept", "w");
  if (!f || fputs("child's", f) < 0 || fclose(f)) return setup_failed("file in the child's tmpfs");
  pid_t ret = fork();
  if (ret < 0) return setup_failed("fork");
  if (ret == 0) return returner(parents_ns, dir);
  close(parents_ns);
  if (write(to_parent, "r", 1) != 1) return setup_failed("tell the parent");
  wait_check();
  int id1 = mnt_id_of(inherited), id2 = mnt_id_of(own);
  report(id1 > 0 && id2 > 0 && id1 != id2, "mnt-ids-differ", "inherited on %d, own on %d", id1, id2);
  report(has_mount(getppid(), id1) && !has_mount(getpid(), id1), "inherited-on-parents", "mount %d is not the parent's alone", id1);
  report(has_mount(getpid(), id2), "own-on-own", "mount %d is not in the child's namespace", id2);
  char mine[64], theirs[64];
  ns_of(getpid(), mine, sizeof mine);
  ns_of(getppid(), theirs, sizeof theirs);
  report(mine[0] && strcmp(mine, theirs), "namespaces-differ", "child %s, parent %s", mine, theirs);
  char buf[32] = {0};
  f = fopen("m/kept", "r");
  if (f) { if (!fgets(buf, sizeof buf, f)) buf[0] = 0; fclose(f); }
  report(is_tmpfs("m") && !strcmp(buf, "child's"), "child-tmpfs", "DIR/m: tmpfs %d, kept '%s'", is_tmpfs("m"), buf);
  report(shm_read_only(), "copy-read-only", "its /dev/shm is writable");
  propagation(after, sizeof after);
  /* In a container (the parent is PID 1) nothing else changes mounts: all of them as they were. */
  if (getppid() == 1) report(!strcmp(before, after), "mounts-as-were", "before:\n%s after:\n%s", before, after);
  /* Each mount now at a place it was before has a kind it had there. */
  const char *bad = NULL;
  for (char *line = strtok(after, "\n"); line && !bad; line = strtok(NULL, "\n")) {
    char at[520], with[1040];
    snprintf(at, sizeof at, "\n%.*s ", (int)strcspn(line, " "), line);
    snprintf(with, sizeof with, "\n%s\n", line);
    char prefixed[16400];
    snprintf(prefixed, sizeof prefixed, "\n%s", before);
    if (strstr(prefixed, at) && !strstr(prefixed, with)) bad = line;
  }
  report(!bad, "propagation-as-was", "now %s", bad ? bad : "");
  /* A mount made now: the parent must not see it (not tried in the parent's namespace). */
  char c = !mine[0] || !strcmp(mine, theirs) || mount("stasis-mntns-2", "m2", "tmpfs", 0, NULL) ? 'x' : 'm';
  if (write(to_parent, &c, 1) != 1 || read(from_parent, &c, 1) != 1) c = 'x';
  int rst = 0;
  waitpid(ret, &rst, 0);
  report(WIFEXITED(rst) && WEXITSTATUS(rst) == 0, "returner-passed", "returner status 0x%x", rst);
  return failures ? 1 : 0; /* the parent says the result, once it has its own */
}

/* The second child: into the first one's namespace, then back to DIR (setns leaves it at the root). */
static int joiner(pid_t first, const char *dir, int to_parent) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/mnt", first);
  int ns = open(path, O_RDONLY);
  if (ns < 0 || setns(ns, CLONE_NEWNS) || chdir(dir)) return setup_failed("joiner setns");
  close(ns);
  if (write(to_parent, "j", 1) != 1) return setup_failed("tell the parent");
  wait_check();
  char mine[64], theirs[64], buf[32] = {0};
  ns_of(getpid(), mine, sizeof mine);
  ns_of(first, theirs, sizeof theirs);
  report(mine[0] && !strcmp(mine, theirs), "joiner-same-ns", "joiner %s, first child %s", mine, theirs);
  FILE *f = fopen("m/kept", "r");
  if (f) { if (!fgets(buf, sizeof buf, f)) buf[0] = 0; fclose(f); }
  report(is_tmpfs("m") && !strcmp(buf, "child's"), "joiner-sees-tmpfs", "DIR/m: tmpfs %d, kept '%s'", is_tmpfs("m"), buf);
  return failures ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  mkdir("m", 0755);
  mkdir("m2", 0755);
  int fd = open("F", O_CREAT | O_RDWR, 0600);
  int up[2], down[2];
  if (fd < 0 || pipe(up) || pipe(down)) return setup_failed("open F");
  pid_t pid = fork();
  if (pid < 0) return setup_failed("fork");
  if (pid == 0) {
    close(up[0]);
    close(down[1]);
    return child(fd, up[1], down[0], argc > 2 && !strcmp(argv[2], "ramfs"), argv[1]);
  }
  close(up[1]);
  close(down[0]);
  close(fd);
  char c;
  if (read(up[0], &c, 1) != 1) return setup_failed("child setup");
  int jp[2];
  if (pipe(jp)) return setup_failed("pipe");
  pid_t join = fork();
  if (join < 0) return setup_failed("fork");
  if (join == 0) {
    close(jp[0]);
    return joiner(pid, argv[1], jp[1]);
  }
  close(jp[1]);
  if (read(jp[0], &c, 1) != 1) return setup_failed("joiner setup");
  printf("ready\n");
  wait_check();
  int jst = 0;
  waitpid(join, &jst, 0);
  report(WIFEXITED(jst) && WEXITSTATUS(jst) == 0, "joiner-passed", "joiner status 0x%x", jst);
  report(!is_tmpfs("m"), "parent-no-tmpfs", "the child's tmpfs on DIR/m is seen by the parent");
  report(!shm_read_only(), "parent-shm-writable", "the parent's /dev/shm is read-only");
  if (read(up[0], &c, 1) != 1) c = 'x';
  report(c == 'm' && !is_tmpfs("m2"), "child-mount-unseen", "child's mount after restore: %s", c == 'm' ? "seen by the parent" : "failed");
  if (write(down[1], "k", 1) != 1) perror("write");
  int st = 0;
  waitpid(pid, &st, 0);
  report(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child-passed", "child status 0x%x", st);
  return result();
}
