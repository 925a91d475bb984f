/* family: a process tree with threads, shared files, a zombie and a stopped child, which checks
 * itself once DIR/check appears (after restore). The root prints "ok ITEM" / "FAIL ITEM: why"
 * for everything, then "result PASS|FAIL", and exits 0 / 1.
 *   family DIR
 * Tree: root (session leader, 3 threads: a counter, one asleep on a condition variable, one in
 * a futex-based sem_wait) → child A (keeps a pipe with 17 unread bytes; forks grandchild G, in
 * A's process group) → child B (own process group) → zombie Z (exit 42, not reaped yet) →
 * child S (stopped by SIGSTOP). Root and A share one open file description (offset).
 * Across processes: root and A hold the two ends of a unix stream socketpair, with bytes queued
 * each way; root and G the two ends of a datagram socketpair, two datagrams queued for G; root
 * and A one eventfd (counter 7); root a listening socket (bound to DIR/srv.sock) and a client of
 * it, A the accepted connection, with bytes queued for A. After restore each holder reads
 * exactly what was queued, then the ends talk again to prove they are still connected. */
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
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "selfcheck.h"


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

/* One line "ok" or "FAIL why" from a child, over its result pipe (a child sends several lines). */
static void child_result(int fd, const char *item) {
  char buf[256] = {0}; ssize_t n = 0;
  while (n < (ssize_t)sizeof buf - 1 && read(fd, buf + n, 1) == 1 && buf[n] != '\n') n++;
  buf[n] = 0;
  report(n > 0 && !strcmp(buf, "ok"), item, "%s", n > 0 ? buf : "no answer");
}

/* Receive what is queued on `fd` without waiting: "ok" if it is exactly the packets `want`
 * (datagram boundaries kept: one recv per packet), nothing more; else why not, in msg. */
static void expect_queue(int fd, const char *const *want, int count, char *msg, size_t size) {
  char buf[256];
  for (int i = 0; i < count; i++) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    size_t len = strlen(want[i]);
    if (n != (ssize_t)len || memcmp(buf, want[i], len)) {
      snprintf(msg, size, "read %d: %zd bytes '%.*s', not '%s'", i, n, (int)(n > 0 ? n : 0), buf, want[i]);
      return;
    }
  }
  ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n >= 0 || errno != EAGAIN) snprintf(msg, size, "%zd more bytes after the queue (errno %d)", n, n < 0 ? errno : 0);
  else snprintf(msg, size, "ok");
}

static const char *to_child[] = { "to-child-stream" }, *to_root[] = { "to-root-stream!!" };
static const char *to_grandchild[] = { "first-datagram", "2nd" }, *via_listener[] = { "via-listener" };

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
  int sp[2], dp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dp)) return 2;
  if (send(sp[0], to_child[0], strlen(to_child[0]), 0) < 0) return 2;
  for (int i = 0; i < 2; i++) if (send(dp[0], to_grandchild[i], strlen(to_grandchild[i]), 0) < 0) return 2;
  int efd = eventfd(0, EFD_NONBLOCK);
  uint64_t four = 4;
  if (efd < 0 || write(efd, &four, 8) != 8) return 2;
  struct sockaddr_un sun = { .sun_family = AF_UNIX, .sun_path = "srv.sock" };
  unlink("srv.sock");
  int lsk = socket(AF_UNIX, SOCK_STREAM, 0), cl = socket(AF_UNIX, SOCK_STREAM, 0);
  if (bind(lsk, (struct sockaddr *)&sun, sizeof sun) || listen(lsk, 4) || connect(cl, (struct sockaddr *)&sun, sizeof sun)) return 2;
  int acc = accept(lsk, NULL, NULL);
  if (acc < 0 || send(cl, via_listener[0], strlen(via_listener[0]), 0) < 0) return 2;

  pid_t a = fork();
  if (a == 0) {
    close(data[1]); close(ra[0]); close(rg[0]);
    close(sp[0]); close(dp[0]); close(lsk); close(cl);
    pid_t self = getpid();
    pid_t g = fork();
    if (g == 0) {
      close(ra[1]); close(sp[1]); close(efd); close(acc);
      wait_check();
      char msg[128];
      if (getppid() != self) snprintf(msg, sizeof msg, "ppid %d, not %d", getppid(), self);
      else if (getpgrp() != getpgid(getppid())) snprintf(msg, sizeof msg, "pgrp %d, parent's %d", getpgrp(), getpgid(getppid()));
      else if (getsid(0) != root) snprintf(msg, sizeof msg, "sid %d", getsid(0));
      else snprintf(msg, sizeof msg, "ok");
      dprintf(rg[1], "%s\n", msg);
      expect_queue(dp[1], to_grandchild, 2, msg, sizeof msg);
      dprintf(rg[1], "%s\n", msg);
      if (send(dp[1], "back", 4, 0) != 4) perror("send back");
      _exit(0);
    }
    close(dp[1]);
    /* The root waits for these bytes before it reports ready: the eventfd is written by then. */
    uint64_t three = 3;
    if (write(efd, &three, 8) != 8 || send(sp[1], to_root[0], strlen(to_root[0]), 0) < 0) _exit(2);
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
    char msg[128];
    expect_queue(sp[1], to_child, 1, msg, sizeof msg);
    dprintf(ra[1], "%s\n", msg);
    uint64_t count = 0;
    if (read(efd, &count, 8) != 8 || count != 7) dprintf(ra[1], "eventfd read %llu, not 7\n", (unsigned long long)count);
    else dprintf(ra[1], "ok\n");
    expect_queue(acc, via_listener, 1, msg, sizeof msg);
    dprintf(ra[1], "%s\n", msg);
    /* Answer on the pair only once the root has checked its own queue. */
    char go[2];
    if (recv(sp[1], go, 2, MSG_WAITALL) != 2 || send(sp[1], "after", 5, 0) != 5 || send(acc, "reply", 5, 0) != 5) perror("send after");
    _exit(0);
  }
  close(sp[1]); close(dp[1]); close(acc);
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
  for (char peek[32]; recv(sp[0], peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT) < (ssize_t)strlen(to_root[0]);) nap(5);
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
  child_result(ra[0], "stream-socketpair-child-end");
  child_result(ra[0], "eventfd-shared-counter");
  child_result(ra[0], "accepted-connection-in-child");
  child_result(rg[0], "grandchild-links");
  child_result(rg[0], "datagram-socketpair-grandchild-end");
  {
    char msg[128], buf[16] = {0};
    expect_queue(sp[0], to_root, 1, msg, sizeof msg);
    report(!strcmp(msg, "ok"), "stream-socketpair-root-end", "%s", msg);
    if (send(sp[0], "go", 2, 0) != 2) perror("send go");
    ssize_t n = recv(sp[0], buf, sizeof buf, 0);
    report(n == 5 && !memcmp(buf, "after", 5), "stream-socketpair-connected", "read %zd '%.*s'", n, (int)(n > 0 ? n : 0), buf);
    n = recv(dp[0], buf, sizeof buf, 0);
    report(n == 4 && !memcmp(buf, "back", 4), "datagram-socketpair-connected", "read %zd '%.*s'", n, (int)(n > 0 ? n : 0), buf);
    uint64_t count = 0;
    n = read(efd, &count, 8);
    report(n < 0 && errno == EAGAIN, "eventfd-one-description", "root read %zd (%llu) after the child took the count", n, (unsigned long long)count);
    n = recv(cl, buf, sizeof buf, 0);
    report(n == 5 && !memcmp(buf, "reply", 5), "accepted-connection-connected", "read %zd '%.*s'", n, (int)(n > 0 ? n : 0), buf);
    int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
    int ok = !connect(c2, (struct sockaddr *)&sun, sizeof sun);
    int a2 = ok ? accept(lsk, NULL, NULL) : -1;
    report(ok && a2 >= 0, "listener-accepts", "connect %d accept %d errno %d", ok, a2, errno);
    close(c2); close(a2);
  }
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
  return result();
}
