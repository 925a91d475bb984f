/* tcpchild: a root whose grandchild holds an established TCP connection on 127.0.0.1 — a kind
 * of object stasis cannot dump yet. Root and child count ("tick N" from the root).
 *   tcpchild */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms) { struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L }; nanosleep(&ts, NULL); }

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (fork() == 0) {
    if (fork() == 0) {
      int l = socket(AF_INET, SOCK_STREAM, 0);
      struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
      socklen_t len = sizeof a;
      bind(l, (struct sockaddr *)&a, sizeof a); listen(l, 1); getsockname(l, (struct sockaddr *)&a, &len);
      int c = socket(AF_INET, SOCK_STREAM, 0);
      connect(c, (struct sockaddr *)&a, sizeof a);
      int s = accept(l, NULL, NULL);
      (void)s;
      for (;;) nap(20);
    }
    for (;;) nap(20);
  }
  for (unsigned long n = 1;; n++) { printf("tick %lu\n", n); nap(20); }
}
