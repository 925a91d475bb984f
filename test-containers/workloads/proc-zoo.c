/*
 * proc-zoo: one process holding one of each kernel object the /proc parsers
 * must decode (test/sys/proc.test.ts). It sets everything up, prints one
 * "key value..." line per object (addresses in hex), prints "ready", and
 * sleeps until killed.
 *
 * usage: proc-zoo WORKDIR   (WORKDIR: an existing, writable, empty directory)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

static void die(const char *what)
{
	fprintf(stderr, "proc-zoo: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *worker(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "zoo worker");
	for (;;)
		pause();
	return NULL;
}

static char *map_file(const char *path, int unlink_after)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die(path);
	if (ftruncate(fd, 8192))
		die("ftruncate");
	char *p = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 4096);
	if (p == MAP_FAILED)
		die("mmap file");
	close(fd);
	if (unlink_after)
		unlink(path);
	return p;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: proc-zoo WORKDIR\n");
		return 2;
	}
	const char *dir = argv[1];
	char path[4096];
	long page = sysconf(_SC_PAGESIZE);

	/* comm with spaces and parentheses: /proc/PID/stat must be split at the last ')' */
	prctl(PR_SET_NAME, "a) b (c)");

	/* madvise: one VMA with DONTFORK+RANDOM, another with SEQUENTIAL+DONTDUMP+WIPEONFORK */
	char *m = mmap(NULL, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		die("mmap anon");
	memset(m, 1, 8 * page);
	if (madvise(m, 2 * page, MADV_DONTFORK) || madvise(m, 2 * page, MADV_RANDOM))
		die("madvise a");
	if (madvise(m + 4 * page, 2 * page, MADV_SEQUENTIAL) || madvise(m + 4 * page, 2 * page, MADV_DONTDUMP) ||
	    madvise(m + 4 * page, 2 * page, MADV_WIPEONFORK))
		die("madvise b");
	printf("madv_dontfork_random %lx %lx\n", (unsigned long)m, (unsigned long)(m + 2 * page));
	printf("madv_seq_dontdump_wipe %lx %lx\n", (unsigned long)(m + 4 * page), (unsigned long)(m + 6 * page));

	/* MAP_NORESERVE and MAP_LOCKED */
	char *nr = mmap(NULL, 2 * page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *lo = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
	if (nr == MAP_FAILED || lo == MAP_FAILED)
		die("mmap noreserve/locked");
	printf("noreserve %lx\n", (unsigned long)nr);
	printf("locked %lx\n", (unsigned long)lo);

	/* a named anonymous VMA: [anon:stasis anon] */
	char *an = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (an == MAP_FAILED)
		die("mmap named");
	if (prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)an, 3 * page, "stasis anon") == 0)
		printf("anon_named %lx\n", (unsigned long)an);

	/* shared anonymous memory (/dev/zero (deleted)) */
	char *sa = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sa == MAP_FAILED)
		die("mmap shared anon");
	sa[0] = 1;
	printf("shared_anon %lx\n", (unsigned long)sa);

	/* memfd with a space in its name */
	int mfd = memfd_create("stasis mem", 0);
	if (mfd < 0 || ftruncate(mfd, page))
		die("memfd");
	char *mm = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (mm == MAP_FAILED)
		die("mmap memfd");
	printf("memfd_map %lx\n", (unsigned long)mm);
	printf("memfd_fd %d\n", mfd);

	/* SysV shared memory, removed once attached */
	int shmid = shmget(IPC_PRIVATE, page, IPC_CREAT | 0600);
	if (shmid >= 0) {
		char *sv = shmat(shmid, NULL, 0);
		if (sv != (void *)-1) {
			printf("sysv %lx %d\n", (unsigned long)sv, shmid);
			shmctl(shmid, IPC_RMID, NULL);
		}
	}

	/* file mappings: a path with spaces, and a deleted file (pgoff 4096) */
	snprintf(path, sizeof(path), "%s/with space (1).bin", dir);
	char *fs = map_file(path, 0);
	printf("file_spaces %lx\n", (unsigned long)fs);
	snprintf(path, sizeof(path), "%s/gone.bin", dir);
	char *fg = map_file(path, 1);
	printf("file_deleted %lx\n", (unsigned long)fg);

	/* eventfd: count 300 (0x12c), semaphore, non-blocking */
	int efd = eventfd(300, EFD_SEMAPHORE | EFD_NONBLOCK);
	if (efd < 0)
		die("eventfd");
	printf("eventfd %d\n", efd);

	/* timerfd: CLOCK_MONOTONIC, first expiry in 1000 s, then every 50.25 s */
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	struct itimerspec its = { .it_value = { 1000, 0 }, .it_interval = { 50, 250000000 } };
	if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL))
		die("timerfd");
	printf("timerfd %d\n", tfd);

	/* epoll watching the eventfd and the timerfd */
	int epfd = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = 0x1122334455667788ULL };
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev))
		die("epoll eventfd");
	ev.events = EPOLLIN | EPOLLOUT;
	ev.data.u64 = 42;
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev))
		die("epoll timerfd");
	printf("epoll %d\n", epfd);

	/* signalfd on SIGUSR1|SIGUSR2 */
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGUSR1);
	sigaddset(&ss, SIGUSR2);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	int sfd = signalfd(-1, &ss, SFD_NONBLOCK);
	if (sfd < 0)
		die("signalfd");
	printf("signalfd %d\n", sfd);

	/* inotify watching WORKDIR for create/delete */
	int ifd = inotify_init1(IN_NONBLOCK);
	int wd = ifd < 0 ? -1 : inotify_add_watch(ifd, dir, IN_CREATE | IN_DELETE);
	if (wd < 0)
		die("inotify");
	printf("inotify %d %d\n", ifd, wd);

	/* fanotify (needs CAP_SYS_ADMIN): a mark on WORKDIR */
	int fan = fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
	if (fan >= 0 && fanotify_mark(fan, FAN_MARK_ADD, FAN_OPEN | FAN_CLOSE_WRITE, AT_FDCWD, dir) == 0)
		printf("fanotify %d\n", fan);

	/* pidfd of ourselves */
	int pfd = syscall(SYS_pidfd_open, getpid(), 0);
	if (pfd >= 0)
		printf("pidfd %d\n", pfd);

	/* an flock()ed file */
	snprintf(path, sizeof(path), "%s/locked", dir);
	int lfd = open(path, O_RDWR | O_CREAT | O_APPEND, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX))
		die("flock");
	if (lseek(lfd, 0, SEEK_SET) < 0 || write(lfd, "0123456789", 10) != 10)
		die("write");
	printf("flock %d\n", lfd);

	/* a POSIX timer delivering SIGUSR1 */
	struct sigevent sev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };
	timer_t tid;
	if (timer_create(CLOCK_MONOTONIC, &sev, &tid) == 0)
		printf("posix_timer %ld\n", (long)(intptr_t)tid);

	/* a second thread and a child (killed with us) */
	pthread_t th;
	if (pthread_create(&th, NULL, worker, NULL))
		die("pthread_create");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	printf("child %d\n", child);

	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
