/* userns-tree: a process tree inside two nested user namespaces with maps that are not identity,
 * which checks itself once DIR/check appears (after restore): "ok ITEM"/"FAIL ITEM: why", "result".
 *   userns-tree DIR [one|threaded|ipcns|netns]
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
 * With `ipcns`, P3 unshares an ipc and a uts namespace while in N1 (so N1 owns them), names its
 * uts namespace p3-host/p3-domain and, with euid/egid 1003/1004 (N1's), makes (after one of each
 * made and removed: ids that are not the first) a SysV shm segment (8192 bytes, "segment of P3"
 * at its start, kept attached), a set of 3 semaphores (3 1 4) and a message queue with two
 * messages, of modes 0640, 0660 and 0620, each then given owner 1005:1006. It checks after
 * restore ("p3-ipc") that each has its id, owner, creator and mode as N1 sees them, its contents
 * (the attached segment's bytes, the values, the messages in order), the names, and that N1 owns
 * both namespaces (NS_GET_USERNS); the root ("root-ipc", in the host's ipc namespace) does not
 * see the objects.
 * With `netns`, P3 unshares a network namespace while in N1 (refused at dump). */
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
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
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

/* P3's SysV objects (ipcns mode): their ids, and the segment as attached. */
static int shm_id = -1, sem_id = -1, msg_id = -1;
static char *shm_at;
#define SEG_TEXT "segment of P3"

union semun { int val; struct semid_ds *buf; unsigned short *array; };

/* Made in P3's new ipc namespace, as 1003:1004 of N1; then owned by 1005:1006. */
static int make_sysv(void) {
  /* (one of each made and removed first: the ids are not the first ones) */
  if (shmctl(shmget(IPC_PRIVATE, 4096, 0600), IPC_RMID, NULL) || semctl(semget(IPC_PRIVATE, 1, 0600), 0, IPC_RMID) ||
      msgctl(msgget(IPC_PRIVATE, 0600), IPC_RMID, NULL)) return -1;
  if (setresgid(-1, 1004, -1) || setresuid(-1, 1003, -1)) return -1;
  shm_id = shmget(0x5353, 8192, IPC_CREAT | IPC_EXCL | 0640);
  sem_id = semget(0x5354, 3, IPC_CREAT | IPC_EXCL | 0660);
  msg_id = msgget(0x5355, IPC_CREAT | IPC_EXCL | 0620);
  if (setresuid(-1, 0, -1) || setresgid(-1, 0, -1) || shm_id < 0 || sem_id < 0 || msg_id < 0) return -1;
  shm_at = shmat(shm_id, NULL, 0);
  if (shm_at == (void *)-1) return -1;
  strcpy(shm_at, SEG_TEXT);
  unsigned short vals[3] = { 3, 1, 4 };
  if (semctl(sem_id, 0, SETALL, (union semun){ .array = vals })) return -1;
  struct { long mtype; char text[16]; } m1 = { 1, "first" }, m2 = { 2, "second" };
  if (msgsnd(msg_id, &m1, 6, 0) || msgsnd(msg_id, &m2, 7, 0)) return -1;
  struct shmid_ds sd; struct semid_ds ssd; struct msqid_ds md;
  if (shmctl(shm_id, IPC_STAT, &sd) || semctl(sem_id, 0, IPC_STAT, (union semun){ .buf = &ssd }) || msgctl(msg_id, IPC_STAT, &md)) return -1;
  sd.shm_perm.uid = ssd.sem_perm.uid = md.msg_perm.uid = 1005;
  sd.shm_perm.gid = ssd.sem_perm.gid = md.msg_perm.gid = 1006;
  if (shmctl(shm_id, IPC_SET, &sd) || semctl(sem_id, 0, IPC_SET, (union semun){ .buf = &ssd }) || msgctl(msg_id, IPC_SET, &md)) return -1;
  return 0;
}

/* Whether this task's user namespace owns its namespace of `kind` (NS_GET_USERNS). */
static const char *owned_by_mine(const char *kind) {
  char path[64];
  struct stat mine, owner;
  snprintf(path, sizeof path, "/proc/self/ns/%s", kind);
  int fd = open(path, O_RDONLY);
  int u = fd < 0 ? -1 : ioctl(fd, _IO(0xb7, 0x1));
  int ok = u >= 0 && !fstat(u, &owner) && !stat("/proc/self/ns/user", &mine) && owner.st_ino == mine.st_ino;
  if (fd >= 0) close(fd);
  if (u >= 0) close(u);
  return ok ? "mine" : "not mine";
}

/* What P3 sees of its ipc and uts namespaces. */
static void ipc_state(char *out, size_t n) {
  struct shmid_ds sd; struct semid_ds ssd; struct msqid_ds md;
  struct utsname u;
  unsigned short vals[3] = { 0 };
  char dom[65] = "";
  uname(&u);
  if (getdomainname(dom, sizeof dom)) snprintf(dom, sizeof dom, "(%s)", strerror(errno));
  int len = snprintf(out, n, "uts %s/%s owner %s, ipc owner %s", u.nodename, dom, owned_by_mine("uts"), owned_by_mine("ipc"));
  if (shmctl(shm_id, IPC_STAT, &sd)) len += snprintf(out + len, n - len, " | shm %d: %s", shm_id, strerror(errno));
  else len += snprintf(out + len, n - len, " | shm %d key %x owner %u:%u creator %u:%u mode %o size %zu nattch %lu at '%s'",
                       shm_id, sd.shm_perm.__key, sd.shm_perm.uid, sd.shm_perm.gid, sd.shm_perm.cuid, sd.shm_perm.cgid,
                       sd.shm_perm.mode & 0777, sd.shm_segsz, (unsigned long)sd.shm_nattch, shm_at);
  if (semctl(sem_id, 0, IPC_STAT, (union semun){ .buf = &ssd }) || semctl(sem_id, 0, GETALL, (union semun){ .array = vals }))
    len += snprintf(out + len, n - len, " | sem %d: %s", sem_id, strerror(errno));
  else len += snprintf(out + len, n - len, " | sem %d key %x owner %u:%u creator %u:%u mode %o nsems %lu values %u %u %u",
                       sem_id, ssd.sem_perm.__key, ssd.sem_perm.uid, ssd.sem_perm.gid, ssd.sem_perm.cuid, ssd.sem_perm.cgid,
                       ssd.sem_perm.mode & 0777, (unsigned long)ssd.sem_nsems, vals[0], vals[1], vals[2]);
  if (msgctl(msg_id, IPC_STAT, &md)) len += snprintf(out + len, n - len, " | msg %d: %s", msg_id, strerror(errno));
  else snprintf(out + len, n - len, " | msg %d key %x owner %u:%u creator %u:%u mode %o qnum %lu cbytes %lu",
                msg_id, md.msg_perm.__key, md.msg_perm.uid, md.msg_perm.gid, md.msg_perm.cuid, md.msg_perm.cgid,
                md.msg_perm.mode & 0777, (unsigned long)md.msg_qnum, (unsigned long)md.__msg_cbytes);
}

/* After restore: the same state, and the objects work (messages in order, a fresh attachment). */
static void ipc_check(int res, const char *before) {
  char after[1024], want[64];
  ipc_state(after, sizeof after);
  if (strcmp(before, after)) { dprintf(res, "FAIL before [%s] after [%s]\n", before, after); return; }
  struct { long mtype; char text[16]; } m = { 0, "" };
  ssize_t n1 = msgrcv(msg_id, &m, sizeof m.text, 0, IPC_NOWAIT);
  snprintf(want, sizeof want, "%ld:%s", m.mtype, n1 > 0 ? m.text : "");
  ssize_t n2 = msgrcv(msg_id, &m, sizeof m.text, 0, IPC_NOWAIT);
  snprintf(want + strlen(want), sizeof want - strlen(want), " %ld:%s", m.mtype, n2 > 0 ? m.text : "");
  char *again = shmat(shm_id, NULL, SHM_RDONLY);
  struct sembuf op = { 1, -1, IPC_NOWAIT };
  int sem_ok = semop(sem_id, &op, 1) == 0 && semctl(sem_id, 1, GETVAL) == 0;
  if (strcmp(want, "1:first 2:second") || again == (void *)-1 || strcmp(again, SEG_TEXT) || !sem_ok ||
      strstr(before, "owner 1005:1006 creator 1003:1004") == NULL || !strstr(before, "uts p3-host/p3-domain owner mine, ipc owner mine") ||
      !strstr(before, "values 3 1 4") || !strstr(before, "mode 640 size 8192 nattch 1 at '" SEG_TEXT "'"))
    dprintf(res, "FAIL state [%s], messages %s, segment %s, semop %d\n", after, want, again == (void *)-1 ? "not attached" : again, sem_ok);
  else dprintf(res, "ok\n");
}

/* Child side: record, say "set" over `res`, wait for the check, compare, report one line each. */
static void child_check(int res, const char *files[][2], int nfiles, int sock) {
  char before[3072], after[3072];
  char own_before[4][32], own_after[32], ipc_before[1024];
  if (shm_id >= 0) ipc_state(ipc_before, sizeof ipc_before);
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
  if (shm_id >= 0) ipc_check(res, ipc_before);
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
  int ipcns = argc > 2 && !strcmp(argv[2], "ipcns");
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
    if (ipcns && (unshare(CLONE_NEWIPC | CLONE_NEWUTS) || sethostname("p3-host", 7) || setdomainname("p3-domain", 9) || make_sysv())) {
      dprintf(r3[1], "FAIL P3 ipc and uts namespaces: %s\n", strerror(errno));
      _exit(1);
    }
    if (argc > 2 && !strcmp(argv[2], "netns") && unshare(CLONE_NEWNET)) { dprintf(r3[1], "FAIL P3 net namespace: %s\n", strerror(errno)); _exit(1); }
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
  if (ipcns) {
    child_line(res[2], "p3-ipc");
    /* (the root, in the host's ipc namespace, has not the key P3's segment has in its own) */
    int seen = shmget(0x5353, 0, 0);
    report(seen < 0 && errno == ENOENT, "root-ipc", "the root sees P3's segment key as id %d", seen);
  }
  pid_t kids[] = { p1, p2, p3 };
  for (int i = 0; i < 3; i++) {
    int ws;
    report(waitpid(kids[i], &ws, 0) == kids[i] && WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child-exit", "child %d: status 0x%x", kids[i], ws);
  }
  return result();
}
