/* inspectee: a small process tree for `stasis inspect`, `memparse` and `diff` to look at.
 *   inspectee DIR MARK
 * Keeps "needle:MARK" in a heap buffer, has DIR/notes.txt open for writing (fd 5 in the
 * parent), a TCP socket listening on 127.0.0.1 (fd 6) and a unix stream socket bound to
 * DIR/sock (fd 7); forks one child that sleeps. A counter on a page of its own
 * (counter_page) goes up every 10 ms; a 32-page buffer (steady) is filled once and never
 * written again. Prints "ready PORT CHILDPID COUNTERADDR STEADYADDR" once set up.
 * On SIGUSR1 it grows: a second child, a thread, and DIR/more.txt open as fd 8; then prints
 * "grown CHILDPID TID". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long counter_page[4096 / sizeof(unsigned long)] __attribute__((aligned(4096)));
static char steady[32 * 4096] __attribute__((aligned(4096)));

static volatile sig_atomic_t grow;
static void on_usr1(int sig) { (void)sig; grow = 1; }
static volatile pid_t thread_tid;

static void *thread_main(void *arg) {
  (void)arg;
  thread_tid = (pid_t)syscall(SYS_gettid);
  for (;;) pause();
  return NULL;
}

static void die(const char *what) { printf("ERR %s: %s\n", what, strerror(errno)); exit(2); }

/* `fd` moved to descriptor `want`. */
static void move_fd(int fd, int want) {
  if (fd == want) return;
  if (dup2(fd, want) < 0) die("dup2");
  close(fd);
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: inspectee DIR MARK\n"); return 2; }
  setvbuf(stdout, NULL, _IOLBF, 0);
  char path[4096];
  size_t n = strlen(argv[2]) + 16;
  char *needle = malloc(n);
  snprintf(needle, n, "needle:%s", argv[2]);
  for (size_t i = 0; i < sizeof steady; i++) steady[i] = (char)('a' + i % 26);

  snprintf(path, sizeof path, "%s/notes.txt", argv[1]);
  int file = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (file < 0) die("open");
  if (write(file, "notes\n", 6) != 6) die("write");
  move_fd(file, 5);

  int tcp = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t len = sizeof in;
  if (tcp < 0 || bind(tcp, (struct sockaddr *)&in, sizeof in) < 0 || listen(tcp, 4) < 0) die("tcp");
  if (getsockname(tcp, (struct sockaddr *)&in, &len) < 0) die("getsockname");
  move_fd(tcp, 6);

  int unx = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un un = { .sun_family = AF_UNIX };
  snprintf(un.sun_path, sizeof un.sun_path, "%s/sock", argv[1]);
  if (unx < 0 || bind(unx, (struct sockaddr *)&un, sizeof un) < 0 || listen(unx, 4) < 0) die("unix");
  move_fd(unx, 7);

  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    close(5);
    close(6);
    close(7);
    for (;;) pause();
  }
  signal(SIGUSR1, on_usr1);
  printf("ready %d %d %lx %lx\n", ntohs(in.sin_port), child, (unsigned long)counter_page, (unsigned long)steady);
  for (;;) {
    if (grow) {
      grow = 0;
      pid_t second = fork();
      if (second < 0) die("fork");
      if (second == 0) {
        for (int fd = 5; fd <= 7; fd++) close(fd);
        for (;;) pause();
      }
      pthread_t th;
      if (pthread_create(&th, NULL, thread_main, NULL)) die("pthread_create");
      while (!thread_tid) sched_yield();
      snprintf(path, sizeof path, "%s/more.txt", argv[1]);
      int more = open(path, O_RDONLY | O_CREAT, 0600);
      if (more < 0) die("open more");
      move_fd(more, 8);
      printf("grown %d %d\n", second, (int)thread_tid);
    }
    counter_page[0]++;
    counter_page[1] = (unsigned long)(uintptr_t)needle;
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    nanosleep(&ts, NULL);
  }
}
