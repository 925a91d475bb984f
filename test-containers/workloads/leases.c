/* leases: file leases (F_SETLEASE; criu's file_lease00; dumped with --file-locks).
 *   leases WORKDIR
 * A read lease on a file open read-only, and a write lease on another open write-only.
 * Prints "ready", waits for WORKDIR/check, then checks that F_GETLEASE gives each lease back. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include "selfcheck.h"

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");
  int rd = open("read-leased", O_RDONLY | O_CREAT, 0644);
  int wr = open("write-leased", O_WRONLY | O_CREAT, 0644);
  if (rd < 0 || wr < 0) return setup_failed("open");
  if (fcntl(rd, F_SETLEASE, F_RDLCK)) return setup_failed("read lease");
  if (fcntl(wr, F_SETLEASE, F_WRLCK)) return setup_failed("write lease");

  printf("ready\n");
  wait_check();

  int r = fcntl(rd, F_GETLEASE), w = fcntl(wr, F_GETLEASE);
  report(r == F_RDLCK, "read-lease", "F_GETLEASE gives %d (want F_RDLCK %d)", r, F_RDLCK);
  report(w == F_WRLCK, "write-lease", "F_GETLEASE gives %d (want F_WRLCK %d)", w, F_WRLCK);
  return result();
}
