/* unix-sockets: sets up unix sockets of every kind stasis restores, prints "ready", waits for
 * DIR/check (after restore), then checks every item itself: "ok ITEM" / "FAIL ITEM: why", and
 * "result PASS" / "result FAIL" (exit 0 / 1).
 *   unix-sockets DIR            the full set
 *   unix-sockets DIR external   one socket connected to a listener at DIR/ext.sock (outside)
 *   unix-sockets DIR external-dgram PATH   a datagram socket connected to one bound at PATH
 *                               (outside); after restore it sends "hello from the restored task"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "selfcheck.h"

static void die(const char *what) { printf("ERR %s: %s\n", what, strerror(errno)); exit(2); }

static socklen_t addr_of(struct sockaddr_un *a, const char *name, int abstract) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  if (abstract) {
    a->sun_path[0] = 0;
    memcpy(a->sun_path + 1, name, strlen(name));
    return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name);
  }
  strcpy(a->sun_path, name);
  return offsetof(struct sockaddr_un, sun_path) + strlen(name) + 1;
}

/* Receive without blocking; -1 when nothing is queued. */
static int take(int fd, char *buf, int len) {
  int n = recv(fd, buf, len, MSG_DONTWAIT);
  return n;
}

/* Exactly `want` bytes are queued on a stream socket, and they are `want`. */
static void check_stream_queue(const char *item, int fd, const char *want) {
  int avail = -1;
  ioctl(fd, FIONREAD, &avail);
  char buf[4096] = {0};
  int n = take(fd, buf, sizeof buf);
  int extra = take(fd, buf + (n > 0 ? n : 0), 16);
  report(avail == (int)strlen(want) && n == (int)strlen(want) && !memcmp(buf, want, n) && extra < 0, item,
         "FIONREAD %d, read %d bytes \"%.*s\", then %d (want %zu bytes \"%s\")", avail, n, n > 0 ? n : 0, buf,
         extra, strlen(want), want);
}

static void check_name(const char *item, int fd, const char *name, int abstract) {
  struct sockaddr_un want, got;
  socklen_t wl = addr_of(&want, name, abstract), gl = sizeof got;
  memset(&got, 0, sizeof got);
  if (getsockname(fd, (struct sockaddr *)&got, &gl) < 0) { report(0, item, "getsockname: %s", strerror(errno)); return; }
  report(gl == wl && !memcmp(&got, &want, wl), item, "bound to \"%s%s\" (len %u), want \"%s%s\" (len %u)",
         abstract ? "@" : "", got.sun_path + (abstract ? 1 : 0), gl, abstract ? "@" : "", name, wl);
}

/* A new client can connect to the listener and talk to the accepted end. */
static void check_accepts(const char *item, int lfd, const char *name, int abstract) {
  int acc = -1;
  socklen_t l = sizeof acc;
  getsockopt(lfd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l);
  struct sockaddr_un a;
  socklen_t al = addr_of(&a, name, abstract);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr *)&a, al) < 0) { report(0, item, "connect: %s", strerror(errno)); return; }
  int s = accept(lfd, NULL, NULL);
  if (s < 0) { report(0, item, "accept: %s", strerror(errno)); return; }
  char buf[8] = {0};
  write(c, "ping", 4);
  int n = read(s, buf, sizeof buf);
  report(acc == 1 && n == 4 && !memcmp(buf, "ping", 4), item, "SO_ACCEPTCONN %d, accepted end read %d", acc, n);
  close(c); close(s);
}

static int wait_for_check(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/check", dir);
  struct timespec ts = { 0, 20 * 1000 * 1000 };
  while (access(path, F_OK) != 0) nanosleep(&ts, NULL);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *dir = argv[1];
  setvbuf(stdout, NULL, _IOLBF, 0);
  char path[4096];
  char abs_name[64];
  snprintf(abs_name, sizeof abs_name, "stasis-test-%d", getpid());

  if (argc > 2 && !strcmp(argv[2], "external-dgram")) {
    struct sockaddr_un a;
    snprintf(path, sizeof path, "%s", argc > 3 ? argv[3] : "extd.sock");
    socklen_t al = addr_of(&a, path, 0);
    int c = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (connect(c, (struct sockaddr *)&a, al) < 0) die("connect extd");
    printf("ready\n");
    wait_for_check(dir);
    const char *msg = "hello from the restored task";
    ssize_t n = send(c, msg, strlen(msg), 0);
    report(n == (ssize_t)strlen(msg), "external-dgram-send", "send gave %zd (%s)", n, n < 0 ? strerror(errno) : "");
    return result();
  }

  if (argc > 2 && !strcmp(argv[2], "external")) {
    struct sockaddr_un a;
    snprintf(path, sizeof path, "%s/ext.sock", dir);
    socklen_t al = addr_of(&a, path, 0);
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&a, al) < 0) die("connect ext");
    printf("ready\n");
    wait_for_check(dir);
    printf("result PASS\n");
    return 0;
  }

  /* 1. stream socketpair, data queued both ways */
  int sp[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) < 0) die("socketpair stream");
  write(sp[1], "hello, stream!", 14);
  write(sp[0], "reply", 5);

  /* 2. datagram socketpair: three datagrams of different sizes */
  int dp[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dp) < 0) die("socketpair dgram");
  static char big[3000];
  for (int i = 0; i < (int)sizeof big; i++) big[i] = 'a' + i % 26;
  send(dp[1], "one", 3, 0);
  send(dp[1], "two-two", 7, 0);
  send(dp[1], big, sizeof big, 0);

  /* 3. seqpacket socketpair: two records */
  int qp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, qp) < 0) die("socketpair seqpacket");
  send(qp[0], "rec1", 4, 0);
  send(qp[0], "record-2-longer", 15, 0);

  /* 4. datagram server bound to a path, a client connected to it, two datagrams queued */
  char dgram_path[4096];
  snprintf(dgram_path, sizeof dgram_path, "%s/dgram.sock", dir);
  struct sockaddr_un a;
  socklen_t al = addr_of(&a, dgram_path, 0);
  int ds = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (bind(ds, (struct sockaddr *)&a, al) < 0) die("bind dgram");
  chmod(dgram_path, 0640);
  int dc = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (connect(dc, (struct sockaddr *)&a, al) < 0) die("connect dgram");
  send(dc, "first", 5, 0);
  send(dc, "second!", 7, 0);

  /* 5. datagram socket with an abstract name, nothing queued, non-blocking */
  int da = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  al = addr_of(&a, abs_name, 1);
  if (bind(da, (struct sockaddr *)&a, al) < 0) die("bind abstract");

  /* 6. listener on a path, backlog 5 */
  char listen_path[4096];
  snprintf(listen_path, sizeof listen_path, "%s/listen.sock", dir);
  int ls = socket(AF_UNIX, SOCK_STREAM, 0);
  al = addr_of(&a, listen_path, 0);
  if (bind(ls, (struct sockaddr *)&a, al) < 0 || listen(ls, 5) < 0) die("listen path");

  /* 7. stream listener on an abstract name */
  char labs[80];
  snprintf(labs, sizeof labs, "%s-listen", abs_name);
  int la = socket(AF_UNIX, SOCK_STREAM, 0);
  al = addr_of(&a, labs, 1);
  if (bind(la, (struct sockaddr *)&a, al) < 0 || listen(la, 16) < 0) die("listen abstract");

  /* 8. a connection accepted from the listener, data queued both ways */
  int cc = socket(AF_UNIX, SOCK_STREAM, 0);
  al = addr_of(&a, listen_path, 0);
  if (connect(cc, (struct sockaddr *)&a, al) < 0) die("connect listener");
  int acc = accept(ls, NULL, NULL);
  if (acc < 0) die("accept");
  write(cc, "to-server", 9);
  write(acc, "to-client", 9);

  /* 9. options: SO_PASSCRED, SO_SNDBUF, SO_RCVTIMEO */
  int on = 1, sndbuf = 65536;
  struct timeval tv = { 3, 250000 };
  setsockopt(sp[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
  setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  setsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  int want_sndbuf = 0;
  socklen_t ol = sizeof want_sndbuf;
  getsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &want_sndbuf, &ol);
  struct timeval want_tv = {0}; /* the kernel keeps jiffies: 3.25 s may read back as 3.252 */
  ol = sizeof want_tv;
  getsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &want_tv, &ol);

  /* 10. shut down for writing after queuing data: the other end reads it, then EOF */
  int sh[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sh) < 0) die("socketpair shutdown");
  write(sh[0], "last words", 10);
  shutdown(sh[0], SHUT_WR);

  /* 11. the peer closed after queuing data */
  int pc[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, pc) < 0) die("socketpair closed");
  write(pc[1], "orphaned", 8);
  close(pc[1]);

  /* 12. a relative name, bound in DIR (the cwd from now on) */
  if (chdir(dir) < 0) die("chdir");
  int rs = socket(AF_UNIX, SOCK_DGRAM, 0);
  al = addr_of(&a, "rel.sock", 0);
  if (bind(rs, (struct sockaddr *)&a, al) < 0) die("bind relative");

  printf("ready\n");
  wait_for_check(dir);

  check_stream_queue("stream-pair-queue-a", sp[0], "hello, stream!");
  check_stream_queue("stream-pair-queue-b", sp[1], "reply");
  write(sp[0], "x", 1);
  char c1 = 0;
  report(read(sp[1], &c1, 1) == 1 && c1 == 'x', "stream-pair-connected", "no round trip");

  {
    char buf[4096];
    int n1 = take(dp[0], buf, sizeof buf), ok1 = n1 == 3 && !memcmp(buf, "one", 3);
    int n2 = take(dp[0], buf, sizeof buf), ok2 = n2 == 7 && !memcmp(buf, "two-two", 7);
    int n3 = take(dp[0], buf, sizeof buf), ok3 = n3 == (int)sizeof big && !memcmp(buf, big, sizeof big);
    int n4 = take(dp[0], buf, sizeof buf);
    report(ok1 && ok2 && ok3 && n4 < 0, "dgram-pair-boundaries", "datagrams of %d, %d, %d bytes then %d (want 3, 7, 3000, then none)", n1, n2, n3, n4);
  }
  {
    char buf[64];
    int n1 = take(qp[1], buf, sizeof buf), ok1 = n1 == 4 && !memcmp(buf, "rec1", 4);
    int n2 = take(qp[1], buf, sizeof buf), ok2 = n2 == 15 && !memcmp(buf, "record-2-longer", 15);
    int n3 = take(qp[1], buf, sizeof buf);
    report(ok1 && ok2 && n3 < 0, "seqpacket-pair-boundaries", "records of %d, %d bytes then %d (want 4, 15, none)", n1, n2, n3);
  }
  {
    check_name("dgram-path-name", ds, dgram_path, 0);
    char buf[64];
    int n1 = take(ds, buf, sizeof buf), ok1 = n1 == 5 && !memcmp(buf, "first", 5);
    int n2 = take(ds, buf, sizeof buf), ok2 = n2 == 7 && !memcmp(buf, "second!", 7);
    int n3 = take(ds, buf, sizeof buf);
    report(ok1 && ok2 && n3 < 0, "dgram-path-queue", "datagrams of %d, %d bytes then %d (want 5, 7, none)", n1, n2, n3);
    int sent = send(dc, "again", 5, 0);
    int n4 = take(ds, buf, sizeof buf);
    report(sent == 5 && n4 == 5, "dgram-client-still-connected", "send %d, server got %d", sent, n4);
    struct stat st;
    report(stat(dgram_path, &st) == 0 && (st.st_mode & 0777) == 0640 && S_ISSOCK(st.st_mode), "dgram-path-file-mode",
           "mode %o", st.st_mode);
  }
  check_name("dgram-abstract-name", da, abs_name, 1);
  report((fcntl(da, F_GETFL) & O_NONBLOCK) != 0, "dgram-abstract-nonblocking", "O_NONBLOCK lost");
  check_name("listener-path-name", ls, listen_path, 0);
  check_accepts("listener-path-accepts", ls, listen_path, 0);
  check_name("listener-abstract-name", la, labs, 1);
  check_accepts("listener-abstract-accepts", la, labs, 1);
  check_stream_queue("accepted-connection-queue-server", acc, "to-server");
  check_stream_queue("accepted-connection-queue-client", cc, "to-client");
  {
    int v = 0, sb = 0;
    struct timeval t2 = {0};
    socklen_t l1 = sizeof v, l2 = sizeof sb, l3 = sizeof t2;
    getsockopt(sp[0], SOL_SOCKET, SO_PASSCRED, &v, &l1);
    getsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &sb, &l2);
    getsockopt(sp[0], SOL_SOCKET, SO_RCVTIMEO, &t2, &l3);
    report(v == 1 && sb == want_sndbuf && t2.tv_sec == want_tv.tv_sec && t2.tv_usec == want_tv.tv_usec, "socket-options",
           "passcred %d, sndbuf %d (want %d), rcvtimeo %ld.%06ld (want %ld.%06ld)", v, sb, want_sndbuf,
           (long)t2.tv_sec, (long)t2.tv_usec, (long)want_tv.tv_sec, (long)want_tv.tv_usec);
  }
  {
    char buf[64];
    int n1 = take(sh[1], buf, sizeof buf);
    int n2 = take(sh[1], buf, sizeof buf);
    int w = send(sh[0], "x", 1, MSG_NOSIGNAL);
    report(n1 == 10 && !memcmp(buf, "last words", 10) && n2 == 0 && w < 0 && errno == EPIPE, "shutdown-write",
           "read %d then %d, write after shutdown %d", n1, n2, w);
  }
  {
    char buf[64];
    int n1 = take(pc[0], buf, sizeof buf);
    int n2 = take(pc[0], buf, sizeof buf);
    report(n1 == 8 && !memcmp(buf, "orphaned", 8) && n2 == 0, "closed-peer-queue", "read %d then %d (want 8, then EOF)", n1, n2);
  }
  check_name("relative-name", rs, "rel.sock", 0);

  return result();
}
