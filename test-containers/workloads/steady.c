/* steady: a process tree that checks itself all the time, for tests that interrupt stasis at any
 * instant and then require the tree to be exactly as it was. Nothing is restored: the same
 * processes must simply go on.
 *   steady [PROCS]
 * PROCS processes (default 4): the root and its children, each a child of the previous one.
 * Every process runs three threads besides its main one:
 *   - a register thread: a loop whose state lives in registers (an xorshift generator stepped
 *     in general and SSE registers side by side, compared every round);
 *   - a sleeper: nanosleep in a loop, which must never return EINTR (no handler is installed);
 *   - a pipe reader: reads numbered records from a pipe its main thread writes into, which must
 *     arrive in order, none lost or repeated.
 * Every thread blocks its own set of signals and checks it stays that; each process keeps one
 * blocked signal pending (SIGUSR2) and checks it stays pending; the CPU affinity each thread
 * started with is checked to stay the same.
 * Any difference is printed at once as "FAIL PID what"; "ready" once every process runs. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static int procs = 4;
static int pipefd[2];
static cpu_set_t start_cpus;

static void fail(const char *what, long v) {
  printf("FAIL %d %s %ld\n", getpid(), what, v);
  fflush(stdout);
}

/* The mask each thread keeps blocked: SIGUSR2 (kept pending) and one signal of its own. */
static void block_own(int extra) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGUSR2);
  sigaddset(&s, extra);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
}

static void check_own(int extra, sigset_t *want) {
  sigset_t now;
  sigemptyset(&now);
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  for (int s = 1; s < 65; s++)
    if (sigismember(&now, s) != sigismember(want, s)) { fail("blocked mask changed", extra); break; }
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof cpus, &cpus) == 0 && !CPU_EQUAL(&cpus, &start_cpus)) fail("affinity changed", CPU_COUNT(&cpus));
  sigset_t pend;
  sigpending(&pend);
  if (!sigismember(&pend, SIGUSR2)) fail("pending SIGUSR2 lost", 0);
}

/* Threads whose mask is set up: "ready" waits for all of them. */
static int settled_threads;

static void own_mask(int extra, sigset_t *out) {
  block_own(extra);
  sigemptyset(out);
  pthread_sigmask(SIG_BLOCK, NULL, out);
  __atomic_add_fetch(&settled_threads, 1, __ATOMIC_SEQ_CST);
}

static void *registers(void *a) {
  (void)a;
  sigset_t mine;
  own_mask(SIGRTMIN + 1, &mine);
  uint64_t x = 88172645463325252ull, rounds = 0;
  double d = 1.0;
  for (;;) {
    /* The same generator in a general register and in an SSE register: they must agree. */
    uint64_t y = x;
    __asm__ volatile(
      "movq %0, %%xmm7\n\t"
      "mov $20000, %%ecx\n"
      "1:\n\t"
      "mov %0, %%rdx\n\tshl $13, %%rdx\n\txor %%rdx, %0\n\t"
      "mov %0, %%rdx\n\tshr $7, %%rdx\n\txor %%rdx, %0\n\t"
      "mov %0, %%rdx\n\tshl $17, %%rdx\n\txor %%rdx, %0\n\t"
      "movq %%xmm7, %%rdx\n\tmov %%rdx, %%r8\n\tshl $13, %%r8\n\txor %%r8, %%rdx\n\t"
      "mov %%rdx, %%r8\n\tshr $7, %%r8\n\txor %%r8, %%rdx\n\t"
      "mov %%rdx, %%r8\n\tshl $17, %%r8\n\txor %%r8, %%rdx\n\tmovq %%rdx, %%xmm7\n\t"
      "dec %%ecx\n\tjnz 1b\n\t"
      "movq %%xmm7, %1\n\t"
      : "+r"(x), "=r"(y)
      :
      : "rcx", "rdx", "r8", "xmm7", "cc");
    if (x != y) fail("registers disagree", (long)rounds);
    d = d * 1.0000001 + 0.5;
    if (!(d > 1.0)) fail("float state", (long)rounds);
    if (d > 1e12) d = 1.0;
    if (++rounds % 16 == 0) check_own(SIGRTMIN + 1, &mine);
    sched_yield();
    if (rounds % 4 == 0) { struct timespec ts = { 0, 500000 }; nanosleep(&ts, NULL); }
  }
  return NULL;
}

static void *sleeper(void *a) {
  (void)a;
  sigset_t mine;
  own_mask(SIGRTMIN + 2, &mine);
  for (;;) {
    struct timespec ts = { 0, 3000000 };
    if (nanosleep(&ts, NULL) != 0) fail("nanosleep failed, errno", errno);
    check_own(SIGRTMIN + 2, &mine);
  }
  return NULL;
}

static void *reader(void *a) {
  (void)a;
  sigset_t mine;
  own_mask(SIGRTMIN + 3, &mine);
  uint64_t want = 0, got;
  for (;;) {
    ssize_t n = read(pipefd[0], &got, sizeof got);
    if (n != (ssize_t)sizeof got) { fail("pipe read", n < 0 ? -errno : n); continue; }
    if (got != want) fail("pipe record out of order", (long)got);
    want = got + 1;
    check_own(SIGRTMIN + 3, &mine);
  }
  return NULL;
}

static void run(int depth) __attribute__((noreturn));
static void run(int depth) {
  settled_threads = 0; /* a forked child counts its own threads */
  if (pipe(pipefd)) { perror("pipe"); exit(1); }
  sigset_t mine;
  own_mask(SIGRTMIN + 4, &mine);
  kill(getpid(), SIGUSR2); /* stays pending for the process: blocked everywhere */
  pthread_t t;
  pthread_create(&t, NULL, registers, NULL);
  pthread_create(&t, NULL, sleeper, NULL);
  pthread_create(&t, NULL, reader, NULL);
  while (__atomic_load_n(&settled_threads, __ATOMIC_SEQ_CST) < 4) sched_yield();
  if (depth + 1 < procs) {
    pid_t c = fork();
    if (c == 0) { run(depth + 1); _exit(0); }
  } else {
    printf("ready\n");
    fflush(stdout);
  }
  for (uint64_t seq = 0;; seq++) {
    if (write(pipefd[1], &seq, sizeof seq) != (ssize_t)sizeof seq) fail("pipe write, errno", errno);
    struct timespec ts = { 0, 1000000 };
    if (nanosleep(&ts, NULL) != 0) fail("main nanosleep failed, errno", errno);
    if (seq % 8 == 0) check_own(SIGRTMIN + 4, &mine);
  }
}

int main(int argc, char **argv) {
  if (argc > 1) procs = atoi(argv[1]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  sched_getaffinity(0, sizeof start_cpus, &start_cpus);
  run(0);
  return 0;
}
