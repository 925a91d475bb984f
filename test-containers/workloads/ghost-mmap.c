/* ghost-mmap: mappings of files removed since they were mapped (criu's unlink_mmap00..02).
 *   ghost-mmap WORKDIR
 * `two`: a 2-page file mapped as two private areas (read-only page 0; read-write page 1, written
 * after the unlink), its descriptor closed. `shared`: a one-page file mapped shared and written
 * through the mapping, its descriptor kept open, then unlinked. `reborn`: a file mapped, unlinked,
 * and a new file made under the same name, mapped too. `names`: a file mapped shared, linked under
 * a second name and removed, mapped shared again through the second name, which is removed too.
 * `seen`: a file mapped private and read-only, its descriptor kept open, removed.
 * Prints "ready", waits for WORKDIR/check, then checks each mapping's contents; that `shared`'s
 * mapping and descriptor are still one file (a write through the descriptor shows in the map);
 * that the new `reborn` is still a file of its own; that both maps of `names` are one file; that
 * a write through `seen`'s descriptor shows in its private map (pages it never wrote are the
 * file's); and that no removed name came back. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include "selfcheck.h"

#define PAGE 4096

static void *map_file(const char *name, const char *text, size_t size, int prot, int flags, int keep, int *fdp) {
  int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, size) || pwrite(fd, text, strlen(text), 0) < 0) return MAP_FAILED;
  void *p = mmap(NULL, size, prot, flags, fd, 0);
  if (keep) *fdp = fd;
  else close(fd);
  return p;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");

  int fd = open("two", O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || pwrite(fd, "a", 1, 0) != 1 || pwrite(fd, "b", 1, PAGE) != 1 || pwrite(fd, "c", 1, 2 * PAGE - 1) != 1) return setup_failed("two");
  char *a = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
  char *b = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, PAGE);
  if (a == MAP_FAILED || b == MAP_FAILED) return setup_failed("mmap two");
  if (unlink("two")) return setup_failed("unlink two");
  close(fd);
  b[1] = 'B';

  int sfd = -1;
  char *s = map_file("shared", "shared page", PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 1, &sfd);
  if (s == MAP_FAILED) return setup_failed("shared");
  memcpy(s + 100, "written in the map", 18);
  if (unlink("shared")) return setup_failed("unlink shared");

  char *old = map_file("reborn", "old reborn", PAGE, PROT_READ, MAP_SHARED, 0, NULL);
  if (old == MAP_FAILED || unlink("reborn")) return setup_failed("reborn (old)");
  char *young = map_file("reborn", "new reborn", PAGE, PROT_READ, MAP_SHARED, 0, NULL);
  if (young == MAP_FAILED) return setup_failed("reborn (new)");

  int nfd = open("names", O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (nfd < 0 || ftruncate(nfd, PAGE)) return setup_failed("names");
  char *n1 = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, nfd, 0);
  close(nfd);
  if (n1 == MAP_FAILED || link("names", "names2") || unlink("names")) return setup_failed("names (link)");
  nfd = open("names2", O_RDWR);
  char *n2 = nfd < 0 ? MAP_FAILED : mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, nfd, 0);
  if (n2 == MAP_FAILED || unlink("names2")) return setup_failed("names (second)");
  close(nfd);
  strcpy(n1, "first name");

  int vfd = open("seen", O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (vfd < 0 || pwrite(vfd, "c", 1, 2 * PAGE - 1) != 1) return setup_failed("seen");
  char *v = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, vfd, 0);
  if (v == MAP_FAILED || unlink("seen")) return setup_failed("seen (map)");

  printf("ready\n");
  wait_check();

  report(a[0] == 'a', "private-ro", "page 0 starts with '%c'", a[0]);
  report(b[0] == 'b' && b[1] == 'B' && b[PAGE - 1] == 'c', "private-rw", "page 1 has '%c%c'...'%c'", b[0], b[1], b[PAGE - 1]);
  report(!strcmp(s, "shared page") && !memcmp(s + 100, "written in the map", 18), "shared-contents", "the shared map holds '%.20s'", s);
  char back[32] = {0};
  int ok = pwrite(sfd, "via fd", 6, 200) == 6 && !memcmp(s + 200, "via fd", 6) && pread(sfd, back, 18, 100) == 18;
  report(ok && !memcmp(back, "written in the map", 18), "shared-one-file", "the map and the descriptor are not one file any more");
  struct stat st;
  int named = !stat("reborn", &st);
  char now[16] = {0};
  int rfd = open("reborn", O_RDONLY);
  if (rfd >= 0) { pread(rfd, now, 10, 0); close(rfd); }
  report(!strcmp(old, "old reborn") && !strcmp(young, "new reborn") && named && !strcmp(now, "new reborn"), "reborn",
    "old map '%.12s', new map '%.12s', file '%s'", old, young, now);
  strcpy(n2 + 100, "second name");
  report(!strcmp(n2, "first name") && !strcmp(n1 + 100, "second name"), "names-one-file", "maps hold '%.12s' / '%.12s'", n2, n1 + 100);
  int w = pwrite(vfd, "a", 1, 0) == 1 && pwrite(vfd, "b", 1, PAGE) == 1;
  report(w && v[0] == 'a' && v[PAGE] == 'b' && v[2 * PAGE - 1] == 'c', "private-sees-fd", "the private map reads '%c' '%c' '%c'",
    v[0] ? v[0] : '0', v[PAGE] ? v[PAGE] : '0', v[2 * PAGE - 1] ? v[2 * PAGE - 1] : '0');
  report(access("two", F_OK) && access("shared", F_OK) && access("names", F_OK) && access("names2", F_OK) && access("seen", F_OK),
    "no-names-back", "a removed name exists again");
  return result();
}
