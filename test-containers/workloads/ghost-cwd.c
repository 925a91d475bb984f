/* ghost-cwd: a process whose working directory was removed (criu's cwd01).
 *   ghost-cwd WORKDIR
 * Makes WORKDIR/gone, enters it, and removes it (a child does, as a second process would).
 * Prints "ready", waits for WORKDIR/check (looked up from a descriptor of WORKDIR), then checks
 * that the working directory is the same removed directory: /proc/self/cwd reads the same
 * (ending in " (deleted)"), "." is an empty directory with no links, and WORKDIR/gone is absent.
 * Also `deep`: a file open read-write in WORKDIR/d2, removed, and d2 removed too: after restore
 * it reads back what was written, names the same removed path, and d2 is still gone. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include "selfcheck.h"

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");
  int work = open(".", O_PATH | O_DIRECTORY);
  if (work < 0 || mkdir("gone", 0750) || chdir("gone")) return setup_failed("mkdir gone");
  pid_t pid = fork();
  if (pid == 0) _exit(unlinkat(work, "gone", AT_REMOVEDIR) ? 1 : 0);
  int status;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) return setup_failed("rmdir gone");
  int deep;
  if (mkdirat(work, "d2", 0700) || (deep = openat(work, "d2/f", O_RDWR | O_CREAT, 0600)) < 0) return setup_failed("d2/f");
  if (write(deep, "deep", 4) != 4 || unlinkat(work, "d2/f", 0) || unlinkat(work, "d2", AT_REMOVEDIR)) return setup_failed("remove d2/f");
  char deep_before[4096] = {0}, deep_after[4096] = {0}, p[64];
  snprintf(p, sizeof(p), "/proc/self/fd/%d", deep);
  if (readlink(p, deep_before, sizeof(deep_before) - 1) < 0) return setup_failed("readlink d2/f");
  char before[4096], after[4096];
  ssize_t n = readlink("/proc/self/cwd", before, sizeof(before) - 1);
  if (n < 0) return setup_failed("readlink cwd");
  before[n] = 0;

  printf("ready\n");
  while (faccessat(work, "check", F_OK, 0)) nap(10);

  n = readlink("/proc/self/cwd", after, sizeof(after) - 1);
  after[n < 0 ? 0 : n] = 0;
  report(!strcmp(before, after), "same-cwd", "cwd was '%s', is '%s'", before, after);
  struct stat st;
  report(!stat(".", &st) && S_ISDIR(st.st_mode) && st.st_nlink == 0 && (st.st_mode & 07777) == 0750, "removed-dir",
    "'.' has mode 0%o and %lu links", st.st_mode & 07777, (unsigned long)st.st_nlink);
  report(faccessat(work, "gone", F_OK, 0) != 0, "no-name-back", "WORKDIR/gone exists again");
  char got[8] = {0};
  readlink(p, deep_after, sizeof(deep_after) - 1);
  report(pread(deep, got, 4, 0) == 4 && !strcmp(got, "deep") && !strcmp(deep_before, deep_after) && faccessat(work, "d2", F_OK, 0),
    "deep", "read '%s', names '%s' (was '%s')", got, deep_after, deep_before);
  return result();
}
