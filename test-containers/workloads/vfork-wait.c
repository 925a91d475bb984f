/* vfork-wait: a parent that cannot be stopped for a while. It vforks; the child sleeps SECONDS
 * (default 30) before it exits, and until then the parent waits for it in the kernel, where
 * neither a signal nor a ptrace interrupt reaches it (a killable, not interruptible, wait).
 * Prints "ready PID" just before the vfork (a test waits for the child to show up in /proc).
 * A checkpointer trying to stop the parent waits until its timeout.
 *   vfork-wait [SECONDS] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long seconds = argc > 1 ? atol(argv[1]) : 30;
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready %d\n", getpid());
  pid_t child = vfork();
  if (child == 0) {
    /* Only async-signal-safe calls in the vfork child, which runs on the parent's memory. */
    struct timespec ts = { seconds, 0 };
    while (nanosleep(&ts, &ts) != 0) {}
    _exit(0);
  }
  printf("child done\n");
  return 0;
}
