/* counter: counts in a loop and sleeps between counts, printing "tick N" each time.
 * The sleep is the syscall a checkpointer usually interrupts; any error it returns is printed
 * as "ERR ..." so a test can see that no EINTR or kernel restart code leaked into the program.
 *   counter nanosleep|clock|read  [ms]
 * nanosleep: nanosleep() (restarted through restart_syscall, -ERESTART_RESTARTBLOCK)
 * clock:     clock_nanosleep(CLOCK_MONOTONIC, 0) (same restart path)
 * read:      poll-free blocking read() on a pipe that a helper thread-less alarm fills (-ERESTARTSYS)
 * It also installs a SIGUSR2 handler (SA_RESTART, mask SIGTERM) so its disposition can be read;
 * after a SIGUSR2 was handled it prints "USR2" once. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr2_seen;
static void on_usr2(int sig) { (void)sig; usr2_seen = 1; }
static int pipefd[2];
static void on_alarm(int sig) { (void)sig; char c = 'x'; (void)!write(pipefd[1], &c, 1); }

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "nanosleep";
  long ms = argc > 2 ? atol(argv[2]) : 20;
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_usr2;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaction(SIGUSR2, &sa, NULL);
  if (!strcmp(mode, "read")) {
    if (pipe(pipefd)) { perror("pipe"); return 1; }
    struct sigaction al;
    memset(&al, 0, sizeof al);
    al.sa_handler = on_alarm;
    al.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &al, NULL);
    struct itimerval it = { { ms / 1000, (ms % 1000) * 1000 }, { ms / 1000, (ms % 1000) * 1000 } };
    setitimer(ITIMER_REAL, &it, NULL);
  }
  printf("ready %d\n", getpid());
  for (unsigned long n = 1;; n++) {
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    int r;
    if (!strcmp(mode, "clock")) {
      r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
      if (r) { printf("ERR clock_nanosleep %d\n", r); }
    } else if (!strcmp(mode, "read")) {
      char c;
      ssize_t got = read(pipefd[0], &c, 1);
      if (got != 1) printf("ERR read %zd %d\n", got, errno);
    } else {
      r = nanosleep(&ts, NULL);
      if (r) printf("ERR nanosleep %d %d\n", r, errno);
    }
    if (usr2_seen) { usr2_seen = 0; printf("USR2\n"); }
    printf("tick %lu\n", n);
  }
}
