/* unix-pending: unix stream sockets that are not (yet) connected, as a server has them between
 * listen() and accept(). Run with DIR (the cwd from the start): prints "ready", waits for
 * DIR/check (after restore), then checks each item ("ok"/"FAIL" lines, "result PASS|FAIL").
 *   pending-*     a listener at DIR/pending.sock (mode 0640, owner 18943:58467) with one
 *                 connection accepted and one still waiting in its accept queue
 *   unconn-*      a stream socket bound to an abstract name, neither listening nor connected,
 *                 and an unbound one: both listen/connect after restore
 *   relative-*    a listener bound to the relative name rel-listen.sock (SO_REUSEADDR) and an
 *                 unconnected socket that connects to it by that name after restore
 *   dgram-unconn  an unbound, unconnected datagram socket still sends to a bound one
 * With "pending-data" the waiting client has written into its connection (which CRIU and stasis
 * refuse to dump: the bytes sit in a socket no descriptor reaches). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "selfcheck.h"

#define OWNER_UID 18943
#define OWNER_GID 58467

static void die(const char *what) { printf("ERR %s: %s\n", what, strerror(errno)); exit(2); }

/* `from` sends `msg`, `to` receives exactly it. */
static int exchange(int from, int to, const char *msg) {
  char buf[64] = {0};
  int n = strlen(msg);
  if (send(from, msg, n, MSG_NOSIGNAL) != n) return 0;
  return recv(to, buf, sizeof buf, MSG_DONTWAIT) == n && !memcmp(buf, msg, n);
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sockaddr_un a;
  socklen_t al;

  /* A listener with one connection accepted and one waiting. */
  char path[4096];
  snprintf(path, sizeof path, "%s/pending.sock", argv[1]);
  int ls = socket(AF_UNIX, SOCK_STREAM, 0);
  al = sun_path_addr(&a, path);
  if (bind(ls, (struct sockaddr *)&a, al) || chmod(path, 0640) || chown(path, OWNER_UID, OWNER_GID) || listen(ls, 16)) die("listener");
  int c1 = socket(AF_UNIX, SOCK_STREAM, 0), c2 = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(c1, (struct sockaddr *)&a, al)) die("connect c1");
  int s1 = accept(ls, NULL, NULL);
  if (s1 < 0) die("accept");
  if (connect(c2, (struct sockaddr *)&a, al)) die("connect c2");
  struct stat before;
  if (stat(path, &before)) die("stat");
  int pending_data = argc > 2 && !strcmp(argv[2], "pending-data");
  if (pending_data && write(c2, "early", 5) != 5) die("write");

  /* Unconnected stream sockets: one bound to an abstract name, one not bound at all. */
  char abs_name[64];
  snprintf(abs_name, sizeof abs_name, "stasis-unconn-%d", getpid());
  int ub = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un ua;
  socklen_t ual = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(abs_name);
  memset(&ua, 0, sizeof ua);
  ua.sun_family = AF_UNIX;
  memcpy(ua.sun_path + 1, abs_name, strlen(abs_name));
  if (bind(ub, (struct sockaddr *)&ua, ual)) die("bind abstract");
  int uu = socket(AF_UNIX, SOCK_STREAM, 0);

  /* A listener bound to a relative name, and a socket that will connect to it. */
  int one = 1;
  int rl = socket(AF_UNIX, SOCK_STREAM, 0), rc = socket(AF_UNIX, SOCK_STREAM, 0);
  setsockopt(rl, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(rc, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_un ra;
  socklen_t ral = sun_path_addr(&ra, "rel-listen.sock");
  if (bind(rl, (struct sockaddr *)&ra, ral) || listen(rl, 4)) die("relative listener");

  /* An unbound, unconnected datagram socket and a bound one to send to. */
  int du = socket(AF_UNIX, SOCK_DGRAM, 0), db = socket(AF_UNIX, SOCK_DGRAM, 0);
  struct sockaddr_un da;
  socklen_t dal = sun_path_addr(&da, "dgram-target.sock");
  if (bind(db, (struct sockaddr *)&da, dal)) die("bind dgram target");

  printf("ready\n");
  wait_check();

  struct stat after;
  int st = stat(path, &after);
  report(st == 0 && after.st_mode == before.st_mode && after.st_uid == OWNER_UID && after.st_gid == OWNER_GID,
         "pending-file-attrs", "mode %o uid %d gid %d (want %o %d %d)", after.st_mode, after.st_uid, after.st_gid,
         before.st_mode, OWNER_UID, OWNER_GID);
  report(exchange(c1, s1, "to-server-1") && exchange(s1, c1, "to-client-1"), "pending-accepted-connection", "no exchange");
  int s2 = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
  report(s2 >= 0, "pending-accept", "accept: %s", strerror(errno));
  if (s2 >= 0 && pending_data) {
    char early[8] = {0};
    report(recv(s2, early, sizeof early, MSG_DONTWAIT) == 5 && !memcmp(early, "early", 5), "pending-data", "the early bytes are lost");
  }
  if (s2 >= 0) report(exchange(c2, s2, "to-server-2") && exchange(s2, c2, "to-client-2"), "pending-connection-talks", "no exchange");
  fcntl(ls, F_SETFL, O_NONBLOCK);
  int s3 = accept(ls, NULL, NULL);
  report(s3 < 0 && errno == EAGAIN, "pending-queue-empty", "a second accept gave %d", s3);

  report(listen(ub, 1) == 0, "unconn-abstract-listen", "listen: %s", strerror(errno));
  int uc = socket(AF_UNIX, SOCK_STREAM, 0);
  report(connect(uc, (struct sockaddr *)&ua, ual) == 0, "unconn-abstract-connect", "connect: %s", strerror(errno));
  int ul = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un la;
  socklen_t lal = sun_path_addr(&la, "unconn-listen.sock");
  int okl = bind(ul, (struct sockaddr *)&la, lal) == 0 && listen(ul, 1) == 0;
  int okc = okl && connect(uu, (struct sockaddr *)&la, lal) == 0;
  int acc = okc ? accept(ul, NULL, NULL) : -1;
  report(acc >= 0 && exchange(uu, acc, "unbound"), "unconn-unbound-connects", "listen %d connect %d accept %d: %s", okl, okc, acc, strerror(errno));

  report(connect(rc, (struct sockaddr *)&ra, ral) == 0, "relative-connect", "connect: %s", strerror(errno));
  int ra_fd = accept(rl, NULL, NULL);
  report(ra_fd >= 0 && exchange(rc, ra_fd, "packet"), "relative-accept", "accept %d: %s", ra_fd, strerror(errno));

  char buf[16] = {0};
  int n = sendto(du, "dgram", 5, 0, (struct sockaddr *)&da, dal);
  report(n == 5 && recv(db, buf, sizeof buf, MSG_DONTWAIT) == 5 && !memcmp(buf, "dgram", 5), "dgram-unconn", "sendto %d", n);
  unlink("rel-listen.sock");
  unlink("unconn-listen.sock");
  unlink("dgram-target.sock");
  unlink(path);
  return result();
}
