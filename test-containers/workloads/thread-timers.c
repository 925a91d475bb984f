/* thread-timers: POSIX timers whose signal goes to one thread (SIGEV_THREAD_ID) and a glibc
 * SIGEV_THREAD timer (glibc runs it through a helper thread that the kernel signals by its tid),
 * checked by the process itself once DIR/check appears (after restore).
 *   thread-timers DIR
 * Timer A: CLOCK_MONOTONIC every 20 ms, SIGRTMIN+4 with value 0x77 to worker thread W (every
 * thread blocks the signal; W waits for it after the check, and it must not be pending for the
 * main thread). Timer B: SIGEV_THREAD every 10 ms, its function adds 1 to an eventfd; it has
 * fired before the dump (so glibc's helper thread exists), and must fire again after. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "selfcheck.h"

#define SIG_A (SIGRTMIN + 4)
static volatile pid_t w_tid;
static volatile int w_ok = -1;
static char w_msg[160];
static int efd;

static void *worker(void *arg) {
  (void)arg;
  w_tid = (pid_t)syscall(SYS_gettid);
  wait_check();
  sigset_t s; sigemptyset(&s); sigaddset(&s, SIG_A);
  siginfo_t si; struct timespec to = { 2, 0 };
  int r = sigtimedwait(&s, &si, &to);
  w_ok = r == SIG_A && si.si_code == SI_TIMER && si.si_value.sival_int == 0x77;
  snprintf(w_msg, sizeof w_msg, "r %d code %d value %#x", r, si.si_code, si.si_value.sival_int);
  return NULL;
}

static void on_timer_b(union sigval v) {
  (void)v;
  uint64_t one = 1;
  if (write(efd, &one, sizeof one) != sizeof one) _exit(3);
}

/* One read of the eventfd, waiting at most 2 s: the count read, or 0. */
static uint64_t next_count(void) {
  struct pollfd p = { efd, POLLIN, 0 };
  uint64_t n = 0;
  if (poll(&p, 1, 2000) == 1 && read(efd, &n, sizeof n) != sizeof n) n = 0;
  return n;
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  sigset_t block; sigemptyset(&block); sigaddset(&block, SIG_A);
  pthread_sigmask(SIG_BLOCK, &block, NULL);
  pthread_t w;
  pthread_create(&w, NULL, worker, NULL);
  while (!w_tid) nap(1);

  timer_t a, b;
  struct sigevent ea; memset(&ea, 0, sizeof ea);
  ea.sigev_notify = SIGEV_THREAD_ID; ea.sigev_signo = SIG_A; ea.sigev_value.sival_int = 0x77;
  ea._sigev_un._tid = w_tid;
  if (timer_create(CLOCK_MONOTONIC, &ea, &a)) { perror("timer A"); return 2; }
  struct itimerspec sa = { { 0, 20000000 }, { 0, 20000000 } };
  timer_settime(a, 0, &sa, NULL);

  efd = eventfd(0, 0);
  struct sigevent eb; memset(&eb, 0, sizeof eb);
  eb.sigev_notify = SIGEV_THREAD; eb.sigev_notify_function = on_timer_b;
  if (timer_create(CLOCK_MONOTONIC, &eb, &b)) { perror("timer B"); return 2; }
  struct itimerspec sb = { { 0, 10000000 }, { 0, 10000000 } };
  timer_settime(b, 0, &sb, NULL);
  if (!next_count()) { fprintf(stderr, "timer B never fired\n"); return 2; }
  printf("ready %d worker=%d\n", getpid(), w_tid);
  wait_check();

  struct itimerspec cur;
  report(timer_gettime(a, &cur) == 0 && cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 20000000,
         "thread-timer-interval", "interval %ld.%09ld", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
  nap(50);
  sigset_t pending; sigpending(&pending);
  report(!sigismember(&pending, SIG_A), "thread-timer-not-for-main", "pending for the main thread or the process");
  pthread_join(w, NULL);
  report(w_ok == 1, "thread-timer-fires-in-worker", "%s", w_msg);
  report(timer_gettime(b, &cur) == 0 && cur.it_interval.tv_nsec == 10000000, "sigev-thread-interval",
         "interval %ld", cur.it_interval.tv_nsec);
  next_count(); /* what fired since the restore */
  report(next_count() > 0, "sigev-thread-fires", "no run of the function within 2 s");
  return result();
}
