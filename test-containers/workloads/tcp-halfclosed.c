/* A half-closed TCP connection at the dump, in the state MODE names.
 * argv: WORKDIR MODE HOST PORT, MODE one of close_wait, fin_wait1, fin_wait2, last_ack, closing.
 * The peer (test/net-ns/tcp-peers.ts, HalfClosePeer) sends TOTAL bytes of its pattern over the
 * connection's life; the workload reads the first KEEP of them before the dump, the rest (and EOF)
 * after. Its own bytes: a pattern, "written N" counting them.
 *   close_wait: the peer sent all and shut down; we fill our send queue (the peer reads nothing).
 *   last_ack:   the same, then we shut down writing (our FIN waits behind the data: zero window).
 *   fin_wait1:  we fill our send queue (zero window) and shut down writing; the peer still sends.
 *   closing:    we fill, shut down writing (then WORKDIR/shut: the test has the peer shut down).
 *   fin_wait2:  we write some bytes and shut down, the peer reads and acknowledges; it still sends.
 * Prints "ready WRITTEN" in that state (the test checks it, and the restored one's). After
 * restore (WORKDIR/check): the rest of the peer's bytes arrive in order, then EOF, exactly at TOTAL; close_wait
 * writes the trailer "END\n" (its direction is open) and shuts down; the others find writing
 * refused (EPIPE). */
#include "selfcheck.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define TOTAL 60000
#define KEEP 10000
#define FIN_WAIT2_BYTES 30000

static unsigned char my_byte(unsigned long i) { return (unsigned char)(i * 7 + i / 4093); }
static unsigned char peer_byte(unsigned long i) { return (unsigned char)(i * 13 + i / 1021 + 5); }

static int state_of(int fd) {
  struct tcp_info ti;
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len)) return -1;
  return ti.tcpi_state;
}

static int wait_state(int fd, int want) {
  for (int i = 0; i < 500; i++) {
    if (state_of(fd) == want) return 0;
    nap(10);
  }
  errno = ETIMEDOUT;
  return -1;
}

/* Read and check the peer's bytes [*got, upto); upto = TOTAL reads to EOF too. */
static int read_peer(int fd, unsigned long *got, unsigned long upto, char *why, size_t n) {
  unsigned char buf[4096];
  while (*got < upto) {
    size_t want = upto - *got < sizeof buf ? upto - *got : sizeof buf;
    ssize_t r = read(fd, buf, want);
    if (r < 0) { snprintf(why, n, "read at %lu: %s", *got, strerror(errno)); return -1; }
    if (r == 0) { snprintf(why, n, "EOF at %lu, before %lu", *got, upto); return -1; }
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] != peer_byte(*got + i)) { snprintf(why, n, "byte %lu differs", *got + i); return -1; }
    }
    *got += r;
  }
  return 0;
}

/* Write our pattern without blocking until the kernel takes no more (the peer reads nothing). */
static unsigned long fill(int fd, unsigned long sent) {
  unsigned char chunk[4096];
  fcntl(fd, F_SETFL, O_NONBLOCK);
  for (int idle = 0; idle < 20;) {
    for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = my_byte(sent + i);
    ssize_t w = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
    if (w > 0) { sent += w; idle = 0; continue; }
    idle++;
    nap(10);
  }
  fcntl(fd, F_SETFL, 0);
  return sent;
}

static int wait_inq(int fd, int want) {
  for (int i = 0, inq = -1; i < 500; i++) {
    ioctl(fd, FIONREAD, &inq);
    if (inq == want) return 0;
    nap(10);
  }
  errno = ETIMEDOUT;
  return -1;
}

int main(int argc, char **argv) {
  if (argc != 5 || chdir(argv[1])) return setup_failed("usage: tcp-halfclosed WORKDIR MODE HOST PORT");
  const char *mode = argv[2];
  int v6 = strchr(argv[3], ':') != NULL;
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  struct sockaddr_storage ss = {0};
  socklen_t len;
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(atoi(argv[4]));
    inet_pton(AF_INET6, argv[3], &a->sin6_addr);
    len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons(atoi(argv[4]));
    inet_pton(AF_INET, argv[3], &a->sin_addr);
    len = sizeof *a;
  }
  if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len)) return setup_failed("connect");
  char why[128];
  unsigned long got = 0, sent = 0;
  if (read_peer(fd, &got, KEEP, why, sizeof why)) { errno = EIO; return setup_failed(why); }
  int want;
  if (!strcmp(mode, "close_wait")) {
    sent = fill(fd, 0);
    if (wait_state(fd, TCP_CLOSE_WAIT)) return setup_failed("waiting for CLOSE_WAIT");
    want = TCP_CLOSE_WAIT;
  } else if (!strcmp(mode, "last_ack")) {
    sent = fill(fd, 0);
    if (wait_state(fd, TCP_CLOSE_WAIT)) return setup_failed("waiting for CLOSE_WAIT");
    if (shutdown(fd, SHUT_WR)) return setup_failed("shutdown");
    want = TCP_LAST_ACK;
  } else if (!strcmp(mode, "fin_wait1") || !strcmp(mode, "closing")) {
    sent = fill(fd, 0);
    if (shutdown(fd, SHUT_WR)) return setup_failed("shutdown");
    if (state_of(fd) != TCP_FIN_WAIT1) return setup_failed("not in FIN_WAIT1 after shutdown");
    want = TCP_FIN_WAIT1;
    if (!strcmp(mode, "closing")) {
      /* The test has the peer shut down once it sees WORKDIR/shut. */
      int f = open("shut", O_CREAT | O_WRONLY, 0644);
      if (f < 0) return setup_failed("creating shut");
      close(f);
      want = TCP_CLOSING;
    }
  } else if (!strcmp(mode, "fin_wait2")) {
    unsigned char chunk[FIN_WAIT2_BYTES];
    for (unsigned long i = 0; i < sizeof chunk; i++) chunk[i] = my_byte(i);
    if (send(fd, chunk, sizeof chunk, MSG_NOSIGNAL) != sizeof chunk) return setup_failed("write");
    sent = sizeof chunk;
    if (shutdown(fd, SHUT_WR)) return setup_failed("shutdown");
    want = TCP_FIN_WAIT2;
  } else {
    errno = EINVAL;
    return setup_failed(mode);
  }
  if (wait_state(fd, want)) return setup_failed("waiting for the state");
  /* The peer's bytes sent so far are all here (in the receive queue) before the dump. */
  int queued = 0;
  for (int i = 0, last = -1; i < 20; i++, last = queued) {
    nap(10);
    ioctl(fd, FIONREAD, &queued);
    if (queued == last && queued > 0) break;
  }
  if (!strcmp(mode, "close_wait") || !strcmp(mode, "last_ack") || !strcmp(mode, "closing")) {
    if (wait_inq(fd, TOTAL - KEEP)) return setup_failed("waiting for the peer's bytes");
  }
  printf("ready %lu\n", sent);
  fflush(stdout);
  wait_check();

  int ok = !read_peer(fd, &got, TOTAL, why, sizeof why);
  report(ok, "peer-bytes", "%s", why);
  char c;
  ssize_t r = read(fd, &c, 1);
  report(r == 0, "eof", "after %lu bytes read gave %zd (%s), not EOF", got, r, r < 0 ? strerror(errno) : "data");
  r = read(fd, &c, 1);
  report(r == 0, "eof-again", "a second read gave %zd, not EOF", r);
  if (!strcmp(mode, "close_wait")) {
    report(send(fd, "END\n", 4, MSG_NOSIGNAL) == 4, "write", "write: %s", strerror(errno));
    report(shutdown(fd, SHUT_WR) == 0, "shutdown", "shutdown: %s", strerror(errno));
  } else {
    errno = 0;
    r = send(fd, "x", 1, MSG_NOSIGNAL);
    report(r < 0 && errno == EPIPE, "write-shut", "a write after shutdown gave %zd (%s), not EPIPE", r, strerror(errno));
  }
  /* Our bytes (and FIN) leave before we exit: wait until the peer has them all. */
  for (int i = 0, outq = 1; i < 1000 && outq; i++) {
    ioctl(fd, TIOCOUTQ, &outq);
    if (outq) nap(10);
  }
  return result();
}
