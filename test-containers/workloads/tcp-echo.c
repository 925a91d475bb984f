/* A TCP echo server for the live-migration benchmark (bench/tcp.ts): argv PORT; accepts any
 * number of connections and sends back whatever each one sends, until killed. With a second
 * argument "noaccept" it only listens: connections wait in its accept queue (tests of sockets
 * with connections not yet accepted). */
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CONNS 1024

int main(int argc, char **argv) {
  int one = 1;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(argc > 1 ? atoi(argv[1]) : 7070) };
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 256)) { perror("listen"); return 1; }
  static struct pollfd p[MAX_CONNS + 1];
  int n = 1;
  p[0].fd = l;
  p[0].events = POLLIN;
  printf("ready\n");
  fflush(stdout);
  if (argc > 2 && !strcmp(argv[2], "noaccept")) for (;;) pause();
  char buf[65536];
  for (;;) {
    if (poll(p, n, -1) < 0) continue;
    if (p[0].revents & POLLIN && n <= MAX_CONNS) {
      int c = accept(l, NULL, NULL);
      if (c >= 0) { p[n].fd = c; p[n].events = POLLIN; n++; }
    }
    for (int i = 1; i < n; i++) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t r = read(p[i].fd, buf, sizeof buf);
      if (r <= 0) { close(p[i].fd); p[i] = p[--n]; i--; continue; }
      for (ssize_t off = 0; off < r;) {
        ssize_t w = write(p[i].fd, buf + off, r - off);
        if (w <= 0) break;
        off += w;
      }
    }
  }
}
