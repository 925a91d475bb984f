/* pending: signals queued and blocked, for the process and for one thread, with their siginfo.
 *   pending DIR
 * The process: SIGRTMIN queued three times (sigqueue, values 1, 2, 3), SIGUSR1 sent with kill;
 * a thread: SIGRTMIN+1 queued to it alone (pthread_sigqueue, value 42) and SIGUSR2 sent to it
 * with tgkill (its code SI_TKILL or SI_USER, as the kernel has it). All blocked. Prints "ready", waits for DIR/check, then takes each signal with
 * sigtimedwait (the thread its own) and checks its number, order, code, value and sender pid. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include "selfcheck.h"

static volatile int thread_ready, thread_go;
static pid_t thread_tid;
static char thread_out[4][160];

static int take(const sigset_t *set, siginfo_t *si) {
  struct timespec ts = { 0, 0 };
  return sigtimedwait(set, si, &ts);
}

static void *worker(void *arg) {
  (void)arg;
  thread_tid = (pid_t)syscall(SYS_gettid);
  thread_ready = 1;
  while (!thread_go) nap(5);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGRTMIN + 1);
  siginfo_t si;
  int s = take(&set, &si);
  snprintf(thread_out[0], sizeof thread_out[0], s == SIGRTMIN + 1 && si.si_code == SI_QUEUE && si.si_value.sival_int == 42 && si.si_pid == getpid()
           ? "" : "got %d, code %d, value %d, from %d", s, si.si_code, si.si_value.sival_int, si.si_pid);
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  s = take(&set, &si);
  snprintf(thread_out[1], sizeof thread_out[1], s == SIGUSR2 && (si.si_code == SI_TKILL || si.si_code == SI_USER) && si.si_pid == getpid()
           ? "" : "got %d, code %d, from %d", s, si.si_code, si.si_pid);
  thread_go = 2;
  return NULL;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGRTMIN);
  sigaddset(&set, SIGRTMIN + 1);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  if (sigprocmask(SIG_BLOCK, &set, NULL)) return setup_failed("sigprocmask");
  pthread_t th;
  if (pthread_create(&th, NULL, worker, NULL)) return setup_failed("pthread_create");
  while (!thread_ready) nap(5);
  for (int v = 1; v <= 3; v++) {
    if (sigqueue(getpid(), SIGRTMIN, (union sigval){ .sival_int = v })) return setup_failed("sigqueue");
  }
  if (kill(getpid(), SIGUSR1)) return setup_failed("kill");
  if (pthread_sigqueue(th, SIGRTMIN + 1, (union sigval){ .sival_int = 42 })) return setup_failed("pthread_sigqueue");
  if (syscall(SYS_tgkill, getpid(), thread_tid, SIGUSR2)) return setup_failed("tgkill");

  printf("ready\n");
  wait_check();

  sigset_t mine;
  sigemptyset(&mine);
  sigaddset(&mine, SIGRTMIN);
  sigaddset(&mine, SIGUSR1);
  siginfo_t si;
  for (int v = 1; v <= 3; v++) {
    char item[32];
    snprintf(item, sizeof item, "process-rt-%d", v);
    int s = take(&mine, &si);
    /* SIGUSR1 (lower number) comes first: take it as it comes. */
    if (s == SIGUSR1) {
      report(si.si_code == SI_USER && si.si_pid == getpid(), "process-kill", "code %d, from %d", si.si_code, si.si_pid);
      sigdelset(&mine, SIGUSR1);
      s = take(&mine, &si);
    }
    report(s == SIGRTMIN && si.si_code == SI_QUEUE && si.si_value.sival_int == v && si.si_pid == getpid(), item,
           "got %d, code %d, value %d, from %d", s, si.si_code, si.si_value.sival_int, si.si_pid);
  }
  report(!sigismember(&mine, SIGUSR1), "process-kill", "SIGUSR1 was not pending");
  sigemptyset(&set);
  sigpending(&set);
  report(!sigismember(&set, SIGRTMIN) && !sigismember(&set, SIGUSR1), "process-nothing-more", "more signals pending");
  thread_go = 1;
  pthread_join(th, NULL);
  report(!thread_out[0][0], "thread-queued", "%s", thread_out[0]);
  report(!thread_out[1][0], "thread-tgkill", "%s", thread_out[1]);
  return result();
}
