/* threads: each thread of one process with state of its own, checked by each thread itself once
 * DIR/check appears (after restore). Main prints "ok ITEM" / "FAIL ITEM: why" for every item of
 * every worker, then "result PASS|FAIL", and exits 0 / 1.
 *   threads DIR
 * Workers 0..2, each: its TID; its own SSE and x87 rounding modes (MXCSR and the x87 control
 * word, kept in the thread's XSAVE area); its own blocked signal (SIGRTMIN+i) with that signal
 * pending for it alone (tgkill); its own alternate signal stack, on which a handler then runs;
 * worker 1 alone has other gids (raw setresgid: the other threads keep theirs); glibc's rseq
 * registration. Worker 3 sleeps in read() on a pipe that main writes to after restore: the
 * interrupted syscall goes on and returns the bytes. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "selfcheck.h"

#define WORKERS 3
#define ITEM_LEN 200

static const unsigned MXCSR_ROUND[WORKERS] = { 0x2000, 0x4000, 0x6000 }; /* down, up, toward zero */
static const unsigned short X87_ROUND[WORKERS] = { 0x0400, 0x0800, 0x0c00 };

struct worker {
  int idx;
  pid_t tid;
  char *alt;
  size_t altsz;
  volatile int ready;
  /* results, filled in after restore: item names and failure texts ("" = ok) */
  int n;
  char item[8][32];
  char why[8][ITEM_LEN];
};

static struct worker w[WORKERS];
static gid_t gid0;
static __thread volatile int on_alt = -1; /* set by the handler: 1 on this thread's alt stack */
static __thread char *my_alt;
static __thread size_t my_altsz;

static void on_usr2(int s) {
  (void)s;
  char here;
  on_alt = (&here >= my_alt && &here < my_alt + my_altsz);
}

static void note(struct worker *me, const char *item, int ok, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void note(struct worker *me, const char *item, int ok, const char *fmt, ...) {
  int k = me->n++;
  snprintf(me->item[k], sizeof me->item[k], "t%d-%s", me->idx, item);
  me->why[k][0] = 0;
  if (ok) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(me->why[k], sizeof me->why[k], fmt, ap);
  va_end(ap);
  if (!me->why[k][0]) strcpy(me->why[k], "failed");
}

static unsigned get_mxcsr(void) { unsigned v; __asm__ volatile("stmxcsr %0" : "=m"(v)); return v; }
static void set_mxcsr(unsigned v) { __asm__ volatile("ldmxcsr %0" : : "m"(v)); }
static unsigned short get_x87cw(void) { unsigned short v; __asm__ volatile("fnstcw %0" : "=m"(v)); return v; }
static void set_x87cw(unsigned short v) { __asm__ volatile("fldcw %0" : : "m"(v)); }

static void *worker(void *arg) {
  struct worker *me = arg;
  int i = me->idx;
  me->tid = gettid();
  set_mxcsr((get_mxcsr() & ~0x6000u) | MXCSR_ROUND[i]);
  set_x87cw((unsigned short)((get_x87cw() & ~0x0c00) | X87_ROUND[i]));
  sigset_t mine;
  sigemptyset(&mine);
  sigaddset(&mine, SIGRTMIN + i);
  pthread_sigmask(SIG_BLOCK, &mine, NULL);
  syscall(SYS_tgkill, getpid(), me->tid, SIGRTMIN + i);
  me->altsz = 65536 + 4096 * (size_t)i;
  me->alt = malloc(me->altsz);
  stack_t ss = { .ss_sp = me->alt, .ss_size = me->altsz, .ss_flags = 0 };
  sigaltstack(&ss, NULL);
  my_alt = me->alt;
  my_altsz = me->altsz;
  if (i == 1 && syscall(SYS_setresgid, 321, 321, 321)) { perror("setresgid"); exit(2); }
  me->ready = 1;

  wait_check();

  note(me, "tid", gettid() == me->tid, "tid %d, was %d", gettid(), me->tid);
  unsigned mx = get_mxcsr() & 0x6000u;
  unsigned short cw = get_x87cw() & 0x0c00;
  note(me, "fpu-modes", mx == MXCSR_ROUND[i] && cw == X87_ROUND[i], "MXCSR rounding %#x, x87 %#x", mx, cw);
  sigset_t now, pend;
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  sigpending(&pend);
  int others_blocked = 0, others_pending = 0;
  for (int j = 0; j < WORKERS; j++) {
    if (j == i) continue;
    others_blocked |= sigismember(&now, SIGRTMIN + j);
    others_pending |= sigismember(&pend, SIGRTMIN + j);
  }
  note(me, "blocked", sigismember(&now, SIGRTMIN + i) && !others_blocked, "own %d, others %d",
       sigismember(&now, SIGRTMIN + i), others_blocked);
  note(me, "pending", sigismember(&pend, SIGRTMIN + i) && !others_pending, "own %d, others' %d",
       sigismember(&pend, SIGRTMIN + i), others_pending);
  stack_t cur;
  sigaltstack(NULL, &cur);
  pthread_kill(pthread_self(), SIGUSR2);
  note(me, "altstack", cur.ss_sp == me->alt && cur.ss_size == me->altsz && on_alt == 1,
       "sp %p size %zu (was %p %zu), handler on it %d", cur.ss_sp, cur.ss_size, (void *)me->alt, me->altsz, on_alt);
  gid_t r, e, s;
  syscall(SYS_getresgid, &r, &e, &s);
  gid_t want = i == 1 ? 321 : gid0; /* the others keep the process's */
  note(me, "creds", r == want && e == want && s == want, "gids %d/%d/%d, want %d", r, e, s, want);
  if (__rseq_size > 0) {
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
    long rc = syscall(SYS_rseq, area, __rseq_size < 32 ? 32 : __rseq_size, 0, RSEQ_SIG);
    note(me, "rseq", rc == -1 && errno == EBUSY, "registering the same area again gave %ld (%s): not registered", rc, strerror(errno));
  } else {
    note(me, "rseq", 1, "%s", "");
  }
  return NULL;
}

static int pipefd[2];
static char got[16];
static void *reader(void *arg) {
  (void)arg;
  ssize_t n = read(pipefd[0], got, sizeof got - 1);
  if (n > 0) got[n] = 0;
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sigaction sa = { .sa_handler = on_usr2, .sa_flags = SA_ONSTACK }; /* on the thread's alt stack */
  sigaction(SIGUSR2, &sa, NULL);
  if (pipe(pipefd)) return 2;
  gid0 = getgid();
  pthread_t t[WORKERS], rd;
  for (int i = 0; i < WORKERS; i++) {
    w[i].idx = i;
    pthread_create(&t[i], NULL, worker, &w[i]);
  }
  pthread_create(&rd, NULL, reader, NULL);
  for (int i = 0; i < WORKERS; i++) while (!w[i].ready) nap(1);
  nap(50); /* the reader is asleep in read() by now */
  printf("ready %d\n", getpid());
  wait_check();
  if (write(pipefd[1], "after", 5) != 5) return 2;
  for (int i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);
  pthread_join(rd, NULL);
  for (int i = 0; i < WORKERS; i++) {
    for (int k = 0; k < w[i].n; k++) report(!w[i].why[k][0], w[i].item[k], "%s", w[i].why[k]);
  }
  report(!strcmp(got, "after"), "read-resumed", "the reader got '%s'", got);
  gid_t r, e, s;
  syscall(SYS_getresgid, &r, &e, &s);
  report(r == gid0 && e == gid0 && s == gid0, "main-creds", "main's gids %d/%d/%d", r, e, s);
  return result();
}
