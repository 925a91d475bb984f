/* An established TCP connection with data queued both ways at the dump.
 * argv: WORKDIR HOST PORT. Connects, then writes a numbered byte pattern without blocking until the
 * kernel takes no more (the server reads nothing yet: the send queue is full, part of it unsent),
 * reads nothing (the server's pattern waits in the receive queue), prints "ready SENT".
 * After restore (WORKDIR/check): reads SERVER_BYTES of the server's pattern, each byte checked
 * (none lost, none repeated), then writes the trailer "END SENT\n" after its own pattern; the server
 * checks what it got and answers "OK COUNT\n". Also checks its socket options survived. */
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

int main(int argc, char **argv) {
  if (argc < 4 || chdir(argv[1])) return setup_failed("usage: tcp-client WORKDIR HOST PORT");
  int fd = socket(strchr(argv[2], ':') ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return setup_failed("socket");
  int one = 1, idle = 77;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  struct sockaddr_storage ss = {0};
  socklen_t len;
  if (strchr(argv[2], ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(atoi(argv[3]));
    inet_pton(AF_INET6, argv[2], &a->sin6_addr);
    len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(atoi(argv[3]));
    inet_pton(AF_INET, argv[2], &a->sin_addr);
    len = sizeof *a;
  }
  if (connect(fd, (struct sockaddr *)&ss, len)) return setup_failed("connect");
  struct sockaddr_storage me;
  socklen_t melen = sizeof me;
  getsockname(fd, (struct sockaddr *)&me, &melen);

  /* Fill the send queue: write without blocking until the kernel refuses more. */
  fcntl(fd, F_SETFL, O_NONBLOCK);
  unsigned long sent = 0;
  unsigned char chunk[4096];
  for (int idle_rounds = 0; idle_rounds < 20;) {
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = client_byte(sent + i);
    ssize_t w = write(fd, chunk, sizeof chunk);
    if (w > 0) { sent += w; idle_rounds = 0; continue; }
    if (w < 0 && errno != EAGAIN) return setup_failed("write");
    idle_rounds++;
    nap(10); /* the window may open a little more */
  }
  int inq = 0;
  /* Let the server's bytes arrive too. */
  for (int i = 0; i < 100; i++) {
    ioctl(fd, FIONREAD, &inq);
    if (inq > 0) break;
    nap(10);
  }
  printf("ready %lu queued-in %d\n", sent, inq);
  fflush(stdout);
  wait_check();

  fcntl(fd, F_SETFL, 0);
  unsigned char *got = malloc(SERVER_BYTES);
  if (read_full(fd, got, SERVER_BYTES)) report(0, "receive-queue", "read: %s", strerror(errno));
  else {
    unsigned long bad = SERVER_BYTES;
    for (unsigned long i = 0; i < SERVER_BYTES; i++) if (got[i] != server_byte(i)) { bad = i; break; }
    report(bad == SERVER_BYTES, "receive-queue", "byte %lu differs (0x%02x, not 0x%02x)", bad, got[bad], server_byte(bad));
  }
  char trailer[64];
  int n = snprintf(trailer, sizeof trailer, "END %lu\n", sent);
  report(write(fd, trailer, n) == n, "send", "write: %s", strerror(errno));
  char answer[64] = {0};
  size_t alen = 0;
  while (alen < sizeof answer - 1 && (alen == 0 || answer[alen - 1] != '\n')) {
    ssize_t r = read(fd, answer + alen, 1);
    if (r <= 0) break;
    alen += r;
  }
  char expect[64];
  snprintf(expect, sizeof expect, "OK %lu\n", sent);
  report(!strcmp(answer, expect), "send-queue", "server answered '%s', wanted '%s'", answer, expect);

  int v = 0;
  socklen_t vl = sizeof v;
  getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &vl);
  report(v == 1, "nodelay", "TCP_NODELAY is %d", v);
  getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, &vl);
  report(v == idle, "keepidle", "TCP_KEEPIDLE is %d", v);
  struct sockaddr_storage now;
  socklen_t nowlen = sizeof now;
  getsockname(fd, (struct sockaddr *)&now, &nowlen);
  report(nowlen == melen && !memcmp(&now, &me, melen), "address", "the local address changed");
  return result();
}
