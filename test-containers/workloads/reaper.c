/* reaper: run a program under a child subreaper so that every process it (or stasis, on
 * restore) leaves behind is reaped here, not by the machine's PID 1 (which reaps lazily).
 * The program's stdout and stderr are one real pipe (not the socket Node gives its children),
 * relayed to our stdout, so a restore can hand that pipe over with --inherit-fd pipe:[INO].
 * Prints "pid N" for the started program, then "exit PID CODE" / "signal PID SIG" for every
 * process it reaps. Exits when it has no children left and the pipe has no writer. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int out_fd = -1, open_pipe = 1;
static char buf[65536];
static size_t held;

/* Read what the pipe has (waiting up to timeout_ms) and pass on whole lines only, so our own
 * lines never split the program's. Returns the bytes read (0: nothing, or the pipe closed). */
static ssize_t relay(int timeout_ms) {
  if (!open_pipe) return 0;
  struct pollfd pfd = { out_fd, POLLIN, 0 };
  if (poll(&pfd, 1, timeout_ms) <= 0) return 0;
  ssize_t got = read(out_fd, buf + held, sizeof buf - held);
  if (got <= 0) { open_pipe = 0; return 0; }
  held += got;
  size_t last = held;
  while (last > 0 && buf[last - 1] != '\n') last--;
  if (last > 0 || held == sizeof buf) {
    size_t w = last ? last : held;
    fwrite(buf, 1, w, stdout);
    fflush(stdout);
    for (size_t i = w; i < held; i++) buf[i - w] = buf[i];
    held -= w;
  }
  return got;
}

static void reap(int *children_left) {
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG | __WALL);
    if (p == 0) return;
    if (p < 0) { if (errno == ECHILD) *children_left = 0; return; }
    /* Everything the process wrote before it ended is in the pipe now: passed on first, so
     * its "exit" line comes after its output. */
    while (relay(0) > 0) {}
    if (WIFEXITED(st)) printf("exit %d %d\n", p, WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) printf("signal %d %d\n", p, WTERMSIG(st));
  }
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: reaper PROGRAM [ARGS...]\n"); return 2; }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) { perror("prctl"); return 1; }
  setvbuf(stdout, NULL, _IOLBF, 0);
  int out[2];
  if (pipe(out)) { perror("pipe"); return 1; }
  pid_t child = fork();
  if (child < 0) { perror("fork"); return 1; }
  if (child == 0) {
    setsid();
    dup2(out[1], 1);
    dup2(out[1], 2);
    close(out[0]);
    close(out[1]);
    execv(argv[1], argv + 1);
    perror("execv");
    _exit(127);
  }
  close(out[1]);
  printf("pid %d\n", child);
  out_fd = out[0];
  int children = 1;
  while (children || open_pipe) {
    if (open_pipe) relay(10);
    else usleep(10000);
    reap(&children);
  }
  if (held) fwrite(buf, 1, held, stdout);
  return 0;
}
