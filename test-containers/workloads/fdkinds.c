/* fdkinds: sets up descriptors of one kind, prints "ready PID", waits for DIR/check (after
 * restore), then checks every item itself: "ok ITEM" / "FAIL ITEM: why", "result PASS|FAIL",
 * exit 0 / 1.
 *   fdkinds MODE DIR
 * MODE:
 *   eventfd   counter 42 (O_NONBLOCK), a semaphore eventfd at 3, a counter above 32 bits
 *   signalfd  signalfd for {SIGUSR1, SIGUSR2}, O_NONBLOCK, with SIGUSR1 blocked and pending
 *   timerfd   periodic 100 ms timer; expired one-shot with 1 unread expiration; CLOCK_REALTIME
 *             TFD_TIMER_ABSTIME timer 60 s ahead
 *   epoll     epoll over an eventfd with data (EPOLLIN ready) and another (EPOLLOUT|EPOLLET)
 *   inotify   watches on DIR/w/a, DIR/w/b, DIR/w/c, b removed again (wds 1 and 3)
 *   memfd     memfd "stasis-memfd" with 10000 pattern bytes, size 12345, offset 100, seals
 *             SHRINK|GROW, and a second O_RDONLY open of it
 *   fifo      FIFO DIR/fifo: O_RDONLY|O_NONBLOCK and O_WRONLY ends, 14 bytes written, 3 read
 *   ghost     DIR/ghost (5000 bytes) open O_RDWR at offset 123, then unlinked
 *   ghost-big DIR/big (2 MiB) open and unlinked (the dump must refuse it)
 *   locks     flock LOCK_EX on DIR/lf, POSIX write lock on bytes 10-19 of DIR/lp, OFD read
 *             lock on DIR/lo */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "selfcheck.h"


static char dir[2048];
static char *at(const char *name) {
  static char bufs[4][4096]; static int n;
  char *b = bufs[n++ % 4];
  snprintf(b, 4096, "%s/%s", dir, name);
  return b;
}
static void die(const char *what) { perror(what); exit(2); }

/* A line of /proc/self/fdinfo/FD starting with `key`, or "" */
static const char *fdinfo(int fd, const char *key) {
  static char line[512]; char p[64]; snprintf(p, sizeof p, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(p, "r"); if (!f) return "";
  while (fgets(line, sizeof line, f)) if (!strncmp(line, key, strlen(key))) { fclose(f); line[strcspn(line, "\n")] = 0; return line; }
  fclose(f); return "";
}
static int count_lines(int fd, const char *key) {
  char line[512], p[64]; int n = 0; snprintf(p, sizeof p, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(p, "r"); if (!f) return -1;
  while (fgets(line, sizeof line, f)) if (!strncmp(line, key, strlen(key))) n++;
  fclose(f); return n;
}
static double now_s(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec + t.tv_nsec / 1e9; }

/* ---- state set up before the dump ---- */
static int e1, e2, e3, sfd, t1, t2, t3, ep, ee1, ee2, ino, wa, wc, m1, m2, fr, fw, gfd, lf, lp, lo;
static const uint64_t BIG = 0x100000000ull + 5;

static void setup(const char *mode) {
  if (!strcmp(mode, "eventfd")) {
    e1 = eventfd(42, EFD_NONBLOCK);
    e2 = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
    e3 = eventfd(0, 0);
    if (write(e3, &BIG, 8) != 8) die("eventfd write");
  } else if (!strcmp(mode, "signalfd")) {
    sigset_t s; sigemptyset(&s); sigaddset(&s, SIGUSR1); sigaddset(&s, SIGUSR2);
    sigprocmask(SIG_BLOCK, &s, NULL);
    sfd = signalfd(-1, &s, SFD_NONBLOCK);
    raise(SIGUSR1);
  } else if (!strcmp(mode, "timerfd")) {
    t1 = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec it = { { 0, 100000000 }, { 0, 100000000 } };
    timerfd_settime(t1, 0, &it, NULL);
    t2 = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec once = { { 0, 0 }, { 0, 1000000 } };
    timerfd_settime(t2, 0, &once, NULL);
    t3 = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    struct timespec n; clock_gettime(CLOCK_REALTIME, &n);
    struct itimerspec abs = { { 0, 0 }, { n.tv_sec + 60, n.tv_nsec } };
    timerfd_settime(t3, TFD_TIMER_ABSTIME, &abs, NULL);
    struct timespec w = { 0, 20000000 }; nanosleep(&w, NULL); /* t2 expires */
  } else if (!strcmp(mode, "epoll")) {
    ee1 = eventfd(5, EFD_NONBLOCK); ee2 = eventfd(0, EFD_NONBLOCK);
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event a = { EPOLLIN, { .u64 = 0x1122334455667788ull } };
    struct epoll_event b = { EPOLLIN | EPOLLOUT | EPOLLET, { .u64 = 42 } };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ee1, &a) || epoll_ctl(ep, EPOLL_CTL_ADD, ee2, &b)) die("epoll_ctl");
  } else if (!strcmp(mode, "inotify")) {
    mkdir(at("w"), 0755);
    close(open(at("w/a"), O_CREAT | O_WRONLY, 0644)); close(open(at("w/b"), O_CREAT | O_WRONLY, 0644));
    close(open(at("w/c"), O_CREAT | O_WRONLY, 0644));
    ino = inotify_init1(IN_NONBLOCK);
    wa = inotify_add_watch(ino, at("w/a"), IN_MODIFY | IN_ATTRIB);
    int wb = inotify_add_watch(ino, at("w/b"), IN_MODIFY);
    wc = inotify_add_watch(ino, at("w/c"), IN_MODIFY | IN_CLOSE_WRITE);
    inotify_rm_watch(ino, wb);
    char buf[4096]; while (read(ino, buf, sizeof buf) > 0) {} /* the IN_IGNORED of b */
  } else if (!strcmp(mode, "memfd")) {
    m1 = memfd_create("stasis-memfd", MFD_ALLOW_SEALING);
    unsigned char b[10000]; for (int i = 0; i < 10000; i++) b[i] = (unsigned char)(i * 7 + 1);
    if (write(m1, b, sizeof b) != (ssize_t)sizeof b) die("memfd write");
    if (ftruncate(m1, 12345)) die("ftruncate");
    lseek(m1, 100, SEEK_SET);
    if (fcntl(m1, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)) die("seals");
    char p[64]; snprintf(p, sizeof p, "/proc/self/fd/%d", m1);
    m2 = open(p, O_RDONLY);
  } else if (!strcmp(mode, "fifo")) {
    if (mkfifo(at("fifo"), 0600)) die("mkfifo");
    fr = open(at("fifo"), O_RDONLY | O_NONBLOCK);
    fw = open(at("fifo"), O_WRONLY);
    if (write(fw, "hello, fifo!\n", 14) != 14) die("fifo write");
    char b[3]; if (read(fr, b, 3) != 3) die("fifo read");
  } else if (!strcmp(mode, "ghost")) {
    gfd = open(at("ghost"), O_RDWR | O_CREAT | O_TRUNC, 0640);
    unsigned char b[5000]; for (int i = 0; i < 5000; i++) b[i] = (unsigned char)(i * 13 + 5);
    if (write(gfd, b, sizeof b) != (ssize_t)sizeof b) die("ghost write");
    lseek(gfd, 123, SEEK_SET);
    unlink(at("ghost"));
  } else if (!strcmp(mode, "ghost-big")) {
    gfd = open(at("big"), O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (ftruncate(gfd, 2 << 20)) die("ftruncate");
    unlink(at("big"));
  } else if (!strcmp(mode, "locks")) {
    lf = open(at("lf"), O_RDWR | O_CREAT, 0644);
    if (flock(lf, LOCK_EX)) die("flock");
    lp = open(at("lp"), O_RDWR | O_CREAT, 0644);
    struct flock pl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10 };
    if (fcntl(lp, F_SETLK, &pl)) die("F_SETLK");
    lo = open(at("lo"), O_RDWR | O_CREAT, 0644);
    struct flock ol = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    if (fcntl(lo, F_OFD_SETLK, &ol)) die("F_OFD_SETLK");
  } else {
    fprintf(stderr, "unknown mode %s\n", mode); exit(2);
  }
}

/* ---- checks after restore ---- */
static void check(const char *mode) {
  if (!strcmp(mode, "eventfd")) {
    uint64_t v = 0;
    report(read(e1, &v, 8) == 8 && v == 42, "eventfd-counter", "read %llu", (unsigned long long)v);
    report(read(e1, &v, 8) < 0 && errno == EAGAIN, "eventfd-nonblock", "second read did not fail with EAGAIN");
    int n = 0; uint64_t s = 0;
    while (read(e2, &s, 8) == 8 && s == 1) n++;
    report(n == 3, "eventfd-semaphore", "semaphore gave %d ones, last %llu", n, (unsigned long long)s);
    report(read(e3, &v, 8) == 8 && v == BIG, "eventfd-64bit", "read %#llx", (unsigned long long)v);
    report(!(fcntl(e3, F_GETFL) & O_NONBLOCK) && (fcntl(e1, F_GETFL) & O_NONBLOCK), "eventfd-flags", "flags %#x/%#x", fcntl(e1, F_GETFL), fcntl(e3, F_GETFL));
  } else if (!strcmp(mode, "signalfd")) {
    struct signalfd_siginfo si; memset(&si, 0, sizeof si);
    ssize_t r = read(sfd, &si, sizeof si);
    report(r == sizeof si && si.ssi_signo == SIGUSR1, "signalfd-pending", "read %zd, signo %u", r, si.ssi_signo);
    report(read(sfd, &si, sizeof si) < 0 && errno == EAGAIN, "signalfd-drained", "a second signal came");
    const char *m = fdinfo(sfd, "sigmask:");
    report(strstr(m, "0000000000000a00") != NULL, "signalfd-mask", "%s", m);
    raise(SIGUSR2);
    r = read(sfd, &si, sizeof si);
    report(r == sizeof si && si.ssi_signo == SIGUSR2, "signalfd-new-signal", "read %zd, signo %u", r, si.ssi_signo);
  } else if (!strcmp(mode, "timerfd")) {
    uint64_t n = 0;
    report(read(t1, &n, 8) == 8 && n >= 1, "timerfd-ticks", "read %llu", (unsigned long long)n);
    report(read(t1, &n, 8) == 8 && n == 1, "timerfd-fires-again", "read %llu", (unsigned long long)n);
    double t0 = now_s(CLOCK_MONOTONIC); /* right after an expiry: the next is one period away */
    (void)!read(t1, &n, 8);
    double dt = now_s(CLOCK_MONOTONIC) - t0;
    report(dt > 0.07 && dt < 0.2, "timerfd-period", "next expiry after %.3f s", dt);
    struct itimerspec cur; timerfd_gettime(t1, &cur);
    report(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 100000000, "timerfd-interval", "%ld.%09ld", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
    n = 0;
    report(read(t2, &n, 8) == 8 && n == 1, "timerfd-unread-expiration", "read %llu", (unsigned long long)n);
    report(read(t2, &n, 8) < 0 && errno == EAGAIN, "timerfd-oneshot-done", "fired again");
    timerfd_gettime(t3, &cur);
    report(cur.it_value.tv_sec > 30 && cur.it_value.tv_sec <= 60, "timerfd-abstime-left", "%ld s left", (long)cur.it_value.tv_sec);
    report(!strcmp(fdinfo(t3, "clockid:"), "clockid: 0") && !strcmp(fdinfo(t3, "settime flags:"), "settime flags: 01"),
           "timerfd-abstime-clock", "%s / %s", fdinfo(t3, "clockid:"), fdinfo(t3, "settime flags:"));
  } else if (!strcmp(mode, "epoll")) {
    struct epoll_event ev[4]; memset(ev, 0, sizeof ev);
    int n = epoll_wait(ep, ev, 4, 0);
    int in = -1, out = -1;
    for (int i = 0; i < n; i++) {
      if (ev[i].data.u64 == 0x1122334455667788ull) in = ev[i].events;
      if (ev[i].data.u64 == 42) out = ev[i].events;
    }
    report(n == 2, "epoll-ready-count", "%d ready", n);
    report(in == EPOLLIN, "epoll-in-with-data", "events %#x", in);
    report(out == EPOLLOUT, "epoll-out-with-data", "events %#x", out);
    report(epoll_wait(ep, ev, 4, 0) == 1, "epoll-edge-triggered", "the EPOLLET target was reported again");
    report(count_lines(ep, "tfd:") == 2, "epoll-targets", "%d targets", count_lines(ep, "tfd:"));
    report(fcntl(ep, F_GETFD) & FD_CLOEXEC, "epoll-cloexec", "no FD_CLOEXEC");
  } else if (!strcmp(mode, "inotify")) {
    char buf[4096] __attribute__((aligned(8)));
    ssize_t r = read(ino, buf, sizeof buf);
    report(r < 0 && errno == EAGAIN, "inotify-no-stray-events", "read %zd", r);
    report(count_lines(ino, "inotify wd:") == 2, "inotify-watches", "%d watches", count_lines(ino, "inotify wd:"));
    int f = open(at("w/c"), O_WRONLY); (void)!write(f, "x", 1); close(f);
    r = read(ino, buf, sizeof buf);
    struct inotify_event *e = (struct inotify_event *)buf;
    report(r > 0 && e->wd == wc && wc == 3 && (e->mask & IN_MODIFY), "inotify-event-wd", "read %zd, wd %d (want %d), mask %#x", r, r > 0 ? e->wd : -1, wc, r > 0 ? e->mask : 0);
    chmod(at("w/a"), 0600);
    r = read(ino, buf, sizeof buf);
    report(r > 0 && e->wd == wa && wa == 1 && (e->mask & IN_ATTRIB), "inotify-first-watch", "read %zd, wd %d, mask %#x", r, r > 0 ? e->wd : -1, r > 0 ? e->mask : 0);
    f = open(at("w/b"), O_WRONLY); (void)!write(f, "x", 1); close(f);
    r = read(ino, buf, sizeof buf);
    report(r < 0, "inotify-removed-watch-stays-removed", "b reported an event");
  } else if (!strcmp(mode, "memfd")) {
    char p[64], l[256] = {0}; snprintf(p, sizeof p, "/proc/self/fd/%d", m1);
    (void)!readlink(p, l, sizeof l - 1);
    report(!strcmp(l, "/memfd:stasis-memfd (deleted)"), "memfd-name", "%s", l);
    struct stat s1, s2; fstat(m1, &s1); fstat(m2, &s2);
    report(s1.st_size == 12345, "memfd-size", "%lld", (long long)s1.st_size);
    unsigned char b[12345]; int bad = 0;
    if (pread(m1, b, sizeof b, 0) != (ssize_t)sizeof b) bad = -1;
    for (int i = 0; i < 12345 && bad >= 0; i++) if (b[i] != (i < 10000 ? (unsigned char)(i * 7 + 1) : 0)) bad++;
    report(bad == 0, "memfd-content", "%d bytes differ", bad);
    report(lseek(m1, 0, SEEK_CUR) == 100 && lseek(m2, 0, SEEK_CUR) == 0, "memfd-offsets", "%lld/%lld", (long long)lseek(m1, 0, SEEK_CUR), (long long)lseek(m2, 0, SEEK_CUR));
    int seals = fcntl(m1, F_GET_SEALS);
    report(seals == (F_SEAL_SHRINK | F_SEAL_GROW), "memfd-seals", "%#x", seals);
    report(s1.st_ino == s2.st_ino && (fcntl(m2, F_GETFL) & O_ACCMODE) == O_RDONLY, "memfd-second-open", "inodes %lu/%lu", (unsigned long)s1.st_ino, (unsigned long)s2.st_ino);
    (void)!pwrite(m1, "Z", 1, 0); char z = 0; (void)!pread(m2, &z, 1, 0);
    report(z == 'Z', "memfd-shared-inode", "second open read %c", z);
  } else if (!strcmp(mode, "fifo")) {
    char b[64] = {0};
    ssize_t r = read(fr, b, sizeof b);
    report(r == 11 && !memcmp(b, "lo, fifo!\n", 11), "fifo-unread-bytes", "read %zd '%s'", r, b);
    report(read(fr, b, sizeof b) < 0 && errno == EAGAIN, "fifo-nothing-more", "more bytes");
    report((fcntl(fr, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == (O_RDONLY | O_NONBLOCK) && (fcntl(fw, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == O_WRONLY,
           "fifo-flags", "%#x/%#x", fcntl(fr, F_GETFL), fcntl(fw, F_GETFL));
    (void)!write(fw, "again", 5);
    r = read(fr, b, sizeof b);
    report(r == 5 && !memcmp(b, "again", 5), "fifo-same-fifo", "read %zd", r);
    struct stat s; fstat(fr, &s);
    report(S_ISFIFO(s.st_mode), "fifo-is-fifo", "mode %o", s.st_mode);
  } else if (!strcmp(mode, "ghost")) {
    char p[64], l[4096] = {0}; snprintf(p, sizeof p, "/proc/self/fd/%d", gfd);
    (void)!readlink(p, l, sizeof l - 1);
    char want[4096]; snprintf(want, sizeof want, "%s (deleted)", at("ghost"));
    report(!strcmp(l, want), "ghost-link", "%s", l);
    struct stat s; fstat(gfd, &s);
    report(s.st_nlink == 0 && s.st_size == 5000 && (s.st_mode & 0777) == 0640, "ghost-unlinked", "nlink %lu size %lld mode %o", (unsigned long)s.st_nlink, (long long)s.st_size, s.st_mode & 0777);
    report(lseek(gfd, 0, SEEK_CUR) == 123, "ghost-offset", "%lld", (long long)lseek(gfd, 0, SEEK_CUR));
    unsigned char b[5000]; int bad = 0;
    if (pread(gfd, b, 5000, 0) != 5000) bad = -1;
    for (int i = 0; i < 5000 && bad >= 0; i++) if (b[i] != (unsigned char)(i * 13 + 5)) bad++;
    report(bad == 0, "ghost-content", "%d bytes differ", bad);
    report((fcntl(gfd, F_GETFL) & O_ACCMODE) == O_RDWR, "ghost-flags", "%#x", fcntl(gfd, F_GETFL));
    DIR *d = opendir(dir); struct dirent *de; int extra = 0;
    while ((de = readdir(d))) if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))) if (strcmp(de->d_name, "check")) { extra++; printf("left: %s\n", de->d_name); }
    closedir(d);
    report(extra == 0, "ghost-nothing-left", "%d files left in the directory", extra);
  } else if (!strcmp(mode, "locks")) {
    int f = open(at("lf"), O_RDWR);
    report(flock(f, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK, "flock-held", "a second open could take the lock");
    close(f);
    pid_t me = getpid(), c = fork();
    if (c == 0) {
      int p = open(at("lp"), O_RDWR);
      struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
      if (fcntl(p, F_GETLK, &q)) _exit(3);
      _exit(q.l_type == F_WRLCK && q.l_start == 10 && q.l_len == 10 && q.l_pid == me ? 0 : 1);
    }
    int st = 0; waitpid(c, &st, 0);
    report(WIFEXITED(st) && WEXITSTATUS(st) == 0, "posix-lock-held", "child saw status %#x", st);
    f = open(at("lo"), O_RDWR);
    struct flock q = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    int r = fcntl(f, F_OFD_GETLK, &q);
    report(r == 0 && q.l_type == F_RDLCK && q.l_pid == -1, "ofd-lock-held", "r %d type %d pid %d", r, q.l_type, q.l_pid);
    close(f);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  snprintf(dir, sizeof dir, "%s", argv[2]);
  setup(argv[1]);
  printf("ready %d\n", getpid());
  for (;;) {
    struct timespec ts = { 0, 20 * 1000000L };
    nanosleep(&ts, NULL);
    if (access(at("check"), F_OK) == 0) break;
  }
  check(argv[1]);
  return result();
}
