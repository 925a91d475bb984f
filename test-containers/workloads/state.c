/* state: sets up the state a single-process checkpoint must carry, waits, and — once the file
 * DIR/check appears (after restore) — checks every item itself, printing "ok ITEM" or
 * "FAIL ITEM: why" per item and "result PASS" / "result FAIL", then exits 0 / 1.
 *   state DIR [default-personality]
 * Items: a 64 MiB patterned heap; a SIGUSR1 handler (SA_SIGINFO|SA_RESTART, mask {SIGINT}) that
 * still runs; SIGUSR2 blocked with one SIGUSR2 pending; DIR/data open O_RDWR at offset 7 plus a
 * close-on-exec dup sharing that offset; a private mapping of DIR/map changed in memory only;
 * cwd DIR; umask 027; RLIMIT_NOFILE soft limit 1000; the same PID; credentials other than the
 * restorer's (gid 100 for real/effective/saved, supplementary groups 1234 and 5678, CAP_SYS_BOOT
 * dropped from the bounding set); personality ADDR_NO_RANDOMIZE; oom_score_adj 123; transparent
 * huge pages disabled (PR_SET_THP_DISABLE); three adjacent anonymous mappings (rw, r, rw), the first
 * two MADV_DONTDUMP and MADV_DONTFORK, the third neither. With `default-personality` the
 * personality is left at 0 and must still be 0 (CRIU 4.2 does not restore a personality). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEAP_WORDS ((64u << 20) / 8)
static volatile int usr1_count, usr2_count;
static void on_usr1(int s, siginfo_t *si, void *uc) { (void)s; (void)si; (void)uc; usr1_count++; }
static void on_usr2(int s) { (void)s; usr2_count++; }

#include <stdarg.h>
#include "selfcheck.h"

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  const char *dir = argv[1];
  const int want_pers = argc > 2 && !strcmp(argv[2], "default-personality") ? 0 : ADDR_NO_RANDOMIZE;
  setvbuf(stdout, NULL, _IOLBF, 0);
  char path[4096];
  pid_t pid = getpid();

  uint64_t *heap = malloc(HEAP_WORDS * 8);
  for (uint64_t i = 0; i < HEAP_WORDS; i++) heap[i] = i * 0x9E3779B97F4A7C15ull;

  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_usr1; sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask); sigaddset(&sa.sa_mask, SIGINT);
  sigaction(SIGUSR1, &sa, NULL);
  struct sigaction sa2; memset(&sa2, 0, sizeof sa2); sa2.sa_handler = on_usr2;
  sigaction(SIGUSR2, &sa2, NULL);
  sigset_t block; sigemptyset(&block); sigaddset(&block, SIGUSR2);
  sigprocmask(SIG_BLOCK, &block, NULL);
  raise(SIGUSR2);

  snprintf(path, sizeof path, "%s/data", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || write(fd, "0123456789abcdef", 16) != 16) { perror("data"); return 2; }
  lseek(fd, 7, SEEK_SET);
  int dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 20);

  snprintf(path, sizeof path, "%s/map", dir);
  int mfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  char page[4096]; memset(page, 'o', sizeof page); memcpy(page, "original", 8);
  if (write(mfd, page, sizeof page) != (ssize_t)sizeof page) return 2;
  char *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, 0);
  close(mfd);
  memcpy(map, "MODIFIED", 8);

  /* Three adjacent VMAs: the advice must come back on the first two, and not spread to the third. */
  char *adv = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (adv == MAP_FAILED || mprotect(adv + 4096, 4096, PROT_READ)) { perror("adv"); return 2; }
  adv[0] = 1; adv[2 * 4096] = 2;
  if (madvise(adv, 2 * 4096, MADV_DONTDUMP) || madvise(adv, 2 * 4096, MADV_DONTFORK)) { perror("madvise"); return 2; }

  if (chdir(dir)) return 2;
  umask(027);
  struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl); rl.rlim_cur = 1000; setrlimit(RLIMIT_NOFILE, &rl);
  gid_t groups[2] = { 1234, 5678 };
  if (setgroups(2, groups) || setresgid(100, 100, 100) || prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0)) { perror("creds"); return 2; }
  if (want_pers && personality(want_pers) < 0) { perror("personality"); return 2; }
  int oom = open("/proc/self/oom_score_adj", O_WRONLY);
  if (oom < 0 || write(oom, "123", 3) != 3) { perror("oom_score_adj"); return 2; }
  close(oom);
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) { perror("PR_SET_THP_DISABLE"); return 2; }

  printf("ready %d\n", pid);
  for (;;) {
    struct timespec ts = { 0, 20 * 1000000L };
    nanosleep(&ts, NULL);
    if (access("check", F_OK) == 0) break;
  }

  /* heap */
  uint64_t bad = 0;
  for (uint64_t i = 0; i < HEAP_WORDS; i++) if (heap[i] != i * 0x9E3779B97F4A7C15ull) bad++;
  report(!bad, "heap", "%llu of %u words differ", (unsigned long long)bad, HEAP_WORDS);
  /* SIGUSR1 handler */
  struct sigaction cur; sigaction(SIGUSR1, NULL, &cur);
  report(cur.sa_sigaction == on_usr1 && (cur.sa_flags & (SA_SIGINFO | SA_RESTART)) == (SA_SIGINFO | SA_RESTART)
         && sigismember(&cur.sa_mask, SIGINT) && !sigismember(&cur.sa_mask, SIGTERM),
         "sigaction", "handler %p flags %#x", (void *)cur.sa_sigaction, cur.sa_flags);
  raise(SIGUSR1);
  report(usr1_count == 1, "handler-runs", "SIGUSR1 handler ran %d times", usr1_count);
  /* blocked + pending SIGUSR2 */
  sigset_t now, pend; sigprocmask(SIG_BLOCK, NULL, &now); sigpending(&pend);
  report(sigismember(&now, SIGUSR2), "blocked", "SIGUSR2 not blocked");
  report(sigismember(&pend, SIGUSR2) && usr2_count == 0, "pending", "SIGUSR2 pending %d, delivered %d", sigismember(&pend, SIGUSR2), usr2_count);
  sigprocmask(SIG_UNBLOCK, &block, NULL);
  report(usr2_count == 1, "pending-delivered", "SIGUSR2 delivered %d times on unblock", usr2_count);
  /* file offset, sharing, flags */
  off_t p1 = lseek(fd, 0, SEEK_CUR), p2 = lseek(dupfd, 0, SEEK_CUR);
  report(p1 == 7 && p2 == 7, "offset", "offsets %lld and %lld", (long long)p1, (long long)p2);
  lseek(fd, 3, SEEK_SET);
  report(lseek(dupfd, 0, SEEK_CUR) == 3, "shared-description", "dup does not share the offset");
  int fl = fcntl(fd, F_GETFL);
  report((fl & O_ACCMODE) == O_RDWR, "open-flags", "flags %#x", fl);
  report(!(fcntl(fd, F_GETFD) & FD_CLOEXEC) && (fcntl(dupfd, F_GETFD) & FD_CLOEXEC), "cloexec", "cloexec %d/%d", fcntl(fd, F_GETFD), fcntl(dupfd, F_GETFD));
  char buf[4] = {0};
  report(pread(fd, buf, 3, 7) == 3 && !memcmp(buf, "789", 3), "file-content", "read '%s'", buf);
  /* private file mapping */
  char disk[9] = {0};
  int mf = open("map", O_RDONLY); (void)!read(mf, disk, 8); close(mf);
  report(!memcmp(map, "MODIFIED", 8) && !strcmp(disk, "original"), "private-mapping", "memory '%.8s' disk '%s'", map, disk);
  /* cwd, umask, rlimit, pid */
  char cwd[4096]; (void)!getcwd(cwd, sizeof cwd);
  char real[4096]; (void)!realpath(dir, real);
  report(!strcmp(cwd, real), "cwd", "cwd %s", cwd);
  mode_t um = umask(0); umask(um);
  report(um == 027, "umask", "umask %o", um);
  getrlimit(RLIMIT_NOFILE, &rl);
  report(rl.rlim_cur == 1000, "rlimit", "RLIMIT_NOFILE soft %llu", (unsigned long long)rl.rlim_cur);
  report(getpid() == pid, "pid", "pid %d, was %d", getpid(), pid);
  /* credentials, personality, OOM score */
  gid_t rg, eg, sg; getresgid(&rg, &eg, &sg);
  gid_t got[8]; int ng = getgroups(8, got);
  report(rg == 100 && eg == 100 && sg == 100 && ng == 2 && got[0] == 1234 && got[1] == 5678, "creds",
         "gids %d/%d/%d, %d groups", rg, eg, sg, ng);
  report(prctl(PR_CAPBSET_READ, CAP_SYS_BOOT, 0, 0, 0) == 0 && prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN, 0, 0, 0) == 1,
         "capability-bounding-set", "CAP_SYS_BOOT %d", prctl(PR_CAPBSET_READ, CAP_SYS_BOOT, 0, 0, 0));
  int pers = personality(0xffffffff);
  report(pers == want_pers, "personality", "personality %#x, want %#x", pers, want_pers);
  char ob[16] = {0};
  int of = open("/proc/self/oom_score_adj", O_RDONLY); (void)!read(of, ob, sizeof ob - 1); close(of);
  report(atoi(ob) == 123, "oom-score-adj", "oom_score_adj %s", ob);
  char f0[256], f1[256], f2[256];
  vmflags(adv, f0, sizeof f0); vmflags(adv + 4096, f1, sizeof f1); vmflags(adv + 2 * 4096, f2, sizeof f2);
  report(strstr(f0, " dd") && strstr(f0, " dc") && strstr(f1, " dd") && strstr(f1, " dc") && !strstr(f2, " dd") && !strstr(f2, " dc")
         && adv[0] == 1 && adv[2 * 4096] == 2, "madvise", "VmFlags [%s] [%s] [%s]", f0, f1, f2);
  int thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
  report(thp == 1, "thp-disabled", "PR_GET_THP_DISABLE %d", thp);
  return result();
}
