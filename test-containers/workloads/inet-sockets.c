/* inet-sockets: sets up TCP and UDP sockets over 127.0.0.1 and ::1 that carry no connection,
 * prints "ready", waits for DIR/check (after restore), then checks every item itself:
 * "ok ITEM" / "FAIL ITEM: why", and "result PASS" / "result FAIL" (exit 0 / 1).
 *   inet-sockets DIR               the full set
 *   inet-sockets DIR established   one TCP connection to itself (which stasis refuses)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "selfcheck.h"

static void die(const char *what) { printf("ERR %s: %s\n", what, strerror(errno)); exit(2); }

/* A socket bound to the loopback address of `family` on an ephemeral port. */
static int bound(int family, int type, struct sockaddr_storage *ss, socklen_t *len) {
  int fd = socket(family, type, 0);
  if (fd < 0) die("socket");
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    *len = sizeof *a;
  }
  if (bind(fd, (struct sockaddr *)ss, *len) < 0) die("bind");
  getsockname(fd, (struct sockaddr *)ss, len);
  return fd;
}

static int int_opt(int fd, int level, int name) {
  int v = -1;
  socklen_t l = sizeof v;
  getsockopt(fd, level, name, &v, &l);
  return v;
}

/* The socket is still bound to exactly `want`. */
static void check_name(const char *item, int fd, struct sockaddr_storage *want, socklen_t wl) {
  struct sockaddr_storage got;
  socklen_t gl = sizeof got;
  memset(&got, 0, sizeof got);
  getsockname(fd, (struct sockaddr *)&got, &gl);
  char a[64] = "", b[64] = "";
  int port_w = ntohs(((struct sockaddr_in *)want)->sin_port), port_g = ntohs(((struct sockaddr_in *)&got)->sin_port);
  report(gl == wl && !memcmp(&got, want, wl), item, "bound to port %d (want %d)%s%s", port_g, port_w, a, b);
}

/* A new client connects to the listener, is accepted, and their bytes get through. */
static void check_accepts(const char *item, int lfd, struct sockaddr_storage *addr, socklen_t len) {
  int c = socket(addr->ss_family, SOCK_STREAM, 0);
  if (connect(c, (struct sockaddr *)addr, len) < 0) { report(0, item, "connect: %s", strerror(errno)); close(c); return; }
  int s = accept(lfd, NULL, NULL);
  if (s < 0) { report(0, item, "accept: %s", strerror(errno)); close(c); return; }
  char buf[8] = {0};
  write(c, "hello", 5);
  int n = read(s, buf, sizeof buf);
  report(n == 5 && !memcmp(buf, "hello", 5), item, "accepted end read %d", n);
  close(c); close(s);
}

/* A datagram sent to the UDP socket's address from a new socket arrives. */
static void check_receives(const char *item, int fd, struct sockaddr_storage *addr, socklen_t len) {
  int c = socket(addr->ss_family, SOCK_DGRAM, 0);
  int sent = sendto(c, "datagram", 8, 0, (struct sockaddr *)addr, len);
  char buf[16] = {0};
  struct timespec ts = { 0, 10 * 1000 * 1000 };
  int n = -1;
  for (int i = 0; i < 100 && n < 0; i++) {
    n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) nanosleep(&ts, NULL);
  }
  report(sent == 8 && n == 8 && !memcmp(buf, "datagram", 8), item, "sent %d, received %d", sent, n);
  close(c);
}

static void wait_for_check(const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/check", dir);
  struct timespec ts = { 0, 20 * 1000 * 1000 };
  while (access(path, F_OK) != 0) nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *dir = argv[1];
  setvbuf(stdout, NULL, _IOLBF, 0);
  int on = 1;

  if (argc > 2 && !strcmp(argv[2], "established")) {
    struct sockaddr_storage ss; socklen_t sl;
    int l = bound(AF_INET, SOCK_STREAM, &ss, &sl);
    if (listen(l, 1) < 0) die("listen");
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (struct sockaddr *)&ss, sl) < 0) die("connect");
    int s = accept(l, NULL, NULL);
    if (s < 0) die("accept");
    printf("ready\n");
    wait_for_check(dir);
    write(c, "x", 1);
    char b;
    report(read(s, &b, 1) == 1, "connection-intact", "read failed");
    printf("result %s\n", failures ? "FAIL" : "PASS");
    return failures;
  }

  /* 1. TCP listener on 127.0.0.1, SO_REUSEADDR, backlog 7, TCP_NODELAY, SO_KEEPALIVE */
  struct sockaddr_storage a1; socklen_t l1;
  int t4 = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(t4, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  close(t4);
  t4 = bound(AF_INET, SOCK_STREAM, &a1, &l1);
  setsockopt(t4, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  setsockopt(t4, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  setsockopt(t4, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  if (listen(t4, 7) < 0) die("listen 4");

  /* 2. TCP listener on ::1, IPV6_V6ONLY, non-blocking */
  struct sockaddr_storage a2; socklen_t l2;
  int t6 = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(t6, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  struct sockaddr_in6 six = { .sin6_family = AF_INET6, .sin6_addr = in6addr_loopback };
  if (bind(t6, (struct sockaddr *)&six, sizeof six) < 0) die("bind 6");
  l2 = sizeof a2;
  getsockname(t6, (struct sockaddr *)&a2, &l2);
  if (listen(t6, 3) < 0) die("listen 6");

  /* 3. UDP on 127.0.0.1 with a bigger receive buffer */
  struct sockaddr_storage a3; socklen_t l3;
  int u4 = bound(AF_INET, SOCK_DGRAM, &a3, &l3);
  int rcvbuf = 300000;
  setsockopt(u4, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  int want_rcvbuf = int_opt(u4, SOL_SOCKET, SO_RCVBUF);

  /* 4. UDP on ::1 */
  struct sockaddr_storage a4; socklen_t l4;
  int u6 = bound(AF_INET6, SOCK_DGRAM, &a4, &l4);

  /* 5. TCP bound but not listening */
  struct sockaddr_storage a5; socklen_t l5;
  int tb = bound(AF_INET, SOCK_STREAM, &a5, &l5);

  /* 6. a fresh TCP socket, never bound */
  int tf = socket(AF_INET6, SOCK_STREAM, 0);

  /* 7. UDP connected to socket 3 */
  int uc = socket(AF_INET, SOCK_DGRAM, 0);
  if (connect(uc, (struct sockaddr *)&a3, l3) < 0) die("connect udp");

  printf("ready\n");
  wait_for_check(dir);

  check_name("tcp4-listener-address", t4, &a1, l1);
  report(int_opt(t4, SOL_SOCKET, SO_ACCEPTCONN) == 1, "tcp4-listening", "not listening");
  report(int_opt(t4, SOL_SOCKET, SO_REUSEADDR) == 1 && int_opt(t4, IPPROTO_TCP, TCP_NODELAY) == 1 &&
         int_opt(t4, SOL_SOCKET, SO_KEEPALIVE) == 1, "tcp4-options", "reuseaddr %d, nodelay %d, keepalive %d",
         int_opt(t4, SOL_SOCKET, SO_REUSEADDR), int_opt(t4, IPPROTO_TCP, TCP_NODELAY), int_opt(t4, SOL_SOCKET, SO_KEEPALIVE));
  check_accepts("tcp4-listener-accepts", t4, &a1, l1);

  check_name("tcp6-listener-address", t6, &a2, l2);
  report(int_opt(t6, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "tcp6-v6only", "IPV6_V6ONLY lost");
  report((fcntl(t6, F_GETFL) & O_NONBLOCK) != 0, "tcp6-nonblocking", "O_NONBLOCK lost");
  {
    int c = socket(AF_INET6, SOCK_STREAM, 0);
    int r = connect(c, (struct sockaddr *)&a2, l2);
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    int s = -1;
    for (int i = 0; i < 100 && s < 0; i++) {
      s = accept(t6, NULL, NULL);
      if (s < 0) nanosleep(&ts, NULL);
    }
    report(r == 0 && s >= 0, "tcp6-listener-accepts", "connect %d, accept %d", r, s);
    close(c); if (s >= 0) close(s);
  }

  check_name("udp4-address", u4, &a3, l3);
  report(int_opt(u4, SOL_SOCKET, SO_RCVBUF) == want_rcvbuf, "udp4-rcvbuf", "SO_RCVBUF %d, want %d",
         int_opt(u4, SOL_SOCKET, SO_RCVBUF), want_rcvbuf);
  check_receives("udp4-receives", u4, &a3, l3);
  check_name("udp6-address", u6, &a4, l4);
  check_receives("udp6-receives", u6, &a4, l4);

  check_name("tcp-bound-address", tb, &a5, l5);
  report(listen(tb, 1) == 0, "tcp-bound-can-listen", "listen: %s", strerror(errno));
  check_accepts("tcp-bound-then-accepts", tb, &a5, l5);

  {
    struct sockaddr_in6 got; socklen_t gl = sizeof got;
    getsockname(tf, (struct sockaddr *)&got, &gl);
    report(int_opt(tf, SOL_SOCKET, SO_TYPE) == SOCK_STREAM && int_opt(tf, SOL_SOCKET, SO_DOMAIN) == AF_INET6 &&
           got.sin6_port == 0, "tcp-fresh-unbound", "type %d, domain %d, port %d",
           int_opt(tf, SOL_SOCKET, SO_TYPE), int_opt(tf, SOL_SOCKET, SO_DOMAIN), ntohs(got.sin6_port));
  }
  {
    struct sockaddr_storage peer; socklen_t pl = sizeof peer;
    int r = getpeername(uc, (struct sockaddr *)&peer, &pl);
    int sent = send(uc, "via-connected", 13, 0);
    char buf[32];
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    int n = -1;
    for (int i = 0; i < 100 && n < 0; i++) {
      n = recv(u4, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 0) nanosleep(&ts, NULL);
    }
    report(r == 0 && pl == l3 && !memcmp(&peer, &a3, l3) && sent == 13 && n == 13, "udp-connected",
           "getpeername %d, sent %d, received %d", r, sent, n);
  }

  return result();
}
