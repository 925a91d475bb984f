/* ghost-fifo: FIFOs whose names were removed while they are open (criu's fifo-ghost, unlink_fifo).
 *   ghost-fifo WORKDIR
 * `queued`: a FIFO holding 300 bytes, open for reading (and for writing by a second description),
 * then unlinked; the first writer closed. `lone`: a FIFO open read-write, then unlinked, empty.
 * Prints "ready", waits for WORKDIR/check, then checks: the queued bytes are all there; the two
 * descriptions of `queued` are still one pipe; `lone` still passes bytes through itself; both
 * descriptors still name deleted FIFOs, and no name came back in WORKDIR. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "selfcheck.h"

#define QUEUED 300

static unsigned char pattern(int i) { return (unsigned char)(i * 13 + 5); }

/* Whether fd still names a deleted FIFO (its link ends in " (deleted)"). */
static int deleted_fifo(int fd) {
  char p[64], link[4096];
  struct stat st;
  snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(p, link, sizeof(link) - 1);
  if (n < 0 || fstat(fd, &st) || !S_ISFIFO(st.st_mode)) return 0;
  link[n] = 0;
  return n > 10 && !strcmp(link + n - 10, " (deleted)");
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");

  if (mkfifo("queued", 0640)) return setup_failed("mkfifo queued");
  int w = open("queued", O_RDWR);
  int r = open("queued", O_RDONLY | O_NONBLOCK);
  int w2 = open("queued", O_WRONLY);
  if (w < 0 || r < 0 || w2 < 0) return setup_failed("open queued");
  unsigned char buf[QUEUED];
  for (int i = 0; i < QUEUED; i++) buf[i] = pattern(i);
  if (write(w, buf, QUEUED) != QUEUED) return setup_failed("write queued");
  if (unlink("queued")) return setup_failed("unlink queued");
  close(w);

  if (mkfifo("lone", 0600)) return setup_failed("mkfifo lone");
  int l = open("lone", O_RDWR | O_NONBLOCK);
  if (l < 0) return setup_failed("open lone");
  if (unlink("lone")) return setup_failed("unlink lone");

  printf("ready\n");
  wait_check();

  unsigned char got[QUEUED + 1];
  ssize_t n = read(r, got, sizeof(got));
  report(n == QUEUED && !memcmp(got, buf, QUEUED), "queued-bytes", "read %zd bytes (want %d, same as written)", n, QUEUED);
  n = write(w2, "again", 5);
  ssize_t m = read(r, got, sizeof(got));
  report(n == 5 && m == 5 && !memcmp(got, "again", 5), "one-pipe", "wrote %zd through the writer, read %zd from the reader", n, m);
  n = write(l, "lone", 4);
  m = read(l, got, sizeof(got));
  report(n == 4 && m == 4 && !memcmp(got, "lone", 4), "lone-passes", "wrote %zd, read back %zd", n, m);
  report(deleted_fifo(r) && deleted_fifo(w2) && deleted_fifo(l), "still-deleted", "a descriptor no longer names a deleted FIFO");
  report(access("queued", F_OK) && access("lone", F_OK), "no-names-back", "a FIFO's name exists again");
  return result();
}
