/* timers: POSIX timers, an interval timer and queued signals with their siginfo, checked by the
 * process itself after restore (once DIR/check appears): "ok ITEM"/"FAIL ITEM: why", "result".
 *   timers DIR
 * Timer A: CLOCK_MONOTONIC, SIGRTMIN+1 with sival 0xdead, every 30 ms. Timer B: CLOCK_REALTIME,
 * SIGEV_NONE, one shot in 100 s. ITIMER_REAL: 100 s, interval 100 s (SIGALRM blocked).
 * Pending: SIGRTMIN+2 queued to the process with value 1234; SIGRTMIN+3 queued to thread T with
 * value 77 (T has it blocked and waits for it after the check). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "selfcheck.h"

static volatile int t_ok = -1;
static char t_msg[128];
static pid_t origin;

static void *thread(void *a) {
  (void)a;
  wait_check();
  sigset_t s; sigemptyset(&s); sigaddset(&s, SIGRTMIN + 3);
  siginfo_t si; struct timespec to = { 1, 0 };
  int r = sigtimedwait(&s, &si, &to);
  t_ok = r == SIGRTMIN + 3 && si.si_code == SI_QUEUE && si.si_value.sival_int == 77 && si.si_pid == origin;
  snprintf(t_msg, sizeof t_msg, "r %d code %d value %d pid %d", r, si.si_code, si.si_value.sival_int, si.si_pid);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  origin = getpid();
  sigset_t block; sigemptyset(&block);
  for (int s = SIGRTMIN + 1; s <= SIGRTMIN + 3; s++) sigaddset(&block, s);
  sigaddset(&block, SIGALRM);
  sigprocmask(SIG_BLOCK, &block, NULL);
  pthread_t t; pthread_create(&t, NULL, thread, NULL);

  timer_t a, b;
  struct sigevent ea = { 0 }; ea.sigev_notify = SIGEV_SIGNAL; ea.sigev_signo = SIGRTMIN + 1; ea.sigev_value.sival_ptr = (void *)0xdead;
  struct sigevent eb = { 0 }; eb.sigev_notify = SIGEV_NONE;
  timer_create(CLOCK_MONOTONIC, &ea, &a);
  timer_create(CLOCK_REALTIME, &eb, &b);
  struct itimerspec sa = { { 0, 30000000 }, { 0, 30000000 } }, sb = { { 0, 0 }, { 100, 0 } };
  timer_settime(a, 0, &sa, NULL);
  timer_settime(b, 0, &sb, NULL);
  struct itimerval iv = { { 100, 0 }, { 100, 0 } };
  setitimer(ITIMER_REAL, &iv, NULL);
  union sigval v = { .sival_int = 1234 };
  sigqueue(getpid(), SIGRTMIN + 2, v);
  union sigval tv = { .sival_int = 77 };
  pthread_sigqueue(t, SIGRTMIN + 3, tv);
  printf("ready %d a=%ld b=%ld\n", getpid(), (long)(intptr_t)a, (long)(intptr_t)b);
  wait_check();

  struct itimerspec cur;
  report(timer_gettime(a, &cur) == 0 && cur.it_interval.tv_nsec == 30000000, "timer-a-id-interval", "interval %ld", cur.it_interval.tv_nsec);
  report(timer_gettime(b, &cur) == 0 && cur.it_value.tv_sec >= 80 && cur.it_value.tv_sec < 100, "timer-b-armed", "left %ld s", cur.it_value.tv_sec);
  sigset_t s1; sigemptyset(&s1); sigaddset(&s1, SIGRTMIN + 1);
  siginfo_t si; struct timespec to = { 1, 0 };
  int r = sigtimedwait(&s1, &si, &to);
  report(r == SIGRTMIN + 1 && si.si_code == SI_TIMER && si.si_value.sival_ptr == (void *)0xdead, "timer-a-fires", "r %d code %d value %p", r, si.si_code, si.si_value.sival_ptr);
  r = sigtimedwait(&s1, &si, &to);
  report(r == SIGRTMIN + 1, "timer-a-fires-again", "r %d", r);
  sigset_t s2; sigemptyset(&s2); sigaddset(&s2, SIGRTMIN + 2);
  r = sigtimedwait(&s2, &si, &to);
  report(r == SIGRTMIN + 2 && si.si_code == SI_QUEUE && si.si_value.sival_int == 1234 && si.si_pid == origin, "shared-pending-siginfo", "r %d code %d value %d pid %d", r, si.si_code, si.si_value.sival_int, si.si_pid);
  struct itimerval ci; getitimer(ITIMER_REAL, &ci);
  report(ci.it_interval.tv_sec == 100 && ci.it_value.tv_sec >= 80 && ci.it_value.tv_sec <= 100, "itimer", "value %ld interval %ld", ci.it_value.tv_sec, ci.it_interval.tv_sec);
  pthread_join(t, NULL);
  report(t_ok == 1, "thread-pending-siginfo", "%s", t_msg);
  return result();
}
