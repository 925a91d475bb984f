/* setuid: processes that gave up root as zdtm's tests do, checked by themselves once DIR/check
 * appears (after restore): their ids, groups, capability sets, securebits and no_new_privs read
 * back as they were before the dump (/proc/self/status and PR_GET_SECUREBITS).
 *   setuid DIR
 * Main: groups 27495 and 48244, gid 58467, an mlock()ed mapping of 17 pages, then setuid(18943)
 * (every capability gone) and dumpable again. Child K, as root first: securebits KEEP_CAPS,
 * NOROOT and NOROOT_LOCKED, CAP_SYS_BOOT dropped from the bounding set, then uid and gid 1000,
 * and capsets of its own: permitted {NET_BIND_SERVICE, KILL}, effective {NET_BIND_SERVICE},
 * inheritable {NET_BIND_SERVICE, NET_RAW}, ambient {NET_BIND_SERVICE}; no_new_privs. Child S:
 * a seccomp filter that kills the process on setresuid(), then setuid(1000) (another syscall);
 * after the check it calls setresuid() and must die of SIGSYS. Each prints its own ok/FAIL
 * lines; main also reports how K and S ended ("child-K", "child-S-killed-by-its-filter"). */
#define _GNU_SOURCE
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

#define LOCKED_LEN (17 * 4096)

/* The credential lines of /proc/self/status (Uid..Groups, Cap*, NoNewPrivs) and the securebits. */
static void creds_text(char *out, size_t n) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[512];
  out[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (!strncmp(line, "Uid:", 4) || !strncmp(line, "Gid:", 4) || !strncmp(line, "Groups:", 7) ||
        !strncmp(line, "Cap", 3) || !strncmp(line, "NoNewPrivs:", 11)) {
      snprintf(out + strlen(out), n - strlen(out), "%s", line);
    }
  }
  if (f) fclose(f);
  snprintf(out + strlen(out), n - strlen(out), "Securebits: %#x\n", (unsigned)prctl(PR_GET_SECUREBITS));
}

/* Report "name" ok when the credentials now are `before`; else the first line that differs. */
static void check_creds(const char *name, const char *before) {
  char now[2048];
  creds_text(now, sizeof now);
  const char *a = before, *b = now;
  while (*a && *a == *b) a++, b++;
  while (a > before && a[-1] != '\n') a--, b--;
  report(!strcmp(before, now), name, "was '%.*s', now '%.*s'", (int)strcspn(a, "\n"), a, (int)strcspn(b, "\n"), b);
}

static int lockedp(const void *addr) {
  FILE *f = fopen("/proc/self/smaps", "r");
  char line[512];
  int in = 0, lo = 0;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long s, e;
    if (line[0] != 'V' && sscanf(line, "%lx-%lx ", &s, &e) == 2) in = (uintptr_t)addr >= s && (uintptr_t)addr < e;
    else if (in && !strncmp(line, "VmFlags:", 8)) { lo = strstr(line, " lo") != NULL; break; }
  }
  if (f) fclose(f);
  return lo;
}

static int child_k(void) {
  struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
  struct __user_cap_data_struct d[2];
  memset(d, 0, sizeof d);
  const uint32_t bind = 1u << CAP_NET_BIND_SERVICE, kill_ = 1u << CAP_KILL, raw = 1u << CAP_NET_RAW;
  if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0) ||
      prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) ||
      setgroups(0, NULL) || setresgid(1000, 1000, 1000)) { perror("K: before setuid"); return 2; }
  /* Inheritable first, while root may still add to it. */
  if (syscall(SYS_capget, &h, d)) { perror("capget"); return 2; }
  d[0].inheritable = bind | raw;
  if (syscall(SYS_capset, &h, d) || setresuid(1000, 1000, 1000)) { perror("K: setuid"); return 2; }
  d[0].permitted = bind | kill_; d[0].effective = bind; d[1].permitted = d[1].effective = 0;
  if (syscall(SYS_capset, &h, d) || prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) ||
      prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)) { perror("K: caps"); return 2; }
  char before[2048];
  creds_text(before, sizeof before);
  wait_check();
  check_creds("K-creds", before);
  return failures ? 1 : 0;
}

static int child_s(void) {
  struct sock_filter insns[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_setresuid, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { sizeof insns / sizeof *insns, insns };
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) || setgid(1000) || setuid(1000) ||
      prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)) { perror("S"); return 2; }
  char before[2048];
  creds_text(before, sizeof before);
  wait_check();
  check_creds("S-creds", before);
  fflush(stdout);
  syscall(SYS_setresuid, 1000, 1000, 1000);
  return 3; /* not reached: the filter kills */
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  chmod(".", 0755); /* `check` is looked for as uid 18943 and 1000 */
  pid_t k = fork();
  if (k < 0) { perror("fork"); return 2; }
  if (k == 0) return child_k();
  pid_t s = fork();
  if (s < 0) { perror("fork"); return 2; }
  if (s == 0) return child_s();

  char *locked = mmap(NULL, LOCKED_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (locked == MAP_FAILED || mlock(locked, LOCKED_LEN)) { perror("mlock"); return 2; }
  memset(locked, 'L', LOCKED_LEN);
  const gid_t groups[] = { 27495, 48244 };
  if (setgroups(2, groups) || setgid(58467) || setuid(18943) || prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)) { perror("creds"); return 2; }
  char before[2048];
  creds_text(before, sizeof before);
  nap(100); /* K is set up */
  printf("ready %d child=%d,%d\n", getpid(), k, s);
  wait_check();

  check_creds("main-creds", before);
  report(lockedp(locked) && locked[0] == 'L' && locked[LOCKED_LEN - 1] == 'L', "mlocked-after-setuid", "VmFlags without lo, or its bytes lost");
  int st = 0;
  report(waitpid(k, &st, 0) == k && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child-K", "status %#x", st);
  report(waitpid(s, &st, 0) == s && WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS, "child-S-killed-by-its-filter", "status %#x", st);
  return result();
}
