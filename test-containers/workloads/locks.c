/* locks: file locks held by a process tree (dump with --file-locks).
 *   locks DIR
 * In DIR:
 *   - posix: the root holds a POSIX write lock on bytes 0-9 and a child a POSIX read lock on
 *     bytes 20-29, each through a description of its own; a second child holds a POSIX write
 *     lock on bytes 40-49 through a description it inherited from the root;
 *   - flock: the root holds flock(LOCK_EX) through a description a child inherited too;
 *   - shared: the root and a child hold flock(LOCK_SH), each through its own description;
 *   - ofd: the root holds an OFD write lock on bytes 0-4 through one description and an OFD
 *     read lock on bytes 10-19 through another;
 *   - overlap: OFD read locks that overlap, each through a description of its own (bytes 0-19,
 *     10-39, 0-99), each still shown on its own descriptor (fdinfo) after restore.
 * Prints "ready", waits for DIR/check, then checks each lock from a new process (F_GETLK gives
 * the owner, as this pid namespace numbers it; flock/OFD conflicts), then that the POSIX locks
 * are each child's own (gone when it is), and ends the children. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include "selfcheck.h"

static int lock(int fd, int cmd, short type, off_t start, off_t len) {
  struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
  return fcntl(fd, cmd, &fl);
}

/* What F_GETLK (or F_OFD_GETLK) says of a write lock wanted on [start, start+len) of `file`. */
static struct flock probe(const char *file, int cmd, off_t start, off_t len) {
  struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
  int fd = open(file, O_RDWR);
  if (fd < 0 || fcntl(fd, cmd, &fl)) fl.l_type = -1;
  if (fd >= 0) close(fd);
  return fl;
}

/* flock(how|LOCK_NB) on a new description of `file`: 0 or the errno. */
static int try_flock(const char *file, int how) {
  int fd = open(file, O_RDWR);
  if (fd < 0) return errno;
  int r = flock(fd, how | LOCK_NB) ? errno : 0;
  close(fd);
  return r;
}

/* The OFD lock fdinfo shows on `fd`: its start and end (-1: none). */
static void ofd_lock_of(int fd, long long *start, long long *end) {
  char path[64], line[256];
  *start = *end = -1;
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof line, f)) {
    char kind[16], e[32];
    long long st;
    if (sscanf(line, "lock: %*d: %15s %*s %*s %*d %*x:%*x:%*d %lld %31s", kind, &st, e) == 3 && !strcmp(kind, "OFDLCK")) {
      *start = st;
      *end = strcmp(e, "EOF") ? atoll(e) : -2;
    }
  }
  if (f) fclose(f);
}

static const char *type_name(short t) {
  return t == F_RDLCK ? "read" : t == F_WRLCK ? "write" : t == F_UNLCK ? "none" : "error";
}

/* A child that runs `fn` (which takes its lock and says so on the pipe), then sleeps. */
static pid_t child(int (*fn)(void *), void *arg) {
  int p[2];
  if (pipe(p)) return -1;
  pid_t pid = fork();
  if (!pid) {
    close(p[0]);
    char c = fn(arg) ? 'x' : 'y';
    if (write(p[1], &c, 1) != 1) exit(1);
    for (;;) pause();
  }
  close(p[1]);
  char c = 0;
  if (read(p[0], &c, 1) != 1 || c != 'y') pid = -1;
  close(p[0]);
  return pid;
}

static int posix_reader(void *arg) {
  (void)arg;
  int fd = open("posix", O_RDWR);
  return fd < 0 || lock(fd, F_SETLK, F_RDLCK, 20, 10);
}

static int posix_inherited(void *arg) {
  return lock(*(int *)arg, F_SETLK, F_WRLCK, 40, 10);
}

static int nothing(void *arg) {
  (void)arg;
  return 0;
}

static int shared_holder(void *arg) {
  (void)arg;
  int fd = open("shared", O_RDWR);
  return fd < 0 || flock(fd, LOCK_SH | LOCK_NB);
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");
  const char *files[] = { "posix", "flock", "shared", "ofd", "overlap" };
  for (int i = 0; i < 5; i++) {
    int fd = open(files[i], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 100)) return setup_failed(files[i]);
    close(fd);
  }

  int posix = open("posix", O_RDWR);
  if (posix < 0 || lock(posix, F_SETLK, F_WRLCK, 0, 10)) return setup_failed("posix write lock");
  int posix2 = open("posix", O_RDWR);
  if (posix2 < 0) return setup_failed("posix second open");
  pid_t reader = child(posix_reader, NULL);
  if (reader < 0) return setup_failed("posix reader");
  pid_t inheritor = child(posix_inherited, &posix2);
  if (inheritor < 0) return setup_failed("posix lock through an inherited description");

  int fl = open("flock", O_RDWR);
  if (fl < 0 || flock(fl, LOCK_EX | LOCK_NB)) return setup_failed("flock");
  pid_t sharer = child(nothing, NULL); /* holds the flock description too */
  if (sharer < 0) return setup_failed("flock sharer");

  int sh = open("shared", O_RDWR);
  if (sh < 0 || flock(sh, LOCK_SH | LOCK_NB)) return setup_failed("flock shared");
  pid_t shholder = child(shared_holder, NULL);
  if (shholder < 0) return setup_failed("flock shared child");

  int o1 = open("ofd", O_RDWR), o2 = open("ofd", O_RDWR);
  if (o1 < 0 || o2 < 0 || lock(o1, F_OFD_SETLK, F_WRLCK, 0, 5) || lock(o2, F_OFD_SETLK, F_RDLCK, 10, 10)) return setup_failed("ofd");

  static const long long ov_start[3] = { 0, 10, 0 }, ov_len[3] = { 20, 30, 100 };
  int ov[3];
  for (int i = 0; i < 3; i++) {
    ov[i] = open("overlap", O_RDWR);
    if (ov[i] < 0 || lock(ov[i], F_OFD_SETLK, F_RDLCK, ov_start[i], ov_len[i])) return setup_failed("overlapping ofd read locks");
  }

  printf("ready\n");
  wait_check();

  for (int i = 0; i < 3; i++) {
    long long st, end;
    char item[32];
    snprintf(item, sizeof item, "ofd-overlap-%d", i);
    ofd_lock_of(ov[i], &st, &end);
    report(st == ov_start[i] && end == ov_start[i] + ov_len[i] - 1, item, "fdinfo shows an OFD lock on %lld-%lld, not %lld-%lld",
           st, end, ov_start[i], ov_start[i] + ov_len[i] - 1);
  }

  /* Checked from a new process: the root's own POSIX locks never conflict with itself. */
  int p[2];
  if (pipe(p)) return setup_failed("pipe");
  pid_t checker = fork();
  if (!checker) {
    dup2(p[1], 1);
    struct flock g = probe("posix", F_GETLK, 0, 10);
    report(g.l_type == F_WRLCK && g.l_pid == getppid(), "posix-root", "F_GETLK: %s lock of pid %d (want write of %d)", type_name(g.l_type), g.l_pid, getppid());
    g = probe("posix", F_GETLK, 20, 10);
    report(g.l_type == F_RDLCK && g.l_pid == reader, "posix-child", "F_GETLK: %s lock of pid %d (want read of %d)", type_name(g.l_type), g.l_pid, reader);
    g = probe("posix", F_GETLK, 40, 10);
    report(g.l_type == F_WRLCK && g.l_pid == inheritor, "posix-inherited-description", "F_GETLK: %s lock of pid %d (want write of %d)", type_name(g.l_type), g.l_pid, inheritor);
    g = probe("posix", F_GETLK, 60, 10);
    report(g.l_type == F_UNLCK, "posix-free-range", "F_GETLK: %s lock of pid %d", type_name(g.l_type), g.l_pid);
    int e = try_flock("flock", LOCK_SH);
    report(e == EWOULDBLOCK, "flock-exclusive", "a shared flock on a new description gave %s", strerror(e));
    e = try_flock("shared", LOCK_SH);
    report(e == 0, "flock-shared-compatible", "a shared flock gave %s", strerror(e));
    e = try_flock("shared", LOCK_EX);
    report(e == EWOULDBLOCK, "flock-shared-held", "an exclusive flock on a new description gave %s", strerror(e));
    g = probe("ofd", F_OFD_GETLK, 0, 5);
    report(g.l_type == F_WRLCK && g.l_pid == -1, "ofd-write", "F_OFD_GETLK: %s lock of pid %d", type_name(g.l_type), g.l_pid);
    g = probe("ofd", F_OFD_GETLK, 10, 10);
    report(g.l_type == F_RDLCK && g.l_pid == -1, "ofd-read", "F_OFD_GETLK: %s lock of pid %d", type_name(g.l_type), g.l_pid);
    fflush(stdout);
    _exit(failures ? 1 : 0);
  }
  close(p[1]);
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) {
    for (char *line = buf, *end; line < buf + n; line = end + 1) {
      end = memchr(line, '\n', buf + n - line);
      if (!end) break;
      if (!strncmp(line, "FAIL", 4)) failures++;
      printf("%.*s\n", (int)(end - line), line);
    }
  }
  int status;
  waitpid(checker, &status, 0);

  /* The root's own locks are its own: it can still change them. */
  report(!lock(posix, F_SETLK, F_RDLCK, 0, 10), "posix-root-owner", "the root could not turn its lock into a read lock: %s", strerror(errno));
  report(!lock(o1, F_OFD_SETLK, F_RDLCK, 0, 5), "ofd-owner", "the OFD lock's description could not change it: %s", strerror(errno));

  /* The children's POSIX locks go with them. */
  kill(reader, SIGKILL);
  waitpid(reader, NULL, 0);
  kill(inheritor, SIGKILL);
  waitpid(inheritor, NULL, 0);
  struct flock g = probe("posix", F_GETLK, 20, 30);
  report(g.l_type == F_UNLCK, "posix-children-owners", "after the children died, F_GETLK still sees a %s lock of pid %d", type_name(g.l_type), g.l_pid);
  /* The flock of a description dies with its last descriptor (the children forked after it
   * was opened hold it too). */
  close(fl);
  kill(sharer, SIGKILL);
  waitpid(sharer, NULL, 0);
  kill(shholder, SIGKILL);
  waitpid(shholder, NULL, 0);
  int e = try_flock("flock", LOCK_EX);
  report(e == 0, "flock-released", "with every descriptor closed, an exclusive flock gave %s", strerror(e));
  return result();
}
