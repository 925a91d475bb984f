/* unix-gone: sockets bound by path whose file, and then whose directory, were removed while they
 * stay in use. Run with DIR (the cwd from the start): prints "ready", waits for DIR/check (after
 * restore), then checks each item ("ok"/"FAIL" lines, "result PASS|FAIL").
 *   gone-dgram-*    in DIR/gone/dg: a server bound to sk, a client connected, the file removed;
 *                   a second server bound to the same name, its client, removed again; the
 *                   directory removed. Each client's datagram reaches its own server.
 *   gone-pair       a datagram socketpair, both ends bound (in turn) to one name in DIR/gone/dg
 *   gone-sole       a server bound to DIR/gone/sole with a client, the file removed; a second
 *                   server bound there (file kept) with its client
 *   gone-stream     in DIR/gone/st: a listener with two accepted connections, the file and the
 *                   directory removed
 *   gone-dirs       DIR/gone/dg and DIR/gone/st are still gone after the restore */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "selfcheck.h"

static void die(const char *what) { printf("ERR %s: %s\n", what, strerror(errno)); exit(2); }

static socklen_t addr_of(struct sockaddr_un *a, const char *dir, const char *name) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  snprintf(a->sun_path, sizeof a->sun_path, "%s/%s", dir, name);
  return offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1;
}

static int sock(int type, const struct sockaddr_un *bind_to, const struct sockaddr_un *connect_to, socklen_t al) {
  int s = socket(AF_UNIX, type, 0);
  if (s < 0) die("socket");
  if (bind_to && bind(s, (const struct sockaddr *)bind_to, al)) die("bind");
  if (connect_to && connect(s, (const struct sockaddr *)connect_to, al)) die("connect");
  return s;
}

/* `from` sends an int, `to` receives the same one (without waiting). */
static int talks(int from, int to, int v) {
  int back = -1;
  return write(from, &v, sizeof v) == sizeof v && recv(to, &back, sizeof back, MSG_DONTWAIT) == sizeof back && back == v;
}

static int gone(const char *path) {
  DIR *d = opendir(path);
  if (d) closedir(d);
  return !d && errno == ENOENT;
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  char base[150], dg[170], st[170];
  snprintf(base, sizeof base, "%s/gone", argv[1]);
  snprintf(dg, sizeof dg, "%s/dg", base);
  snprintf(st, sizeof st, "%s/st", base);
  if (mkdir(base, 0755) || mkdir(dg, 0755) || mkdir(st, 0755)) die("mkdir");
  struct sockaddr_un a;
  socklen_t al;

  al = addr_of(&a, dg, "sk");
  int s1 = sock(SOCK_DGRAM, &a, NULL, al), c1 = sock(SOCK_DGRAM, NULL, &a, al);
  unlink(a.sun_path);
  int s2 = sock(SOCK_DGRAM, &a, NULL, al), c2 = sock(SOCK_DGRAM, NULL, &a, al);
  unlink(a.sun_path);

  al = addr_of(&a, base, "sole");
  int s3 = sock(SOCK_DGRAM, &a, NULL, al), c3 = sock(SOCK_DGRAM, NULL, &a, al);
  unlink(a.sun_path);
  int s4 = sock(SOCK_DGRAM, &a, NULL, al), c4 = sock(SOCK_DGRAM, NULL, &a, al);

  int pair[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pair)) die("socketpair");
  al = addr_of(&a, dg, "pair");
  if (bind(pair[0], (struct sockaddr *)&a, al)) die("bind pair 0");
  unlink(a.sun_path);
  if (bind(pair[1], (struct sockaddr *)&a, al)) die("bind pair 1");
  unlink(a.sun_path);
  if (rmdir(dg)) die("rmdir dg");

  al = addr_of(&a, st, "sk");
  int ls = sock(SOCK_STREAM, &a, NULL, al);
  if (listen(ls, 4)) die("listen");
  int k1 = sock(SOCK_STREAM, NULL, &a, al), a1 = accept(ls, NULL, NULL);
  int k2 = sock(SOCK_STREAM, NULL, &a, al), a2 = accept(ls, NULL, NULL);
  if (a1 < 0 || a2 < 0) die("accept");
  unlink(a.sun_path);
  if (rmdir(st)) die("rmdir st");

  printf("ready\n");
  wait_check();

  report(talks(c1, s1, 1) && talks(c2, s2, 3), "gone-dgram", "a client's datagram did not reach its server");
  report(talks(pair[1], pair[0], 8) && talks(pair[0], pair[1], 9), "gone-pair", "the pair does not talk");
  report(talks(c3, s3, 5) && talks(c4, s4, 7), "gone-sole", "a client's datagram did not reach its server");
  struct stat s;
  report(stat(a.sun_path, &s) < 0 && errno == ENOENT, "gone-stream-file", "%s is back", a.sun_path);
  al = addr_of(&a, base, "sole");
  report(stat(a.sun_path, &s) == 0 && S_ISSOCK(s.st_mode), "gone-sole-file", "%s is not there", a.sun_path);
  report(talks(a1, k1, 5) && talks(a2, k2, 7) && talks(k1, a1, 6), "gone-stream", "a connection does not talk");
  report(gone(dg) && gone(st), "gone-dirs", "a removed directory is back");
  /* Nothing but the socket file left there is in DIR/gone. */
  DIR *d = opendir(base);
  char others[512] = "";
  for (struct dirent *de; d && (de = readdir(d));) {
    if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "sole")) {
      strncat(others, " ", sizeof others - strlen(others) - 1);
      strncat(others, de->d_name, sizeof others - strlen(others) - 1);
    }
  }
  if (d) closedir(d);
  report(d && !others[0], "gone-nothing-left", "%s holds%s", base, d ? others : " nothing readable");
  unlink(a.sun_path);
  rmdir(base);
  return result();
}
