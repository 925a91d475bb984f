/* family: a process tree with threads, shared files, a zombie and a stopped child, which checks
 * itself once DIR/check appears (after restore). The root prints "ok ITEM" / "FAIL ITEM: why"
 * for everything, then "result PASS|FAIL", and exits 0 / 1.
 *   family DIR
 * Tree: root (session leader, 3 threads: a counter, one asleep on a condition variable, one in
 * a futex-based sem_wait) → child A (keeps a pipe with 17 unread bytes; forks grandchild G, in
 * A's process group) → child B (own process group) → zombie Z (exit 42, not reaped yet) →
 * child S (stopped by SIGSTOP). Root and A share one open file description (offset). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;
static void report(int ok, const char *item, const char *fmt, ...) {
  if (ok) { printf("ok %s\n", item); return; }
  failures++;
  va_list ap; va_start(ap, fmt); printf("FAIL %s: ", item); vprintf(fmt, ap); printf("\n"); va_end(ap);
}
static void nap(long ms) { struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L }; nanosleep(&ts, NULL); }
static void wait_check(void) { while (access("check", F_OK)) nap(10); }

static volatile unsigned long ticks;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go, woke;
static sem_t sem;
static volatile int sem_woke;
static void *counter(void *a) { (void)a; for (;;) { ticks++; nap(5); } return NULL; }
static void *sleeper(void *a) {
  (void)a; pthread_mutex_lock(&mu); while (!go) pthread_cond_wait(&cv, &mu); woke = 1; pthread_mutex_unlock(&mu); return NULL;
}
static void *semwaiter(void *a) { (void)a; while (sem_wait(&sem)) {} sem_woke = 1; return NULL; }

/* One line "ok" or "FAIL why" from a child, over its result pipe. */
static void child_result(int fd, const char *item) {
  char buf[256] = {0}; ssize_t n = read(fd, buf, sizeof buf - 1);
  if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
  report(n > 0 && !strcmp(buf, "ok"), item, "%s", n > 0 ? buf : "no answer");
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  pid_t root = getpid();
  int shared = open("shared", O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (write(shared, "0123456789", 10) != 10) return 2;
  lseek(shared, 2, SEEK_SET);
  int data[2], ra[2], rg[2];
  if (pipe(data) || pipe(ra) || pipe(rg)) return 2;
  if (write(data[1], "hello-from-parent", 17) != 17) return 2;

  pid_t a = fork();
  if (a == 0) {
    close(data[1]); close(ra[0]); close(rg[0]);
    pid_t self = getpid();
    pid_t g = fork();
    if (g == 0) {
      close(ra[1]);
      wait_check();
      char msg[128];
      if (getppid() != self) snprintf(msg, sizeof msg, "ppid %d, not %d", getppid(), self);
      else if (getpgrp() != getpgid(getppid())) snprintf(msg, sizeof msg, "pgrp %d, parent's %d", getpgrp(), getpgid(getppid()));
      else if (getsid(0) != root) snprintf(msg, sizeof msg, "sid %d", getsid(0));
      else snprintf(msg, sizeof msg, "ok");
      dprintf(rg[1], "%s\n", msg);
      _exit(0);
    }
    wait_check();
    char buf[64] = {0};
    ssize_t n = read(data[0], buf, sizeof buf);
    off_t at = lseek(shared, 0, SEEK_CUR);
    lseek(shared, 7, SEEK_SET); /* the root must see this: one description */
    int st = 0; pid_t w = waitpid(g, &st, 0);
    if (n != 17 || memcmp(buf, "hello-from-parent", 17)) dprintf(ra[1], "pipe held %zd bytes '%.*s'\n", n, (int)(n > 0 ? n : 0), buf);
    else if (at != 2) dprintf(ra[1], "shared offset %lld\n", (long long)at);
    else if (w != g || !WIFEXITED(st)) dprintf(ra[1], "grandchild %d: waitpid %d status %#x\n", g, w, st);
    else dprintf(ra[1], "ok\n");
    _exit(0);
  }
  pid_t b = fork();
  if (b == 0) { setpgid(0, 0); wait_check(); _exit(getpgrp() == getpid() ? 0 : 3); }
  pid_t z = fork();
  if (z == 0) _exit(42);
  pid_t s = fork();
  if (s == 0) { raise(SIGSTOP); _exit(7); }
  close(data[0]); close(ra[1]); close(rg[1]);
  sem_init(&sem, 0, 0);
  pthread_t t1, t2, t3;
  pthread_create(&t1, NULL, counter, NULL);
  pthread_create(&t2, NULL, sleeper, NULL);
  pthread_create(&t3, NULL, semwaiter, NULL);
  while (ticks < 3) nap(5);
  /* wait until Z is a zombie and S is stopped, so the dump sees them so */
  for (;;) {
    char path[64], st[512]; int zz = 0, ss = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", z); FILE *f = fopen(path, "r");
    if (f) { if (fgets(st, sizeof st, f)) zz = strstr(strrchr(st, ')'), ") Z") != NULL; fclose(f); }
    snprintf(path, sizeof path, "/proc/%d/stat", s); f = fopen(path, "r");
    if (f) { if (fgets(st, sizeof st, f)) ss = strstr(strrchr(st, ')'), ") T") != NULL; fclose(f); }
    if (zz && ss) break;
    nap(5);
  }
  printf("ready %d a=%d b=%d z=%d s=%d\n", root, a, b, z, s);
  wait_check();

  unsigned long t0 = ticks; nap(100);
  report(ticks > t0 + 5, "thread-counter", "ticks %lu -> %lu", t0, ticks);
  pthread_mutex_lock(&mu); go = 1; pthread_cond_signal(&cv); pthread_mutex_unlock(&mu);
  pthread_join(t2, NULL);
  report(woke, "thread-condvar", "the sleeper did not wake");
  sem_post(&sem); pthread_join(t3, NULL);
  report(sem_woke, "thread-futex", "sem_wait did not return");
  child_result(ra[0], "child-pipe-and-grandchild");
  child_result(rg[0], "grandchild-links");
  report(lseek(shared, 0, SEEK_CUR) == 7, "shared-description", "offset %lld", (long long)lseek(shared, 0, SEEK_CUR));
  int st;
  report(waitpid(z, &st, WNOHANG) == z && WIFEXITED(st) && WEXITSTATUS(st) == 42, "zombie", "status %#x", st);
  char path[64], buf[512] = {0};
  snprintf(path, sizeof path, "/proc/%d/stat", s);
  FILE *f = fopen(path, "r"); if (f) { (void)!fgets(buf, sizeof buf, f); fclose(f); }
  report(strstr(buf, ") T") != NULL, "stopped-child", "stat: %.60s", buf);
  kill(s, SIGCONT);
  report(waitpid(s, &st, 0) == s && WIFEXITED(st) && WEXITSTATUS(st) == 7, "stopped-child-continues", "status %#x", st);
  report(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 0, "own-process-group", "status %#x", st);
  report(waitpid(a, &st, 0) == a && WIFEXITED(st), "child-reaped", "status %#x", st);
  report(getsid(0) == root && getpid() == root, "session", "sid %d", getsid(0));
  printf("result %s\n", failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}
