/* A runc container whose user namespace maps its root to an unprivileged host uid (its other
 * namespaces owned by it): a counting thread of work, files owned by root, by 1000:1000 and by
 * 4242:4343 as the container sees them, its maps and capability sets; after restore it checks
 * the counter went on, the owners seen inside, /proc/self/{uid_map,gid_map,setgroups} and its ids
 * and capabilities as they were. argv[1]: its work directory. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include "selfcheck.h"

static char *slurp(const char *path) {
  static char bufs[8][4096];
  static int n;
  char *b = bufs[n++ % 8];
  int fd = open(path, O_RDONLY);
  ssize_t r = fd < 0 ? -1 : read(fd, b, 4095);
  b[r < 0 ? 0 : r] = 0;
  if (fd >= 0) close(fd);
  return b;
}

/* The lines of /proc/self/status starting with `key`. */
static void status_lines(const char *keys[], char *out, size_t n) {
  char *s = slurp("/proc/self/status"), *line = s;
  out[0] = 0;
  while (line && *line) {
    char *nl = strchr(line, '\n');
    for (int i = 0; keys[i]; i++) {
      if (!strncmp(line, keys[i], strlen(keys[i]))) strncat(out, line, nl ? (size_t)(nl - line + 1) : strlen(line));
    }
    line = nl ? nl + 1 : NULL;
  }
  (void)n;
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");
  setvbuf(stdout, NULL, _IOLBF, 0);
  int fd = open("mine", O_CREAT | O_RDWR | O_TRUNC, 0640);
  if (fd < 0 || write(fd, "x", 1) != 1) return setup_failed("mine");
  int fd2 = open("theirs", O_CREAT | O_RDWR | O_TRUNC, 0600);
  if (fd2 < 0 || fchown(fd2, 1000, 1000)) return setup_failed("theirs");
  int fd3 = open("others", O_CREAT | O_RDWR | O_TRUNC, 0644);
  if (fd3 < 0 || fchown(fd3, 4242, 4343) || close(fd3)) return setup_failed("others");
  static const char *keys[] = { "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:", NULL };
  char ids[1024], maps[3][256];
  status_lines(keys, ids, sizeof ids);
  snprintf(maps[0], sizeof maps[0], "%s", slurp("/proc/self/uid_map"));
  snprintf(maps[1], sizeof maps[1], "%s", slurp("/proc/self/gid_map"));
  snprintf(maps[2], sizeof maps[2], "%s", slurp("/proc/self/setgroups"));
  pid_t pid = getpid();
  printf("ready %d\n", pid);
  volatile long counter = 0;
  while (access("check", F_OK)) {
    if (++counter % 40 == 0) printf("tick %ld\n", counter / 40);
    nap(5);
  }
  long before = counter;
  nap(50);
  report(counter >= before, "counter", "%ld", counter);
  counter++;
  report(counter > before, "counter-on", "%ld -> %ld", before, counter);
  struct stat a, b, c, d;
  report(!fstat(fd, &a) && a.st_uid == 0 && a.st_gid == 0, "owner-mine", "%u:%u", a.st_uid, a.st_gid);
  report(!stat("theirs", &b) && b.st_uid == 1000 && b.st_gid == 1000, "owner-theirs", "%u:%u", b.st_uid, b.st_gid);
  report(!stat("others", &d) && d.st_uid == 4242 && d.st_gid == 4343, "owner-others", "%u:%u", d.st_uid, d.st_gid);
  report(!stat("/", &c) && c.st_uid == 0, "owner-root", "%u", c.st_uid);
  char now[1024];
  status_lines(keys, now, sizeof now);
  report(!strcmp(now, ids), "ids", "%s / %s", ids, now);
  report(!strcmp(slurp("/proc/self/uid_map"), maps[0]), "uid_map", "%s / %s", maps[0], slurp("/proc/self/uid_map"));
  report(!strcmp(slurp("/proc/self/gid_map"), maps[1]), "gid_map", "%s", slurp("/proc/self/gid_map"));
  report(!strcmp(slurp("/proc/self/setgroups"), maps[2]), "setgroups", "%s", slurp("/proc/self/setgroups"));
  report(getpid() == pid, "pid", "%d, was %d", getpid(), pid);
  char buf[2];
  report(pread(fd, buf, 1, 0) == 1 && buf[0] == 'x', "mine-fd", "read");
  return result();
}
