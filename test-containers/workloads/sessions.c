/* sessions: processes whose session was left behind by a parent that started a session of its
 * own after forking them, and a session whose leader is a zombie.
 *   sessions DIR
 * The root (a child subreaper, so orphans come to it) makes:
 *   - "after": a child that forks a grandchild, then calls setsid(): the grandchild stays in the
 *     root's session and group while its parent leads a session of its own;
 *   - "twice": a child that forks, then calls setsid(); its child forks again and calls setsid()
 *     too: the grandchild leads a session, the great-grandchild is in the root's session;
 *   - "own": a child that calls setsid() first, then forks: the grandchild is in its session;
 *   - "zombie": a child that calls setsid(), forks, and exits; the root leaves it a zombie
 *     (waitid WNOWAIT), its child (now the root's) stays in the zombie's session and group;
 *   - "deep": the same one level down: a grandchild leads a session, forks, and exits, left a
 *     zombie by its parent; its child comes to the root (the orphans' reaper), not to that parent.
 * Prints "ready", waits for DIR/check, then checks that every process has the session, group and
 * parent it had, the zombie is still a zombie with its exit status, and ends them all. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include "selfcheck.h"

struct proc { const char *name; pid_t pid, sid, pgid, ppid; };

#define MAX 16
static struct proc *procs; /* shared: children fill in their own rows */
static int nprocs;

static void sleep_forever(void) {
  for (;;) pause();
}

/* Record the calling process in row i (once its session and group are what they stay). */
static void record(int i, const char *name) {
  procs[i].pid = getpid();
  procs[i].sid = getsid(0);
  procs[i].pgid = getpgid(0);
  procs[i].ppid = getppid();
  __atomic_store_n(&procs[i].name, name, __ATOMIC_RELEASE);
}

static void wait_rows(int upto) {
  for (int i = 0; i < upto; i++) {
    while (!__atomic_load_n(&procs[i].name, __ATOMIC_ACQUIRE)) nap(2);
  }
}

/* The parent of a row once it is an orphan: the root. */
static void reparented(int i, pid_t to) {
  while (getppid() != to) nap(2);
  procs[i].ppid = to;
}

static pid_t ppid_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  char state;
  int ppid;
  if (!p || sscanf(p + 2, "%c %d", &state, &ppid) != 2) return -1;
  return ppid;
}

static char state_of(pid_t pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return '?';
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  return p ? p[2] : '?';
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");
  if (prctl(PR_SET_CHILD_SUBREAPER, 1)) return setup_failed("subreaper");
  procs = mmap(NULL, sizeof(struct proc) * MAX, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (procs == MAP_FAILED) return setup_failed("mmap");
  pid_t root = getpid();
  record(nprocs++, "root");

  /* after: fork, then setsid */
  int after = nprocs, after_gc = nprocs + 1;
  nprocs += 2;
  if (!fork()) {
    if (!fork()) { record(after_gc, "after-grandchild"); sleep_forever(); }
    while (!__atomic_load_n(&procs[after_gc].name, __ATOMIC_ACQUIRE)) nap(2);
    if (setsid() < 0) exit(1);
    record(after, "after");
    sleep_forever();
  }

  /* twice: fork, setsid; the child forks, then setsid */
  int twice = nprocs, twice_c = nprocs + 1, twice_gc = nprocs + 2;
  nprocs += 3;
  if (!fork()) {
    if (!fork()) {
      if (!fork()) { record(twice_gc, "twice-great-grandchild"); sleep_forever(); }
      while (!__atomic_load_n(&procs[twice_gc].name, __ATOMIC_ACQUIRE)) nap(2);
      if (setsid() < 0) exit(1);
      record(twice_c, "twice-grandchild");
      sleep_forever();
    }
    while (!__atomic_load_n(&procs[twice_c].name, __ATOMIC_ACQUIRE)) nap(2);
    if (setsid() < 0) exit(1);
    record(twice, "twice");
    sleep_forever();
  }

  /* own: setsid, then fork */
  int own = nprocs, own_gc = nprocs + 1;
  nprocs += 2;
  if (!fork()) {
    if (setsid() < 0) exit(1);
    record(own, "own");
    if (!fork()) { record(own_gc, "own-grandchild"); sleep_forever(); }
    sleep_forever();
  }

  /* zombie: setsid, fork, exit */
  int zombie = nprocs, orphan = nprocs + 1;
  nprocs += 2;
  pid_t z = fork();
  if (!z) {
    if (setsid() < 0) exit(1);
    record(zombie, "zombie-leader");
    if (!fork()) {
      record(orphan, "zombie-leader-orphan");
      reparented(orphan, root);
      sleep_forever();
    }
    while (!__atomic_load_n(&procs[orphan].name, __ATOMIC_ACQUIRE)) nap(2);
    exit(7);
  }
  /* deep: the zombie leader's parent is not its orphan's */
  int middle = nprocs, deep = nprocs + 1, deep_orphan = nprocs + 2;
  nprocs += 3;
  pid_t m = fork();
  if (!m) {
    pid_t dz = fork();
    if (!dz) {
      if (setsid() < 0) exit(1);
      record(deep, "deep-zombie-leader");
      if (!fork()) {
        record(deep_orphan, "deep-zombie-leader-orphan");
        reparented(deep_orphan, root);
        sleep_forever();
      }
      while (!__atomic_load_n(&procs[deep_orphan].name, __ATOMIC_ACQUIRE)) nap(2);
      exit(9);
    }
    siginfo_t dsi;
    if (waitid(P_PID, dz, &dsi, WEXITED | WNOWAIT)) exit(1);
    record(middle, "deep-zombie-parent");
    sleep_forever();
  }
  siginfo_t si;
  if (waitid(P_PID, z, &si, WEXITED | WNOWAIT)) return setup_failed("waitid zombie");
  wait_rows(nprocs);
  while (procs[orphan].ppid != root || procs[deep_orphan].ppid != root) nap(2);

  printf("ready\n");
  wait_check();

  for (int i = 0; i < nprocs; i++) {
    struct proc *p = &procs[i];
    char item[64];
    snprintf(item, sizeof item, "%s-session", p->name);
    pid_t sid = getsid(p->pid);
    report(sid == p->sid, item, "pid %d: session %d, not %d", p->pid, sid, p->sid);
    snprintf(item, sizeof item, "%s-group", p->name);
    pid_t pgid = getpgid(p->pid);
    report(pgid == p->pgid, item, "pid %d: group %d, not %d", p->pid, pgid, p->pgid);
    if (i == 0) continue;
    snprintf(item, sizeof item, "%s-parent", p->name);
    pid_t ppid = ppid_of(p->pid);
    report(ppid == p->ppid, item, "pid %d: parent %d, not %d", p->pid, ppid, p->ppid);
  }
  report(state_of(z) == 'Z', "zombie-leader-state", "pid %d is in state %c, not Z", z, state_of(z));
  int status = 0;
  pid_t got = waitpid(z, &status, WNOHANG);
  report(got == z && WIFEXITED(status) && WEXITSTATUS(status) == 7, "zombie-leader-status",
         "waitpid gave %d, status 0x%x", got, status);
  report(state_of(procs[deep].pid) == 'Z', "deep-zombie-leader-state", "pid %d is in state %c, not Z", procs[deep].pid, state_of(procs[deep].pid));
  for (int i = 1; i < nprocs; i++) if (procs[i].pid != z && i != deep) kill(procs[i].pid, SIGKILL);
  while (wait(NULL) > 0 || errno == EINTR) {}
  return result();
}
