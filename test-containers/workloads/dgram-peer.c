/* dgram-peer: the parent's datagram socket is connected to a socket that only its child holds
 * (bound to an abstract name; the parent closed its copy), so on restore the parent's connect
 * must wait for a process restored after it. Run with DIR: prints "ready", waits for DIR/check
 * (after restore); then the parent sends "hello" and the child must receive it on its socket.
 * Both check themselves ("ok"/"FAIL" lines, "result PASS"); the parent exits 0 only if the
 * child did too. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  snprintf(a.sun_path + 1, sizeof a.sun_path - 1, "stasis-dgram-peer-%d", getpid());
  socklen_t len = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a.sun_path + 1);
  int bound = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (bound < 0 || bind(bound, (struct sockaddr *)&a, len)) { printf("ERR bind: %s\n", strerror(errno)); return 2; }
  pid_t child = fork();
  if (child == 0) {
    wait_check();
    struct timeval tv = { 5, 0 };
    setsockopt(bound, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[16] = {0};
    int n = recv(bound, buf, sizeof buf, 0);
    report(n == 5 && !memcmp(buf, "hello", 5), "child-received", "recv gave %d (%s)", n, n < 0 ? strerror(errno) : buf);
    return result();
  }
  close(bound);
  int d = socket(AF_UNIX, SOCK_DGRAM, 0);
  if (d < 0 || connect(d, (struct sockaddr *)&a, len)) { printf("ERR connect: %s\n", strerror(errno)); return 2; }
  printf("ready\n");
  wait_check();
  int n = send(d, "hello", 5, 0);
  report(n == 5, "parent-sent", "send gave %d (%s)", n, n < 0 ? strerror(errno) : "");
  int st = 0;
  waitpid(child, &st, 0);
  report(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child-passed", "child status 0x%x", st);
  return result();
}
