/* The shape CRIU's own test suite gives a test in its user-namespace flavour ("uns"), made by a
 * launcher of ours (not a self-checking workload itself):
 *
 *   uns-flavour [-u] [-T] [-i SELF] ROOT PROGRAM [ARGS...]
 *
 * A child is cloned into a new user namespace together with new pid, mount, network, IPC and UTS
 * namespaces (all owned by it). Its uid and gid maps are not the identity and have two extents
 * each (written from here, on the host):
 *   uid: 0..19999 -> host 20000..,  100000..149999 -> host 200000..
 *   gid: 0..49999 -> host 400000.., 50000..149999  -> host 500000..
 * setgroups stays allowed. The child — pid 1 of its pid namespace, a session leader, root inside —
 * brings its loopback up, makes its root a bind mount of ROOT (pivot_root; the old root detached)
 * with a proc of its own on /proc, a tmpfs on /run and a new devpts instance on /dev/pts
 * (/dev/ptmx a link to it), takes ROOT's /dev/null as its stdin and executes SELF (this launcher
 * linked statically, a path inside ROOT: /bin/uns-flavour unless -i says otherwise) as its init.
 * That moves into a new time namespace (monotonic clock 10 days ahead, boottime 20 days: unless
 * -T) and forks PROGRAM (a path inside ROOT), the leader of a session of its own as zdtm's tests
 * are once they daemonize, with -u as uid 18943, gid 58467 and groups 27495 48244 inside (its
 * capabilities so dropped), else as root inside. Then it reaps, and exits with PROGRAM's status
 * once PROGRAM is gone.
 *
 * This launcher prints "init PID" (that child's PID on the host: the root of the tree to dump
 * and of the restored one) once PROGRAM is started, then exits: the child is left to the reaper
 * above. stdout and stderr are this launcher's all the way down (PROGRAM's output too). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

static const char UID_MAP[] = "0 20000 20000\n100000 200000 50000\n";
static const char GID_MAP[] = "0 400000 50000\n50000 500000 100000\n";

static int drop_ids, no_timens;
static char *root;
static char **program;
static int sync_fd[2];
/* This launcher's path inside ROOT (a static copy of it): what the namespace's init executes. */
static char *self_inside = "/bin/uns-flavour";

static void fail(const char *what) {
  fprintf(stderr, "uns-flavour: %s: %s\n", what, strerror(errno));
  _exit(1);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) fail(path);
  close(fd);
}

static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr)) fail("lo flags");
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr)) fail("lo up");
  close(s);
}

/* The new root: a bind mount of ROOT (a mount of the new namespace's own, so that it may be the
 * root), proc, /run and a devpts instance of its own; the host's tree detached. */
static void new_root(void) {
  if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL)) fail("make / slave");
  if (mount(root, root, NULL, MS_BIND | MS_REC, NULL)) fail("bind ROOT");
  if (chdir(root)) fail("chdir ROOT");
  if (mkdir("old", 0700) && errno != EEXIST) fail("mkdir old");
  if (syscall(SYS_pivot_root, ".", "old")) fail("pivot_root");
  if (chdir("/")) fail("chdir /");
  /* proc may be mounted here only while one is visible: before the old root goes. */
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) fail("mount /proc");
  if (mount("uns-run", "/run", "tmpfs", 0, "mode=755")) fail("mount /run");
  if (umount2("/old", MNT_DETACH)) fail("umount old root");
  rmdir("/old");
  if (mount("devpts", "/dev/pts", "devpts", 0, "newinstance,mode=620,ptmxmode=666")) fail("mount /dev/pts");
  unlink("/dev/ptmx");
  if (symlink("pts/ptmx", "/dev/ptmx")) fail("link /dev/ptmx");
}

static void new_timens(void) {
  if (unshare(CLONE_NEWTIME)) fail("unshare time");
  write_file("/proc/self/timens_offsets", "1 864000 0\n7 1728000 0\n");
  int fd = open("/proc/self/ns/time_for_children", O_RDONLY);
  if (fd < 0 || setns(fd, CLONE_NEWTIME)) fail("enter time namespace");
  close(fd);
}

/* Inside, as the test runs: a new time namespace, PROGRAM forked (its ids dropped with -u), and
 * its children reaped until it is gone (its status then this init's). */
static int run_init(void) {
  if (!no_timens) new_timens();
  pid_t test = fork();
  if (test < 0) fail("fork");
  if (test == 0) {
    close(3);
    setsid(); /* a session of its own, as zdtm's tests make (they daemonize) */
    if (drop_ids) {
      gid_t groups[] = { 27495, 48244 };
      if (setgroups(2, groups) || setresgid(58467, 58467, 58467) || setresuid(18943, 18943, 18943)) fail("drop ids");
    }
    execv(program[0], program);
    fail(program[0]);
  }
  if (write(3, "s", 1) != 1) fail("say started");
  close(3);
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, 0);
    if (p < 0 && errno == EINTR) continue;
    if (p < 0) return 1;
    if (p == test) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
}

/* The cloned child: its namespaces set up, it becomes the init of the pid namespace by executing
 * this launcher's copy inside ROOT (so that nothing of the host's stays mapped in it), which goes
 * on in run_init(). The status socket is its descriptor 3 there. */
static int init(void *arg) {
  char **argv = arg;
  char go;
  close(sync_fd[0]);
  if (read(sync_fd[1], &go, 1) != 1) fail("wait for the maps");
  setsid();
  if (setresgid(0, 0, 0) || setresuid(0, 0, 0) || setgroups(0, NULL)) fail("become root inside");
  loopback_up();
  new_root();
  /* Its stdin the root's /dev/null (stdout and stderr stay the pipes they are). */
  int null = open("/dev/null", O_RDWR);
  if (null < 0 || dup2(null, 0) != 0) fail("/dev/null");
  if (null != 0) close(null);
  if (dup2(sync_fd[1], 3) != 3) fail("dup2");
  argv[0] = self_inside;
  execv(self_inside, argv);
  fail(self_inside);
  return 1;
}

int main(int argc, char **argv) {
  int opt;
  setvbuf(stdout, NULL, _IOLBF, 0);
  int as_init = 0;
  while ((opt = getopt(argc, argv, "+uTIi:")) != -1) {
    if (opt == 'u') drop_ids = 1;
    else if (opt == 'T') no_timens = 1;
    else if (opt == 'i') self_inside = optarg;
    else if (opt == 'I') as_init = 1;
    else return 2;
  }
  if (argc - optind < 2) {
    fprintf(stderr, "usage: uns-flavour [-u] [-T] [-i SELF] ROOT PROGRAM [ARGS...]\n");
    return 2;
  }
  root = argv[optind];
  program = argv + optind + 1;
  if (as_init) return run_init();
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync_fd)) fail("socketpair");
  static char stack[64 * 1024] __attribute__((aligned(16)));
  /* The init's command line: this one with -I (and the sync socket as its descriptor 3). */
  char **init_argv = calloc(argc + 2, sizeof *init_argv);
  init_argv[0] = argv[0];
  init_argv[1] = "-I";
  memcpy(init_argv + 2, argv + 1, (argc - 1) * sizeof *argv);
  pid_t pid = clone(init, stack + sizeof stack,
                    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD, init_argv);
  if (pid < 0) fail("clone");
  close(sync_fd[1]);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/uid_map", pid);
  write_file(path, UID_MAP);
  snprintf(path, sizeof path, "/proc/%d/gid_map", pid);
  write_file(path, GID_MAP);
  char c = 'g';
  if (write(sync_fd[0], &c, 1) != 1) fail("let it go");
  if (read(sync_fd[0], &c, 1) != 1) {
    fprintf(stderr, "uns-flavour: the namespace's init failed\n");
    waitpid(pid, NULL, 0);
    return 1;
  }
  printf("init %d\n", pid);
  return 0;
}
