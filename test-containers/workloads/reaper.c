/* reaper: run a workload under a child subreaper so that every process it (or stasis, on restore)
 * leaves behind is reaped here, not by the machine's PID 1 (which reaps lazily).
 * Prints "pid N" for the started workload, then "exit PID CODE" / "signal PID SIG" for every
 * process it reaps. Exits when it has no children left. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: reaper PROGRAM [ARGS...]\n"); return 2; }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) { perror("prctl"); return 1; }
  setvbuf(stdout, NULL, _IOLBF, 0);
  pid_t child = fork();
  if (child < 0) { perror("fork"); return 1; }
  if (child == 0) {
    setsid();
    execv(argv[1], argv + 1);
    perror("execv");
    _exit(127);
  }
  printf("pid %d\n", child);
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, __WALL);
    if (p < 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) return 0;
      perror("waitpid");
      return 1;
    }
    if (WIFEXITED(st)) printf("exit %d %d\n", p, WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) printf("signal %d %d\n", p, WTERMSIG(st));
  }
}
