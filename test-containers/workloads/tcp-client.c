/* Established TCP connections with data queued both ways at the dump.
 * argv: WORKDIR CONN... where CONN is "c,HOST,PORT" (connect there) or "l,PORT" (accept one
 * connection there). On each connection, in order: writes a numbered byte pattern without blocking until the
 * kernel takes no more (the server reads nothing yet: the send queue is full, part of it unsent),
 * reads nothing (the server's pattern waits in the receive queue), prints "ready SENT..." (one count per connection).
 * After restore (WORKDIR/check): reads SERVER_BYTES of the server's pattern, each byte checked
 * (none lost, none repeated), then writes the trailer "END SENT\n" after its own pattern; the server
 * checks what it got and answers "OK COUNT\n". Also checks socket options and addresses survived. */
#include "selfcheck.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define SERVER_BYTES (512 * 1024)

static unsigned char client_byte(unsigned long i) { return (unsigned char)(i * 7 + i / 4093); }
static unsigned char server_byte(unsigned long i) { return (unsigned char)(i * 13 + i / 1021 + 5); }

static int read_full(int fd, unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r <= 0) return -1;
    got += r;
  }
  return 0;
}

struct conn { int fd; unsigned long sent; unsigned long expect; struct sockaddr_storage me; socklen_t melen; };

/* "c,HOST,PORT[,N]": connect there; "l,PORT[,N]": listen (IPv4, any address) and accept one.
 * N: the bytes of pattern the peer sends (SERVER_BYTES by default). */
static int open_conn(const char *spec, struct conn *c) {
  char host[128] = "";
  int port = 0, one = 1, idle = 77;
  c->expect = SERVER_BYTES;
  if (sscanf(spec, "l,%d,%lu", &port, &c->expect) >= 1 && spec[0] == 'l') {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4)) return -1;
    printf("listening %d\n", port);
    fflush(stdout);
    c->fd = accept(l, NULL, NULL);
    close(l);
    if (c->fd < 0) return -1;
  } else if (sscanf(spec, "c,%127[^,],%d,%lu", host, &port, &c->expect) >= 2) {
    int v6 = strchr(host, ':') != NULL;
    c->fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) return -1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (v6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      inet_pton(AF_INET6, host, &a->sin6_addr);
      len = sizeof *a;
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      inet_pton(AF_INET, host, &a->sin_addr);
      len = sizeof *a;
    }
    if (connect(c->fd, (struct sockaddr *)&ss, len)) return -1;
  } else {
    errno = EINVAL;
    return -1;
  }
  setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  c->melen = sizeof c->me;
  getsockname(c->fd, (struct sockaddr *)&c->me, &c->melen);
  return 0;
}

/* Fill the send queue: write without blocking until the kernel refuses more. */
static int fill(struct conn *c) {
  unsigned char chunk[4096];
  fcntl(c->fd, F_SETFL, O_NONBLOCK);
  for (int idle_rounds = 0; idle_rounds < 20;) {
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = client_byte(c->sent + i);
    ssize_t w = write(c->fd, chunk, sizeof chunk);
    if (w > 0) { c->sent += w; idle_rounds = 0; continue; }
    if (w < 0 && errno != EAGAIN) return -1;
    idle_rounds++;
    nap(10); /* the window may open a little more */
  }
  for (int i = 0, inq = 0; i < 100 && !inq; i++) { /* let the peer's bytes arrive too */
    ioctl(c->fd, FIONREAD, &inq);
    if (!inq) nap(10);
  }
  return 0;
}

static void check(struct conn *c, int n) {
  char item[64];
  fcntl(c->fd, F_SETFL, 0);
  unsigned char *got = malloc(c->expect);
  snprintf(item, sizeof item, "receive-queue-%d", n);
  if (read_full(c->fd, got, c->expect)) report(0, item, "read: %s", strerror(errno));
  else {
    unsigned long bad = c->expect;
    for (unsigned long i = 0; i < c->expect; i++) if (got[i] != server_byte(i)) { bad = i; break; }
    report(bad == c->expect, item, "byte %lu differs (0x%02x, not 0x%02x)", bad, got[bad], server_byte(bad));
  }
  free(got);
  char trailer[64];
  int len = snprintf(trailer, sizeof trailer, "END %lu\n", c->sent);
  snprintf(item, sizeof item, "send-%d", n);
  report(write(c->fd, trailer, len) == len, item, "write: %s", strerror(errno));
  char answer[64] = {0};
  size_t alen = 0;
  while (alen < sizeof answer - 1 && (alen == 0 || answer[alen - 1] != '\n')) {
    ssize_t r = read(c->fd, answer + alen, 1);
    if (r <= 0) break;
    alen += r;
  }
  char expect[64];
  snprintf(expect, sizeof expect, "OK %lu\n", c->sent);
  snprintf(item, sizeof item, "send-queue-%d", n);
  report(!strcmp(answer, expect), item, "peer answered '%s', wanted '%s'", answer, expect);
  int v = 0;
  socklen_t vl = sizeof v;
  getsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &vl);
  snprintf(item, sizeof item, "keepidle-%d", n);
  report(v == 77, item, "TCP_KEEPIDLE is %d", v);
  struct sockaddr_storage now;
  socklen_t nowlen = sizeof now;
  getsockname(c->fd, (struct sockaddr *)&now, &nowlen);
  snprintf(item, sizeof item, "address-%d", n);
  report(nowlen == c->melen && !memcmp(&now, &c->me, c->melen), item, "the local address changed");
}

int main(int argc, char **argv) {
  if (argc < 3 || chdir(argv[1])) return setup_failed("usage: tcp-client WORKDIR c,HOST,PORT|l,PORT...");
  int n = argc - 2;
  struct conn *conns = calloc(n, sizeof *conns);
  for (int i = 0; i < n; i++) if (open_conn(argv[2 + i], &conns[i])) return setup_failed(argv[2 + i]);
  for (int i = 0; i < n; i++) if (fill(&conns[i])) return setup_failed("write");
  printf("ready");
  for (int i = 0; i < n; i++) printf(" %lu", conns[i].sent);
  printf("\n");
  fflush(stdout);
  wait_check();
  for (int i = 0; i < n; i++) check(&conns[i], i);
  return result();
}
