/* unix-dgram: datagram sockets bound by path, talking before the dump and after the restore.
 * Run with DIR (the cwd from the start): prints "ready", waits for DIR/check (after restore),
 * then checks each item ("ok"/"FAIL" lines, "result PASS|FAIL").
 *   dgram-bound       an unbound socket sends to a bound one by name (sendto)
 *   dgram-conn        two sockets connected to one bound server: each one's datagram arrives
 *   dgram-self        a socket bound, then connected to its own name, receives what it sends
 *   mntns-*           (with "mntns") a child in a mount namespace of its own, with a tmpfs on
 *                     DIR/mnt, binds DIR/mnt/test.sock, as the parent does in its own: two
 *                     sockets of the same path, one per mount namespace */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

static void die(const char *what) { printf("ERR %s: %s\n", what, strerror(errno)); exit(2); }

static int bound(const struct sockaddr_un *a, socklen_t al) {
  int s = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (s < 0 || bind(s, (const struct sockaddr *)a, al)) die("bind");
  return s;
}

static int connected(const struct sockaddr_un *a, socklen_t al) {
  int s = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (s < 0 || connect(s, (const struct sockaddr *)a, al)) die("connect");
  return s;
}

/* `to` receives exactly `msg` (waiting up to 2 s: a lost datagram fails, it does not hang). */
static int got(int to, const char *msg) {
  struct timeval tv = { 2, 0 };
  setsockopt(to, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char buf[64] = {0};
  int n = strlen(msg);
  return recv(to, buf, sizeof buf, 0) == n && !memcmp(buf, msg, n);
}

/* The mount-namespace pair: a server bound at DIR/mnt/test.sock and a client connected to it. */
static void mntns_pair(const char *dir, int *srv, int *cli) {
  char path[200];
  snprintf(path, sizeof path, "%s/mnt/test.sock", dir);
  struct sockaddr_un a;
  socklen_t al = sun_path_addr(&a, path);
  unlink(path);
  *srv = bound(&a, al);
  *cli = connected(&a, al);
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  const char *dir = argv[1];
  int mntns = argc > 2 && !strcmp(argv[2], "mntns");
  setvbuf(stdout, NULL, _IOLBF, 0);
  char path[200];
  struct sockaddr_un nb, nc, ns;
  snprintf(path, sizeof path, "%s/d.bound", dir);
  socklen_t nbl = sun_path_addr(&nb, path);
  snprintf(path, sizeof path, "%s/d.conn", dir);
  socklen_t ncl = sun_path_addr(&nc, path);
  snprintf(path, sizeof path, "%s/d.self", dir);
  socklen_t nsl = sun_path_addr(&ns, path);

  int bound_client = socket(AF_UNIX, SOCK_DGRAM, 0);
  int bound_server = bound(&nb, nbl);
  int conn_server = bound(&nc, ncl);
  int conn_client = connected(&nc, ncl);
  int conn_client2 = connected(&nc, ncl);
  int self = bound(&ns, nsl);
  if (connect(self, (struct sockaddr *)&ns, nsl)) die("connect to itself");
  /* Each talks once before the dump. */
  sendto(bound_client, "bound", 5, 0, (struct sockaddr *)&nb, nbl);
  send(conn_client, "conn", 4, 0);
  send(self, "self", 4, 0);
  if (!got(bound_server, "bound") || !got(conn_server, "conn") || !got(self, "self")) die("exchange before the dump");

  pid_t child = -1;
  int msrv = -1, mcli = -1;
  if (mntns) {
    mkdir("mnt", 0755);
    int ready[2];
    if (pipe(ready)) die("pipe");
    child = fork();
    if (child == 0) {
      close(ready[0]);
      if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_PRIVATE | MS_REC, NULL) || mount("stasis-test", "mnt", "tmpfs", 0, NULL)) die("child mount namespace");
      mntns_pair(dir, &msrv, &mcli);
      write(ready[1], "r", 1);
      close(ready[1]);
      wait_check();
      report(send(mcli, "child", 5, 0) == 5 && got(msrv, "child"), "mntns-child-exchange", "no exchange in the child's namespace");
      struct stat s;
      snprintf(path, sizeof path, "%s/mnt/test.sock", dir);
      report(stat(path, &s) == 0 && S_ISSOCK(s.st_mode), "mntns-child-file", "no socket file at %s", path);
      return result();
    }
    close(ready[1]);
    char c;
    if (read(ready[0], &c, 1) != 1) die("child setup");
    mntns_pair(dir, &msrv, &mcli);
  }

  printf("ready\n");
  wait_check();

  report(sendto(bound_client, "bound-2", 7, 0, (struct sockaddr *)&nb, nbl) == 7 && got(bound_server, "bound-2"), "dgram-bound", "lost");
  report(send(conn_client, "conn-2", 6, 0) == 6 && got(conn_server, "conn-2"), "dgram-conn", "the first client's datagram was lost");
  report(send(conn_client2, "conn-3", 6, 0) == 6 && got(conn_server, "conn-3"), "dgram-conn-second", "the second client's datagram was lost");
  report(send(self, "self-2", 6, 0) == 6 && got(self, "self-2"), "dgram-self", "lost");
  if (mntns) {
    report(send(mcli, "parent", 6, 0) == 6 && got(msrv, "parent"), "mntns-parent-exchange", "no exchange in the parent's namespace");
    int st = 0;
    waitpid(child, &st, 0);
    report(WIFEXITED(st) && WEXITSTATUS(st) == 0, "mntns-child-passed", "child status 0x%x", st);
  }
  return result();
}
