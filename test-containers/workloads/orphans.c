/* orphans: processes whose session or group leader has exited. The root R is a child subreaper.
 * A (own group) forks B, then A exits: B stays in group A, which has no leader.
 * C (setsid) forks D, then C exits: D stays in session C (and group C), which has no leader.
 * Both B and D are re-parented to R. After DIR/check appears, B and D report their ids to R,
 * which checks them, checks it has no other children, and prints ok/FAIL lines and result.
 *   orphans DIR */
#define _GNU_SOURCE
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "selfcheck.h"


int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  int rb[2], rd[2];
  if (pipe(rb) || pipe(rd)) return 2;
  pid_t a = fork();
  if (a == 0) {
    setpgid(0, 0);
    if (fork() == 0) { /* B */
      wait_check();
      dprintf(rb[1], "%d %d %d\n", getpgrp(), getsid(0), getppid());
      for (;;) pause();
    }
    _exit(0);
  }
  pid_t c = fork();
  if (c == 0) {
    setsid();
    if (fork() == 0) { /* D */
      wait_check();
      dprintf(rd[1], "%d %d %d\n", getpgrp(), getsid(0), getppid());
      for (;;) pause();
    }
    _exit(0);
  }
  int st;
  waitpid(a, &st, 0);
  waitpid(c, &st, 0);
  /* wait for B and D to be re-parented to us */
  for (int tries = 0; tries < 500; tries++) {
    char buf[256] = {0}; FILE *f;
    snprintf(buf, sizeof buf, "/proc/self/task/%d/children", getpid());
    f = fopen(buf, "r"); int n = 0; int x;
    if (f) { while (fscanf(f, "%d", &x) == 1) n++; fclose(f); }
    if (n == 2) break;
    nap(10);
  }
  printf("ready %d a=%d c=%d\n", getpid(), a, c);
  wait_check();
  int g, s, pp;
  FILE *fb = fdopen(rb[0], "r"), *fd = fdopen(rd[0], "r");
  report(fscanf(fb, "%d %d %d", &g, &s, &pp) == 3 && g == a && s == getpid() && pp == getpid(),
         "group-without-leader", "B: pgrp %d sid %d ppid %d (want %d %d %d)", g, s, pp, a, getpid(), getpid());
  report(fscanf(fd, "%d %d %d", &g, &s, &pp) == 3 && g == c && s == c && pp == getpid(),
         "session-without-leader", "D: pgrp %d sid %d ppid %d (want %d %d %d)", g, s, pp, c, c, getpid());
  report(prctl(PR_GET_CHILD_SUBREAPER, &g) == 0 && g == 1, "subreaper", "flag %d", g);
  kill(-a, SIGKILL);
  kill(-c, SIGKILL);
  int reaped = 0;
  for (;;) { pid_t w = waitpid(-1, &st, 0); if (w < 0) break; reaped++; }
  report(reaped == 2, "no-helper-left", "reaped %d children, want 2", reaped);
  return result();
}
