/* sysv: SysV IPC objects in the process's own ipc namespace (run it under unshare --ipc).
 *   sysv WORKDIR
 * Makes three shared memory segments (one attached read-write with a page never touched, one
 * attached read-only, one not attached and owned by uid 1000), two semaphore sets (one made as
 * uid/gid 1234, so its creator is not root), and a message queue with three messages of
 * different types and its own byte limit under a raised namespace limit. Prints "ready", waits for WORKDIR/check, then checks
 * every object itself: same ids, keys, owners, modes and contents; the attached segment still
 * shared with the segment; the messages in order with their types. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include "selfcheck.h"

#define PAGE 4096
#define KEY_A 0x5157
#define KEY_C 0x5158
#define KEY_SEM 0x5159
#define KEY_SEM2 0x515b
#define KEY_MSG 0x515a
#define A_SIZE (3 * PAGE + 100)

union semun { int val; struct semid_ds *buf; unsigned short *array; };

struct msg { long mtype; char text[400]; };

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + 3); }

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2 || chdir(argv[1])) return setup_failed("chdir");

  int a = shmget(KEY_A, A_SIZE, IPC_CREAT | IPC_EXCL | 0640);
  if (a < 0) return setup_failed("shmget A");
  unsigned char *pa = shmat(a, NULL, 0);
  if (pa == (void *)-1) return setup_failed("shmat A");
  for (size_t i = 0; i < PAGE; i++) pa[i] = pattern(i);          /* page 0 */
  for (size_t i = 2 * PAGE; i < A_SIZE; i++) pa[i] = pattern(i); /* pages 2, 3; page 1 never touched */

  int b = shmget(IPC_PRIVATE, 2 * PAGE, IPC_CREAT | 0600);
  if (b < 0) return setup_failed("shmget B");
  char *tmp = shmat(b, NULL, 0);
  if (tmp == (void *)-1) return setup_failed("shmat B");
  strcpy(tmp + PAGE, "read-only view");
  shmdt(tmp);
  char *pb = shmat(b, NULL, SHM_RDONLY);
  if (pb == (void *)-1) return setup_failed("shmat B read-only");

  int c = shmget(KEY_C, PAGE, IPC_CREAT | IPC_EXCL | 0644);
  if (c < 0) return setup_failed("shmget C");
  tmp = shmat(c, NULL, 0);
  strcpy(tmp, "not attached");
  shmdt(tmp);
  struct shmid_ds cds;
  shmctl(c, IPC_STAT, &cds);
  cds.shm_perm.uid = 1000;
  cds.shm_perm.gid = 1000;
  if (shmctl(c, IPC_SET, &cds)) return setup_failed("shmctl C IPC_SET");

  int s = semget(KEY_SEM, 4, IPC_CREAT | IPC_EXCL | 0600);
  if (s < 0) return setup_failed("semget");
  unsigned short vals[4] = { 1, 7, 0, 32767 };
  union semun arg = { .array = vals };
  if (semctl(s, 0, SETALL, arg)) return setup_failed("semctl SETALL");

  if (setegid(1234) || seteuid(1234)) return setup_failed("seteuid");
  int s2 = semget(KEY_SEM2, 1, IPC_CREAT | IPC_EXCL | 0666);
  if (seteuid(0) || setegid(0)) return setup_failed("seteuid back");
  if (s2 < 0) return setup_failed("semget as 1234");

  /* A namespace limit above the default, and the queue's own limit between the two. */
  FILE *mnb = fopen("/proc/sys/kernel/msgmnb", "w");
  if (!mnb || fprintf(mnb, "100000\n") < 0 || fclose(mnb)) return setup_failed("msgmnb");
  int q = msgget(KEY_MSG, IPC_CREAT | IPC_EXCL | 0620);
  if (q < 0) return setup_failed("msgget");
  struct msqid_ds qds;
  msgctl(q, IPC_STAT, &qds);
  qds.msg_qbytes = 50000;
  if (msgctl(q, IPC_SET, &qds)) return setup_failed("msgctl IPC_SET");
  struct msg m1 = { 1, "first" }, m2 = { 5, "second, of type 5" }, m3 = { 2, { 0 } };
  for (int i = 0; i < 300; i++) m3.text[i] = (char)(i * 13);
  if (msgsnd(q, &m1, strlen(m1.text) + 1, 0) || msgsnd(q, &m2, strlen(m2.text) + 1, 0) || msgsnd(q, &m3, 300, 0))
    return setup_failed("msgsnd");

  printf("ready %d %d %d %d %d %d\n", a, b, c, s, s2, q);
  wait_check();

  /* Segment A: same id under its key, same size and mode, contents, the hole still a hole. */
  struct shmid_ds ds;
  report(shmget(KEY_A, 0, 0) == a, "shm-id", "key 0x%x is id %d, not %d", KEY_A, shmget(KEY_A, 0, 0), a);
  report(shmctl(a, IPC_STAT, &ds) == 0 && ds.shm_segsz == A_SIZE && (ds.shm_perm.mode & 0777) == 0640,
         "shm-stat", "size %zu mode %o", ds.shm_segsz, ds.shm_perm.mode);
  report(ds.shm_nattch == 1, "shm-nattch", "%lu attachments of A", (unsigned long)ds.shm_nattch);
  int ok = 1;
  for (size_t i = 0; i < PAGE; i++) ok &= pa[i] == pattern(i);
  for (size_t i = PAGE; i < 2 * PAGE; i++) ok &= pa[i] == 0;
  for (size_t i = 2 * PAGE; i < A_SIZE; i++) ok &= pa[i] == pattern(i);
  report(ok, "shm-contents", "segment A's bytes differ");
  pa[PAGE + 5] = 'Z';
  unsigned char *again = shmat(a, NULL, SHM_RDONLY);
  report(again != (void *)-1 && again[PAGE + 5] == 'Z', "shm-shared", "a write through the old attachment is not seen in a new one");
  if (again != (void *)-1) shmdt(again);

  /* Segment B: read-only attachment with its text. */
  report(strcmp(pb + PAGE, "read-only view") == 0, "shm-readonly", "B reads '%s'", pb + PAGE);
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[512], want[64];
  snprintf(want, sizeof want, "%lx-", (unsigned long)pb);
  int ro = 0;
  while (fgets(line, sizeof line, maps)) if (!strncmp(line, want, strlen(want))) ro = !strncmp(strchr(line, ' ') + 1, "r--s", 4);
  fclose(maps);
  report(ro, "shm-readonly-prot", "B's attachment is not r--s");

  /* Segment C: owner and contents. */
  report(shmctl(c, IPC_STAT, &ds) == 0 && ds.shm_perm.uid == 1000 && ds.shm_perm.gid == 1000 && ds.shm_perm.cuid == 0,
         "shm-owner", "uid %u gid %u cuid %u", ds.shm_perm.uid, ds.shm_perm.gid, ds.shm_perm.cuid);
  tmp = shmat(c, NULL, SHM_RDONLY);
  report(tmp != (void *)-1 && !strcmp(tmp, "not attached"), "shm-unattached", "C's contents lost");

  /* Semaphores: values, and the creator of the second set. */
  unsigned short got[4] = { 9, 9, 9, 9 };
  arg.array = got;
  report(semget(KEY_SEM, 0, 0) == s && semctl(s, 0, GETALL, arg) == 0 && !memcmp(got, vals, sizeof vals),
         "sem-values", "%u %u %u %u", got[0], got[1], got[2], got[3]);
  struct semid_ds sds;
  arg.buf = &sds;
  report(semctl(s2, 0, IPC_STAT, arg) == 0 && sds.sem_perm.cuid == 1234 && sds.sem_perm.cgid == 1234 &&
         sds.sem_perm.uid == 1234 && (sds.sem_perm.mode & 0777) == 0666,
         "sem-creator", "cuid %u cgid %u uid %u mode %o", sds.sem_perm.cuid, sds.sem_perm.cgid, sds.sem_perm.uid, sds.sem_perm.mode);

  /* The queue: its limit, then the type-2 message first (types kept), then the rest in order. */
  report(msgget(KEY_MSG, 0) == q && msgctl(q, IPC_STAT, &qds) == 0 && qds.msg_qbytes == 50000 && qds.msg_qnum == 3 &&
         (qds.msg_perm.mode & 0777) == 0620, "msg-stat", "qbytes %lu qnum %lu mode %o",
         (unsigned long)qds.msg_qbytes, (unsigned long)qds.msg_qnum, qds.msg_perm.mode);
  struct msg r;
  ssize_t n = msgrcv(q, &r, sizeof r.text, 2, IPC_NOWAIT);
  report(n == 300 && !memcmp(r.text, m3.text, 300), "msg-type", "type 2: %zd bytes", n);
  n = msgrcv(q, &r, sizeof r.text, 0, IPC_NOWAIT);
  report(n == (ssize_t)strlen(m1.text) + 1 && r.mtype == 1 && !strcmp(r.text, "first"), "msg-order-1", "got type %ld '%s'", r.mtype, r.text);
  n = msgrcv(q, &r, sizeof r.text, 0, IPC_NOWAIT);
  report(n > 0 && r.mtype == 5 && !strcmp(r.text, m2.text), "msg-order-2", "got type %ld '%s'", r.mtype, r.text);
  return result();
}
