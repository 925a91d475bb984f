/* userns-tree: a process tree inside two nested user namespaces with maps that are not identity,
 * which checks itself once DIR/check appears (after restore): "ok ITEM"/"FAIL ITEM: why", "result".
 *   userns-tree DIR [one|threaded|ipcns]
 * The root (started as the host's root) unshares user namespace N1; a helper child still outside
 * writes N1's maps: uid "0 100000 1000" + "1000 300000 1000", gid "0 200000 2000", setgroups
 * allowed. The root becomes 0:0 (groups 0, 1) in N1, makes DIR/u/f1 owned by 1001:1002 there and
 * a unix socketpair, then forks:
 *   P1: unshares N2 inside N1 (N1's 1000-1499, so it sees f1 as 1:65534); the root writes N2's maps (uid "0 1000 500", gid "0 500 500",
 *       setgroups denied). P1 makes DIR/u/f2 owned by 3:4 (N2), keeps capabilities across
 *       setresuid(5,6,5)/setresgid(7,8,9) (KEEP_CAPS), then sets eff CHOWN|FOWNER, prm
 *       CHOWN|FOWNER|KILL, inh KILL, and drops NET_RAW from its bounding set. It holds the
 *       socketpair's other end, with "hello" queued for it.
 *   P2: groups 10, 20; gids 30/31/32; uids 40/41/42 (every capability gone).
 *   P3: uid 0, but SYS_ADMIN and MKNOD dropped from its bounding set and SYS_ADMIN from its
 *       effective set.
 * Each records its credentials, Cap* lines, uid_map, gid_map and setgroups before `ready` and
 * compares them after restore, with the ownership of the files as it sees them. With `one`, P1
 * stays in N1 (one user namespace, as CRIU dumps them): its ids are then N1's 5/6/5 and 7/8/9.
 * With `threaded`, the root and P1 have a second thread each, whose TID and credentials the
 * process checks after restore ("root-thread", and P1's within "p1-state");
 * with `ipcns`, P3 unshares an ipc namespace, owned by N1 (refused too). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

/* The whole file, '\n' turned to '|'. */
static void slurp(const char *path, char *out, size_t n) {
  out[0] = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) { snprintf(out, n, "(%s: %s)", path, strerror(errno)); return; }
  ssize_t got = read(fd, out, n - 1);
  close(fd);
  out[got > 0 ? got : 0] = 0;
  for (char *c = out; *c; c++) if (*c == '\n') *c = '|';
}

/* Every line of a status file starting with one of Uid Gid Groups Cap NoNewPrivs. */
static void status_lines(const char *path, char *out, size_t n) {
  FILE *f = fopen(path, "r");
  char line[256];
  size_t used = 0;
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "Uid", 3) && strncmp(line, "Gid", 3) && strncmp(line, "Groups", 6) && strncmp(line, "Cap", 3) && strncmp(line, "NoNewPrivs", 10)) continue;
    line[strcspn(line, "\n")] = '|';
    used += snprintf(out + used, n - used, "%s", line);
    if (used >= n) break;
  }
  if (f) fclose(f);
}

/* What a task sees of itself: ids through the calls, its status lines, its namespace's maps. */
static void state(char *out, size_t n) {
  uid_t r, e, s; gid_t gr, ge, gs;
  getresuid(&r, &e, &s);
  getresgid(&gr, &ge, &gs);
  gid_t groups[16];
  int ng = getgroups(16, groups);
  char st[1024], um[256], gm[256], sg[32];
  status_lines("/proc/self/status", st, sizeof st);
  slurp("/proc/self/uid_map", um, sizeof um);
  slurp("/proc/self/gid_map", gm, sizeof gm);
  slurp("/proc/self/setgroups", sg, sizeof sg);
  int len = snprintf(out, n, "uids %u %u %u fs %d gids %u %u %u fs %d groups", r, e, s, setfsuid(-1), gr, ge, gs, setfsgid(-1));
  for (int i = 0; i < ng; i++) len += snprintf(out + len, n - len, " %u", groups[i]);
  snprintf(out + len, n - len, " | %s uid_map %s gid_map %s setgroups %s keepcaps %d dumpable %d", st, um, gm, sg, prctl(PR_GET_KEEPCAPS), prctl(PR_GET_DUMPABLE));
}

/* The file's owner as this task sees it, "uid:gid". */
static void owner(const char *path, char *out, size_t n) {
  struct stat sb;
  if (stat(path, &sb)) snprintf(out, n, "(%s)", strerror(errno));
  else snprintf(out, n, "%u:%u", sb.st_uid, sb.st_gid);
}

static int write_file(pid_t pid, const char *name, const char *text) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
  int fd = open(path, O_WRONLY);
  if (fd < 0) return -1;
  int ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
  close(fd);
  return ok ? 0 : -1;
}

static int capset_sets(uint64_t eff, uint64_t prm, uint64_t inh) {
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2] = {
    { (uint32_t)eff, (uint32_t)prm, (uint32_t)inh }, { (uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32) },
  };
  return syscall(SYS_capset, &h, d);
}

#define BIT(c) (1ULL << (c))

static volatile pid_t thread_tid;
static void *idle(void *a) { thread_tid = gettid(); for (;;) pause(); return a; }

/* The second thread (if any) as the process sees it: its TID and its status lines. */
static void thread_state(char *out, size_t n) {
  if (!thread_tid) { snprintf(out, n, "no thread"); return; }
  char path[64], st[1024];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", thread_tid);
  status_lines(path, st, sizeof st);
  snprintf(out, n, "thread %d %s", thread_tid, st);
}

static void start_thread(void) {
  pthread_t th;
  if (pthread_create(&th, NULL, idle, NULL)) return;
  while (!thread_tid) nap(1);
}

/* Child side: record, say "set" over `res`, wait for the check, compare, report one line each. */
static void child_check(int res, const char *files[][2], int nfiles, int sock) {
  char before[3072], after[3072];
  char own_before[4][32], own_after[32];
  state(before, sizeof before);
  thread_state(before + strlen(before), sizeof before - strlen(before));
  for (int i = 0; i < nfiles; i++) owner(files[i][0], own_before[i], sizeof own_before[i]);
  dprintf(res, "set\n");
  wait_check();
  state(after, sizeof after);
  thread_state(after + strlen(after), sizeof after - strlen(after));
  if (strcmp(before, after)) dprintf(res, "FAIL state: before [%s] after [%s]\n", before, after);
  else dprintf(res, "ok\n");
  for (int i = 0; i < nfiles; i++) {
    owner(files[i][0], own_after, sizeof own_after);
    if (strcmp(own_after, files[i][1]) || strcmp(own_after, own_before[i])) dprintf(res, "FAIL %s owned by %s, was %s, want %s\n", files[i][0], own_after, own_before[i], files[i][1]);
    else dprintf(res, "ok\n");
  }
  if (sock >= 0) {
    char buf[16] = {0};
    ssize_t n = recv(sock, buf, sizeof buf, MSG_DONTWAIT);
    if (n != 5 || memcmp(buf, "hello", 5) || send(sock, "back", 4, 0) != 4) dprintf(res, "FAIL socketpair: got %zd '%.*s'\n", n, (int)(n > 0 ? n : 0), buf);
    else dprintf(res, "ok\n");
  }
  _exit(0);
}

/* One line from a child's result pipe. */
static void child_line(FILE *f, const char *item) {
  char buf[4096];
  if (!fgets(buf, sizeof buf, f)) { report(0, item, "no answer"); return; }
  buf[strcspn(buf, "\n")] = 0;
  if (!strcmp(buf, "ok")) report(1, item, "%s", "");
  else report(0, item, "%s", buf);
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  int one = argc > 2 && !strcmp(argv[2], "one");
  /* (DIR searchable by the namespaces' ids, none of which is the host's root) */
  if (chmod(".", 0755) || mkdir("u", 0777) || chmod("u", 0777) || chown("u", 100000, 200000)) return setup_failed("DIR/u");

  /* N1: unshared by the root, mapped by a helper still outside. */
  int go[2], done[2];
  if (pipe(go) || pipe(done)) return setup_failed("pipe");
  pid_t root = getpid();
  pid_t h = fork();
  if (h == 0) {
    char c;
    if (read(go[0], &c, 1) != 1) _exit(1);
    if (write_file(root, "uid_map", "0 100000 1000\n1000 300000 1000\n") || write_file(root, "setgroups", "allow") ||
        write_file(root, "gid_map", "0 200000 2000\n")) _exit(1);
    _exit(0);
  }
  if (unshare(CLONE_NEWUSER)) return setup_failed("unshare N1");
  if (write(go[1], "g", 1) != 1) return setup_failed("pipe");
  int hs;
  if (waitpid(h, &hs, 0) != h || hs) return setup_failed("N1's maps");
  gid_t g01[] = { 0, 1 };
  if (setgroups(2, g01) || setresgid(0, 0, 0) || setresuid(0, 0, 0)) return setup_failed("root in N1");
  /* (changing uid made it not dumpable: its children's /proc files would be the host root's) */
  if (prctl(PR_SET_DUMPABLE, 1)) return setup_failed("dumpable");
  int f1 = open("u/f1", O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (f1 < 0 || fchown(f1, 1001, 1002)) return setup_failed("u/f1");
  close(f1);
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || send(sp[0], "hello", 5, 0) != 5) return setup_failed("socketpair");

  /* P1 in N2. */
  int r1[2], r2[2], r3[2], n2[2];
  if (pipe(r1) || pipe(r2) || pipe(r3) || pipe(n2)) return setup_failed("pipe");
  pid_t p1 = fork();
  if (p1 == 0) {
    close(sp[0]); close(r1[0]);
    gid_t g[] = { 500, 501 };
    if (setgroups(2, g)) _exit(3);
    if (!one && unshare(CLONE_NEWUSER)) { dprintf(r1[1], "FAIL unshare N2: %s\n", strerror(errno)); _exit(1); }
    if (write(n2[1], "u", 1) != 1) _exit(1);
    char c;
    if (read(done[0], &c, 1) != 1) _exit(1);
    if (setresgid(0, 0, 0) || setresuid(0, 0, 0)) { dprintf(r1[1], "FAIL root in N2: %s\n", strerror(errno)); _exit(1); }
    int f2 = open("u/f2", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (f2 < 0 || fchown(f2, 3, 4)) { dprintf(r1[1], "FAIL u/f2: %s\n", strerror(errno)); _exit(1); }
    close(f2);
    if (prctl(PR_SET_KEEPCAPS, 1) || prctl(PR_CAPBSET_DROP, CAP_NET_RAW) || setresgid(7, 8, 9) || setresuid(5, 6, 5) ||
        capset_sets(BIT(CAP_CHOWN) | BIT(CAP_FOWNER), BIT(CAP_CHOWN) | BIT(CAP_FOWNER) | BIT(CAP_KILL), BIT(CAP_KILL))) {
      dprintf(r1[1], "FAIL P1 credentials: %s\n", strerror(errno));
      _exit(1);
    }
    if (argc > 2 && !strcmp(argv[2], "threaded")) start_thread();
    const char *files[][2] = { { "u/f1", one ? "1001:1002" : "1:65534" }, { "u/f2", "3:4" } };
    child_check(r1[1], files, 2, sp[1]);
  }
  char c;
  if (read(n2[0], &c, 1) != 1) return setup_failed("N2 unshared");
  if (!one && (write_file(p1, "setgroups", "deny") || write_file(p1, "uid_map", "0 1000 500\n") || write_file(p1, "gid_map", "0 500 500\n")))
    return setup_failed("N2's maps");
  if (write(done[1], "m", 1) != 1) return setup_failed("pipe");
  close(sp[1]);
  /* P1's file exists before the others look at it. */
  FILE *res[3] = { fdopen(r1[0], "r"), fdopen(r2[0], "r"), fdopen(r3[0], "r") };
  char set[256];
  if (!fgets(set, sizeof set, res[0]) || strcmp(set, "set\n")) { printf("FAIL setup: child 1: %s", set); kill(p1, SIGKILL); return 1; }

  pid_t p2 = fork();
  if (p2 == 0) {
    gid_t g[] = { 10, 20 };
    if (setgroups(2, g) || setresgid(30, 31, 32) || setresuid(40, 41, 42)) { dprintf(r2[1], "FAIL P2 credentials: %s\n", strerror(errno)); _exit(1); }
    const char *files[][2] = { { "u/f1", "1001:1002" }, { "u/f2", one ? "3:4" : "1003:504" } };
    child_check(r2[1], files, 2, -1);
  }
  pid_t p3 = fork();
  if (p3 == 0) {
    if (argc > 2 && !strcmp(argv[2], "ipcns") && unshare(CLONE_NEWIPC)) { dprintf(r3[1], "FAIL P3 ipc namespace: %s\n", strerror(errno)); _exit(1); }
    uint64_t all = BIT(CAP_LAST_CAP + 1) - 1;
    if (prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN) || prctl(PR_CAPBSET_DROP, CAP_MKNOD) || capset_sets(all & ~BIT(CAP_SYS_ADMIN), all, 0)) {
      dprintf(r3[1], "FAIL P3 capabilities: %s\n", strerror(errno));
      _exit(1);
    }
    const char *files[][2] = { { "u/f1", "1001:1002" } };
    child_check(r3[1], files, 1, -1);
  }
  for (int i = 1; i < 3; i++) {
    if (!fgets(set, sizeof set, res[i]) || strcmp(set, "set\n")) {
      printf("FAIL setup: child %d: %s", i + 1, set);
      kill(p1, SIGKILL); kill(p2, SIGKILL); kill(p3, SIGKILL);
      return 1;
    }
  }
  char before[2048], after[2048], own[32];
  int threaded = argc > 2 && !strcmp(argv[2], "threaded");
  if (threaded) start_thread();
  char thread_before[1536], thread_after[1536];
  thread_state(thread_before, sizeof thread_before);
  state(before, sizeof before);
  printf("ready %d %d %d %d\n", getpid(), p1, p2, p3);
  wait_check();
  state(after, sizeof after);
  report(!strcmp(before, after), "root-state", "before [%s] after [%s]", before, after);
  if (threaded) {
    thread_state(thread_after, sizeof thread_after);
    char main_st[1024];
    status_lines("/proc/self/status", main_st, sizeof main_st);
    report(!strcmp(thread_before, thread_after) && strstr(thread_after, main_st), "root-thread", "before [%s] after [%s] process [%s]", thread_before, thread_after, main_st);
  }
  owner("u/f1", own, sizeof own);
  report(!strcmp(own, "1001:1002"), "root-file", "u/f1 owned by %s", own);
  child_line(res[0], "p1-state");
  child_line(res[0], "p1-file-f1");
  child_line(res[0], "p1-file-f2");
  child_line(res[0], "p1-socketpair");
  char buf[8] = {0};
  ssize_t n = recv(sp[0], buf, sizeof buf, 0);
  report(n == 4 && !memcmp(buf, "back", 4), "root-socketpair", "got %zd bytes", n);
  child_line(res[1], "p2-state");
  child_line(res[1], "p2-file-f1");
  child_line(res[1], "p2-file-f2");
  child_line(res[2], "p3-state");
  child_line(res[2], "p3-file-f1");
  pid_t kids[] = { p1, p2, p3 };
  for (int i = 0; i < 3; i++) {
    int ws;
    report(waitpid(kids[i], &ws, 0) == kids[i] && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child-exit", "child %d: status 0x%x", kids[i], ws);
  }
  return result();
}
