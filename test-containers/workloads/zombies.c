/* zombies: children that are dead and not yet reaped, each with its own way of dying; the
 * parent collects them once DIR/check appears (after restore) and checks what wait reports.
 *   zombies DIR [other-uid]
 * Children: exit(0); exit(3); killed by SIGKILL, by SIGSEGV (a write through NULL; no core
 * dump: RLIMIT_CORE 0) and by SIGTERM, each its own doing; with other-uid, one more that exits(7)
 * as uid 4321 (gid 4322) when the parent is root, else as the parent's uid (CRIU's restore gives
 * every zombie its own ids). None leaves a core file in DIR, the cwd they share with the parent.
 * The uid wait reports of each (si_uid) is checked too. Prints "ready PID child=PID,...". */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

struct death { const char *name; int exited; int code; int other_uid; };

static void die(const struct death *d) {
  struct rlimit none = { 0, 0 };
  setrlimit(RLIMIT_CORE, &none);
  if (d->other_uid && getuid() == 0 && (setresgid(4322, 4322, 4322) || setresuid(4321, 4321, 4321))) _exit(100);
  if (d->exited) _exit(d->code);
  if (d->code == SIGSEGV) *(volatile int *)NULL = 0;
  kill(getpid(), d->code);
  _exit(100); /* not reached */
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  static const struct death deaths[] = {
    { "exit-0", 1, 0 }, { "exit-3", 1, 3 }, { "sigkill", 0, SIGKILL }, { "sigsegv", 0, SIGSEGV }, { "sigterm", 0, SIGTERM },
    { "exit-as-other", 1, 7, 1 },
  };
  const int N = sizeof deaths / sizeof *deaths - (argc > 2 && !strcmp(argv[2], "other-uid") ? 0 : 1);
  pid_t kids[sizeof deaths / sizeof *deaths];
  char list[256] = "";
  for (int i = 0; i < N; i++) {
    kids[i] = fork();
    if (kids[i] < 0) { perror("fork"); return 2; }
    if (kids[i] == 0) die(&deaths[i]);
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "", kids[i]);
  }
  /* Each one dead before the dump: waited for without being reaped. */
  for (int i = 0; i < N; i++) {
    siginfo_t si;
    if (waitid(P_PID, kids[i], &si, WEXITED | WNOWAIT)) { perror("waitid"); return 2; }
  }
  printf("ready %d child=%s\n", getpid(), list);
  wait_check();

  for (int i = 0; i < N; i++) {
    const struct death *d = &deaths[i];
    siginfo_t si;
    memset(&si, 0, sizeof si);
    uid_t uid = d->other_uid && getuid() == 0 ? 4321 : getuid();
    char item[64];
    snprintf(item, sizeof item, "%s-uid", d->name);
    report(!waitid(P_PID, kids[i], &si, WEXITED | WNOWAIT) && si.si_uid == uid, item, "si_uid %u, not %u", si.si_uid, uid);
    int st = 0;
    pid_t got = waitpid(kids[i], &st, WNOHANG);
    int ok = got == kids[i] && (d->exited ? WIFEXITED(st) && WEXITSTATUS(st) == d->code
                                          : WIFSIGNALED(st) && WTERMSIG(st) == d->code && !WCOREDUMP(st));
    report(ok, d->name, "waitpid %d, status %#x", got, st);
  }
  report(waitpid(-1, NULL, WNOHANG) == -1, "no-other-children", "a child is left");
  report(access("core", F_OK) != 0, "no-core-file", "DIR/core exists");
  return result();
}
