/* onpty: run a program on a fresh pseudo-terminal (its controlling terminal, as stdin, stdout
 * and stderr) and relay everything it writes there to our stdout. Our own stdin is never read,
 * so the program never sees an end of input. Exits when the terminal has no writer left, after
 * waiting for the program, with its exit status (128+N for a signal). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: onpty PROGRAM [ARGS...]\n"); return 2; }
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) || unlockpt(master)) { perror("posix_openpt"); return 1; }
  const char *name = ptsname(master);
  pid_t child = fork();
  if (child < 0) { perror("fork"); return 1; }
  if (child == 0) {
    setsid();
    int slave = open(name, O_RDWR);
    if (slave < 0 || ioctl(slave, TIOCSCTTY, 0)) { perror("open pts"); _exit(127); }
    dup2(slave, 0); dup2(slave, 1); dup2(slave, 2);
    if (slave > 2) close(slave);
    execv(argv[1], argv + 1);
    perror("execv");
    _exit(127);
  }
  char buf[65536];
  for (;;) {
    ssize_t n = read(master, buf, sizeof buf);
    if (n > 0) { fwrite(buf, 1, n, stdout); fflush(stdout); continue; }
    if (n < 0 && errno == EINTR) continue;
    break; /* EIO: the last slave descriptor is closed */
  }
  int st;
  while (waitpid(child, &st, 0) < 0 && errno == EINTR) {}
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
