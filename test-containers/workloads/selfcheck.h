/* What every self-checking workload shares: after restore it checks each item itself and says
 * "ok ITEM" or "FAIL ITEM: why" (one line each), then "result PASS" or "result FAIL". */
#ifndef STASIS_SELFCHECK_H
#define STASIS_SELFCHECK_H
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

static int failures;

static void report(int ok, const char *item, const char *fmt, ...) __attribute__((format(printf, 3, 4), unused));
static void report(int ok, const char *item, const char *fmt, ...) {
  if (ok) { printf("ok %s\n", item); return; }
  failures++;
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL %s: ", item);
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

static void __attribute__((unused)) nap(long ms) {
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* Wait until the file `check` appears in the current directory (the test creates it after restore). */
static void __attribute__((unused)) wait_check(void) {
  while (access("check", F_OK)) nap(10);
}

/* Set-up went wrong before `ready`: "FAIL setup: WHAT: strerror(errno)"; returns 1 (the exit status). */
static int __attribute__((unused)) setup_failed(const char *what) {
  printf("FAIL setup: %s: %s\n", what, strerror(errno));
  return 1;
}

/* The VmFlags line of the VMA holding `addr`, from /proc/self/smaps (with a leading space). */
static void __attribute__((unused)) vmflags(const void *addr, char *out, size_t n) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int in = 0;
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') && line[0] != 'V') in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
    else if (in && !strncmp(line, "VmFlags:", 8)) { snprintf(out, n, "%s", line + 8); out[strcspn(out, "\n")] = 0; break; }
  }
  if (f) fclose(f);
}

/* A sockaddr_un for the path `name`; its length counts the trailing NUL. */
static socklen_t __attribute__((unused)) sun_path_addr(struct sockaddr_un *a, const char *name) {
  memset(a, 0, sizeof *a);
  a->sun_family = AF_UNIX;
  strcpy(a->sun_path, name);
  return offsetof(struct sockaddr_un, sun_path) + strlen(name) + 1;
}

/* The last line: "result PASS|FAIL"; the exit status to return. */
static int __attribute__((unused)) result(void) {
  printf("result %s\n", failures ? "FAIL" : "PASS");
  return failures ? 1 : 0;
}
#endif
