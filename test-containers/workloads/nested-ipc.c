/* nested-ipc: ipc and uts namespaces nested in a tree without user namespaces of its own, which
 * checks itself once DIR/check appears (after restore): "ok ITEM"/"FAIL ITEM: why", "result".
 *   nested-ipc DIR
 * The root forks A, which unshares an ipc and a uts namespace, names the latter nested-a, makes
 * a SysV segment ("segment of A", kept attached) and a semaphore (value 5) owned by 1234:2345,
 * then forks B (born in them). After restore A ("a-ns") and B ("b-ns") each check that they see
 * the name, the segment (attached in A: its bytes; B attaches it) and the semaphore with their
 * ids and owner, and that they share their namespaces with each other and not with the root;
 * the root ("root-ns") that its host name is what it was and A's objects are not its. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

#define SEG_TEXT "segment of A"

static int shm_id = -1, sem_id = -1;
static char *shm_at;

union semun { int val; struct semid_ds *buf; unsigned short *array; };

static unsigned long ns_ino(const char *kind) {
  char path[64];
  struct stat sb;
  snprintf(path, sizeof path, "/proc/self/ns/%s", kind);
  return stat(path, &sb) ? 0 : sb.st_ino;
}

/* What a task sees of its namespaces: the name, the objects (attaching the segment if need be). */
static void ns_state(char *out, size_t n) {
  struct utsname u;
  struct shmid_ds sd;
  struct semid_ds ssd;
  uname(&u);
  char *at = shm_at ? shm_at : shmat(shm_id, NULL, SHM_RDONLY);
  int len = snprintf(out, n, "uts %s ipc %lu uts %lu", u.nodename, ns_ino("ipc"), ns_ino("uts"));
  if (shmctl(shm_id, IPC_STAT, &sd) || at == (void *)-1) len += snprintf(out + len, n - len, " | shm %d: %s", shm_id, strerror(errno));
  else len += snprintf(out + len, n - len, " | shm %d owner %u:%u mode %o at '%s'", shm_id, sd.shm_perm.uid, sd.shm_perm.gid, sd.shm_perm.mode & 0777, at);
  if (!shm_at && at != (void *)-1) shmdt(at);
  if (semctl(sem_id, 0, IPC_STAT, (union semun){ .buf = &ssd })) snprintf(out + len, n - len, " | sem %d: %s", sem_id, strerror(errno));
  else snprintf(out + len, n - len, " | sem %d owner %u:%u value %d", sem_id, ssd.sem_perm.uid, ssd.sem_perm.gid, semctl(sem_id, 0, GETVAL));
}

/* Record, say "set" over `res`, wait for the check, compare, one line over `res`. */
static void check_over(int res) {
  char before[512], after[512];
  ns_state(before, sizeof before);
  dprintf(res, "set %lu %lu\n", ns_ino("ipc"), ns_ino("uts"));
  wait_check();
  ns_state(after, sizeof after);
  /* (the inodes are new ones after restore: compared between A and B by the root) */
  const char *b = strchr(before, '|'), *a = strchr(after, '|');
  if (!b || !a || strcmp(a, b) || strncmp(after, "uts nested-a ", 13) || !strstr(after, "owner 1234:2345 mode 640 at '" SEG_TEXT "'") ||
      !strstr(after, "owner 1234:2345 value 5"))
    dprintf(res, "FAIL before [%s] after [%s]\n", before, after);
  else dprintf(res, "ok %lu %lu\n", ns_ino("ipc"), ns_ino("uts"));
  _exit(0);
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  int ra[2], rb[2];
  if (pipe(ra) || pipe(rb)) return setup_failed("pipe");
  pid_t a = fork();
  if (a == 0) {
    if (unshare(CLONE_NEWIPC | CLONE_NEWUTS) || sethostname("nested-a", 8)) { dprintf(ra[1], "FAIL unshare: %s\n", strerror(errno)); _exit(1); }
    shm_id = shmget(0x4e41, 4096, IPC_CREAT | 0640);
    sem_id = semget(0x4e42, 1, IPC_CREAT | 0640);
    struct shmid_ds sd;
    struct semid_ds ssd;
    shm_at = shm_id < 0 ? (void *)-1 : shmat(shm_id, NULL, 0);
    if (sem_id < 0 || shm_at == (void *)-1 || semctl(sem_id, 0, SETVAL, (union semun){ .val = 5 }) ||
        shmctl(shm_id, IPC_STAT, &sd) || semctl(sem_id, 0, IPC_STAT, (union semun){ .buf = &ssd })) {
      dprintf(ra[1], "FAIL objects: %s\n", strerror(errno));
      _exit(1);
    }
    strcpy(shm_at, SEG_TEXT);
    sd.shm_perm.uid = ssd.sem_perm.uid = 1234;
    sd.shm_perm.gid = ssd.sem_perm.gid = 2345;
    if (shmctl(shm_id, IPC_SET, &sd) || semctl(sem_id, 0, IPC_SET, (union semun){ .buf = &ssd })) { dprintf(ra[1], "FAIL owner: %s\n", strerror(errno)); _exit(1); }
    pid_t b = fork();
    if (b == 0) {
      shmdt(shm_at);
      shm_at = NULL;
      check_over(rb[1]);
    }
    check_over(ra[1]);
  }
  FILE *fa = fdopen(ra[0], "r"), *fb = fdopen(rb[0], "r");
  char la[1024] = "", lb[1024] = "";
  if (!fgets(la, sizeof la, fa) || strncmp(la, "set ", 4)) { printf("FAIL setup: A: %s", la); return 1; }
  if (!fgets(lb, sizeof lb, fb) || strncmp(lb, "set ", 4)) { printf("FAIL setup: B: %s", lb); return 1; }
  char host0[65];
  gethostname(host0, sizeof host0);
  printf("ready %d\n", a);
  wait_check();
  char host1[65];
  gethostname(host1, sizeof host1);
  /* (in a container, its namespaces are new ones after restore) */
  unsigned long ipc0 = ns_ino("ipc"), uts0 = ns_ino("uts");
  report(!strcmp(host0, host1) && shmget(0x4e41, 0, 0) < 0, "root-ns", "host name %s, was %s; A's segment seen", host1, host0);
  if (!fgets(la, sizeof la, fa)) strcpy(la, "no answer\n");
  if (!fgets(lb, sizeof lb, fb)) strcpy(lb, "no answer\n");
  la[strcspn(la, "\n")] = 0;
  lb[strcspn(lb, "\n")] = 0;
  unsigned long ia = 0, ua = 0, ib = 0, ub = 0;
  int oka = sscanf(la, "ok %lu %lu", &ia, &ua) == 2, okb = sscanf(lb, "ok %lu %lu", &ib, &ub) == 2;
  report(oka && ia != ipc0 && ua != uts0, "a-ns", "%s (the root's: %lu %lu)", la, ipc0, uts0);
  report(okb && ib == ia && ub == ua, "b-ns", "%s (A's: %lu %lu)", lb, ia, ua);
  return result();
}
