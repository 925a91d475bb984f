/* many: a tree of N processes (the root and N-1 children, forked as a binary tree), or one
 * process with N threads; every task sleeps in a loop. Prints "ready" when all exist.
 *   many procs N | many threads N */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void nap(void) { struct timespec ts = { 0, 50 * 1000000L }; nanosleep(&ts, NULL); }
static void *loop(void *a) { (void)a; for (;;) nap(); return NULL; }

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int n = atoi(argv[2]);
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ready[2];
  if (pipe(ready)) return 2;
  if (!strcmp(argv[1], "threads")) {
    for (int i = 1; i < n; i++) { pthread_t t; pthread_create(&t, NULL, loop, NULL); }
    printf("ready\n");
    loop(NULL);
  }
  /* process i (1-based) forks 2i and 2i+1 while they are <= n */
  int me = 1;
  for (;;) {
    int forked = 0;
    for (int c = 2 * me; c <= 2 * me + 1 && c <= n; c++) {
      if (fork() == 0) { me = c; forked = -1; break; }
      forked++;
    }
    if (forked >= 0) break;
  }
  if (me != 1) { (void)!write(ready[1], "x", 1); loop(NULL); }
  for (int i = 1; i < n; i++) { char c; (void)!read(ready[0], &c, 1); }
  printf("ready\n");
  loop(NULL);
}
