/* fdstate: per-description state beyond the kind itself, and less common kinds; sets one MODE
 * up, prints "ready PID", waits for DIR/check (after restore), then checks every item itself:
 * "ok ITEM" / "FAIL ITEM: why", "result PASS|FAIL", exit 0 / 1.
 *   fdstate DIR MODE
 * MODE:
 *   pipe-flags    a full pipe whose write end is O_NONBLOCK; a dup of each end (same
 *                 description) and a reopen of each end through /proc (a description of its own,
 *                 blocking)
 *   fown          a pipe whose ends send SIGIO to the process (F_SETOWN, F_SETSIG, O_ASYNC; set
 *                 while the euid was 1 when run as root), a pipe owned by the process group with
 *                 SIGURG
 *   fown-thread   a pipe owned by a thread (F_OWNER_TID) that is not the main one
 *   file-attr     DIR/attr (200000 bytes, mode 06604, owner 1:2 as root, mtime 123456) open, then
 *                 unlinked
 *   udp-shutdown  two connected UDP sockets on 127.0.0.1: one shut down for writing, the other
 *                 for reading
 *   packet        AF_PACKET sockets: SOCK_RAW unbound, TPACKET_V2, auxdata, an RX ring, promisc
 *                 membership on lo; SOCK_DGRAM ETH_P_IP bound to lo with reserve 8, origdev and a
 *                 fanout group; SOCK_DGRAM ETH_P_IP bound to lo that sees a UDP datagram sent after
 *                 restore
 *   epoll-closed  an epoll set watching two pipes, both through fd 200, each closed since (the pipes
 *                 are still open at other fds); fd 200 now holds an eventfd
 *   fanotify      a fanotify group (FAN_CLASS_NOTIF, O_NONBLOCK) with an inode mark on DIR/fa
 *                 (FAN_MODIFY) and a mount mark on DIR's mount (FAN_OPEN) with DIR/fq ignored
 *   seccomp-strict a child in strict seccomp mode, blocked in read(); a thread of the process in
 *                 strict mode, blocked in read() too */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/seccomp.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utime.h>
#include "selfcheck.h"

static char dir[4096];

static const char *at(const char *name) {
  static char buf[2][4200];
  static int i;
  i ^= 1;
  snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
  return buf[i];
}

static void die(const char *what) {
  printf("setup failed: %s: %s\n", what, strerror(errno));
  exit(3);
}

static int nonblocking(int fd) { return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

/* ---- pipe-flags ---- */
static int pf[2], pf_dup[2], pf_reopen[2];
static size_t pf_queued;

static void setup_pipe_flags(void) {
  char path[64];
  if (pipe(pf)) die("pipe");
  pf_dup[0] = dup(pf[0]);
  pf_dup[1] = dup(pf[1]);
  snprintf(path, sizeof path, "/proc/self/fd/%d", pf[0]);
  pf_reopen[0] = open(path, O_RDONLY);
  snprintf(path, sizeof path, "/proc/self/fd/%d", pf[1]);
  pf_reopen[1] = open(path, O_WRONLY);
  if (pf_reopen[0] < 0 || pf_reopen[1] < 0) die("reopen pipe");
  if (fcntl(pf[1], F_SETFL, fcntl(pf[1], F_GETFL) | O_NONBLOCK)) die("O_NONBLOCK");
  unsigned char buf[4096];
  for (;;) {
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(pf_queued + i);
    ssize_t n = write(pf[1], buf, sizeof buf);
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) die("fill pipe");
    pf_queued += n;
  }
}

static void check_pipe_flags(void) {
  report(nonblocking(pf[1]), "pipe-write-end-nonblock", "O_NONBLOCK lost on the write end");
  report(nonblocking(pf_dup[1]), "pipe-write-dup-nonblock", "O_NONBLOCK lost on the dup of the write end");
  report(!nonblocking(pf_reopen[1]), "pipe-write-reopen-blocking", "O_NONBLOCK appeared on the reopened write end");
  report(!nonblocking(pf[0]) && !nonblocking(pf_reopen[0]), "pipe-read-ends-blocking", "O_NONBLOCK appeared on a read end");
  ssize_t n = write(pf[1], "x", 1);
  report(n < 0 && errno == EAGAIN, "pipe-still-full", "a write to the full non-blocking end gave %zd (%s)", n, strerror(errno));
  close(pf[1]); close(pf_dup[1]); close(pf_reopen[1]);
  size_t got = 0, bad = 0;
  unsigned char buf[4096];
  while ((n = read(pf[0], buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; i++) if (buf[i] != (unsigned char)(got + i)) bad++;
    got += n;
  }
  report(got == pf_queued && !bad, "pipe-data", "read %zu of %zu bytes back, %zu wrong", got, pf_queued, bad);
}

/* ---- fown ---- */
static int fo[2], fo_grp[2], fo_tid[2];
static volatile sig_atomic_t sigio_count, sigurg_count;
static pid_t owner_tid;
static int fo_flags[2];

static void on_sigio(int sig) { (void)sig; sigio_count++; }
static void on_sigurg(int sig) { (void)sig; sigurg_count++; }

static void *owner_thread(void *arg) {
  (void)arg;
  owner_tid = gettid();
  for (;;) pause();
  return NULL;
}

static void setup_fown(void) {
  struct sigaction sa = { .sa_handler = on_sigio, .sa_flags = SA_RESTART };
  sigaction(SIGIO, &sa, NULL);
  sa.sa_handler = on_sigurg;
  sigaction(SIGURG, &sa, NULL);
  if (pipe(fo) || pipe(fo_grp)) die("pipe");
  uid_t ruid, euid, suid;
  getresuid(&ruid, &euid, &suid);
  if (euid == 0 && setresuid(-1, 1, -1)) die("setresuid");
  for (int i = 0; i < 2; i++) {
    if (fcntl(fo[i], F_SETOWN, getpid()) || fcntl(fo[i], F_SETSIG, SIGIO)
        || fcntl(fo[i], F_SETFL, fcntl(fo[i], F_GETFL) | O_ASYNC)) die("fcntl owner");
    fo_flags[i] = fcntl(fo[i], F_GETFL);
  }
  if (setresuid(-1, euid, -1)) die("setresuid back");
  if (setpgid(0, 0) && errno != EPERM) die("setpgid");
  if (fcntl(fo_grp[0], F_SETOWN, -getpgrp()) || fcntl(fo_grp[0], F_SETSIG, SIGURG)
      || fcntl(fo_grp[0], F_SETFL, fcntl(fo_grp[0], F_GETFL) | O_ASYNC)) die("fcntl group owner");
}

static void setup_fown_thread(void) {
  if (pipe(fo_tid)) die("pipe");
  pthread_t th;
  pthread_create(&th, NULL, owner_thread, NULL);
  while (!owner_tid) nap(1);
  struct f_owner_ex ex = { F_OWNER_TID, owner_tid };
  if (fcntl(fo_tid[0], F_SETOWN_EX, &ex)) die("F_SETOWN_EX");
}

static void check_fown_thread(void) {
  struct f_owner_ex ex = { 0, 0 };
  fcntl(fo_tid[0], F_GETOWN_EX, &ex);
  report(ex.type == F_OWNER_TID && ex.pid == owner_tid, "fown-tid", "owner type %d pid %d (want %d %d)", ex.type, ex.pid, F_OWNER_TID, owner_tid);
}

static void check_fown(void) {
  for (int i = 0; i < 2; i++) {
    char item[32];
    snprintf(item, sizeof item, "fown-pipe-%d", i);
    int own = fcntl(fo[i], F_GETOWN), sig = fcntl(fo[i], F_GETSIG), fl = fcntl(fo[i], F_GETFL);
    report(own == getpid() && sig == SIGIO && fl == fo_flags[i], item,
           "owner %d (want %d), signal %d (want %d), flags %o (want %o)", own, getpid(), sig, SIGIO, fl, fo_flags[i]);
  }
  int own = fcntl(fo_grp[0], F_GETOWN), sig = fcntl(fo_grp[0], F_GETSIG);
  report(own == -getpgrp() && sig == SIGURG, "fown-pgrp", "owner %d (want %d), signal %d (want %d)", own, -getpgrp(), sig, SIGURG);
  sigio_count = 0;
  sigurg_count = 0;
  if (write(fo[1], "a", 1) != 1 || write(fo_grp[1], "b", 1) != 1) die("write");
  for (int i = 0; i < 200 && (!sigio_count || !sigurg_count); i++) nap(5);
  report(sigio_count > 0, "fown-sigio-delivered", "no SIGIO after writing to the owned pipe");
  report(sigurg_count > 0, "fown-pgrp-signal-delivered", "no SIGURG after writing to the group-owned pipe");
}

/* ---- file-attr ---- */
#define ATTR_SIZE 200000
#define ATTR_MODE 06604
#define ATTR_MTIME 123456
static int attr_fd, attr_root;

static void setup_file_attr(void) {
  attr_fd = open(at("attr"), O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (attr_fd < 0) die("open attr");
  static unsigned char buf[ATTR_SIZE];
  for (int i = 0; i < ATTR_SIZE; i++) buf[i] = (unsigned char)(i * 7 + 3);
  if (write(attr_fd, buf, sizeof buf) != sizeof buf) die("write attr");
  attr_root = geteuid() == 0;
  if (attr_root && fchown(attr_fd, 1, 2)) die("fchown");
  struct utimbuf ut = { .actime = 0, .modtime = ATTR_MTIME };
  if (utime(at("attr"), &ut)) die("utime");
  if (fchmod(attr_fd, ATTR_MODE)) die("fchmod");
  if (unlink(at("attr"))) die("unlink");
}

static void check_file_attr(void) {
  struct stat st;
  fstat(attr_fd, &st);
  report((st.st_mode & 07777) == ATTR_MODE, "attr-mode", "mode %o, want %o", st.st_mode & 07777, ATTR_MODE);
  report(st.st_mtime == ATTR_MTIME, "attr-mtime", "mtime %ld, want %d", (long)st.st_mtime, ATTR_MTIME);
  if (attr_root) report(st.st_uid == 1 && st.st_gid == 2, "attr-owner", "owner %d:%d, want 1:2", st.st_uid, st.st_gid);
  report(st.st_nlink == 0, "attr-still-unlinked", "%ld links", (long)st.st_nlink);
  static unsigned char buf[ATTR_SIZE];
  ssize_t n = pread(attr_fd, buf, sizeof buf, 0);
  int bad = 0;
  for (int i = 0; i < n; i++) if (buf[i] != (unsigned char)(i * 7 + 3)) bad++;
  report(n == ATTR_SIZE && !bad, "attr-data", "read %zd bytes, %d wrong", n, bad);
}

/* ---- udp-shutdown ---- */
static int us_wr, us_rd; /* us_wr: shut down for writing; us_rd: for reading */
static struct sockaddr_in us_a, us_b;

static void setup_udp_shutdown(void) {
  us_wr = socket(AF_INET, SOCK_DGRAM, 0);
  us_rd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in lo = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t len = sizeof lo;
  if (bind(us_wr, (struct sockaddr *)&lo, sizeof lo) || bind(us_rd, (struct sockaddr *)&lo, sizeof lo)) die("bind");
  getsockname(us_wr, (struct sockaddr *)&us_a, &len);
  len = sizeof lo;
  getsockname(us_rd, (struct sockaddr *)&us_b, &len);
  if (connect(us_wr, (struct sockaddr *)&us_b, sizeof us_b) || connect(us_rd, (struct sockaddr *)&us_a, sizeof us_a)) die("connect");
  if (shutdown(us_wr, SHUT_WR) || shutdown(us_rd, SHUT_RD)) die("shutdown");
}

static void check_udp_shutdown(void) {
  signal(SIGPIPE, SIG_IGN);
  ssize_t n = send(us_wr, "no", 2, 0);
  report(n < 0 && errno == EPIPE, "udp-shut-wr-refuses-send", "send gave %zd (%s), want EPIPE", n, n < 0 ? strerror(errno) : "sent");
  n = send(us_rd, "yes", 3, 0);
  char buf[16];
  ssize_t r = recv(us_wr, buf, sizeof buf, MSG_DONTWAIT);
  for (int i = 0; i < 100 && r < 0 && errno == EAGAIN; i++) { nap(5); r = recv(us_wr, buf, sizeof buf, MSG_DONTWAIT); }
  report(n == 3 && r == 3 && !memcmp(buf, "yes", 3), "udp-other-way-works", "send %zd, recv %zd", n, r);
  struct pollfd p = { us_rd, POLLIN | POLLRDHUP, 0 };
  int ready = poll(&p, 1, 0);
  report(ready == 1 && (p.revents & POLLRDHUP), "udp-shut-rd-polls-rdhup", "poll gave %d, revents %#x; want POLLRDHUP", ready, p.revents);
  struct sockaddr_in a;
  socklen_t len = sizeof a;
  getpeername(us_wr, (struct sockaddr *)&a, &len);
  report(a.sin_port == us_b.sin_port, "udp-still-connected", "peer port %d, want %d", ntohs(a.sin_port), ntohs(us_b.sin_port));
}

/* ---- packet ---- */
static int pk_raw, pk_dg, pk_see, pk_lo, pk_udp;
static struct sockaddr_ll pk_raw_addr, pk_dg_addr;

static struct tpacket_req3 small_ring(void) {
  struct tpacket_req3 r;
  memset(&r, 0, sizeof r);
  r.tp_block_size = 4096;
  r.tp_block_nr = 1;
  r.tp_frame_size = 1024;
  r.tp_frame_nr = 4;
  return r;
}

static void setup_packet(void) {
  pk_lo = if_nametoindex("lo");
  pk_raw = socket(AF_PACKET, SOCK_RAW, 0);
  pk_dg = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
  pk_see = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
  if (pk_raw < 0 || pk_dg < 0 || pk_see < 0) die("packet socket");
  struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_ifindex = pk_lo };
  if (bind(pk_dg, (struct sockaddr *)&ll, sizeof ll)) die("bind packet");
  ll.sll_protocol = htons(ETH_P_IP);
  if (bind(pk_see, (struct sockaddr *)&ll, sizeof ll)) die("bind packet");
  socklen_t len = sizeof pk_raw_addr;
  getsockname(pk_raw, (struct sockaddr *)&pk_raw_addr, &len);
  len = sizeof pk_dg_addr;
  getsockname(pk_dg, (struct sockaddr *)&pk_dg_addr, &len);
  int v = TPACKET_V2, one = 1, rsv = 8, fanout = 77 | (PACKET_FANOUT_CPU << 16);
  struct tpacket_req3 ring = small_ring();
  if (setsockopt(pk_raw, SOL_PACKET, PACKET_VERSION, &v, sizeof v)) die("PACKET_VERSION");
  if (setsockopt(pk_raw, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one)) die("PACKET_AUXDATA");
  if (setsockopt(pk_raw, SOL_PACKET, PACKET_RX_RING, &ring, sizeof ring)) die("PACKET_RX_RING");
  struct packet_mreq mr = { .mr_ifindex = pk_lo, .mr_type = PACKET_MR_PROMISC };
  if (setsockopt(pk_raw, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr)) die("PACKET_ADD_MEMBERSHIP");
  if (setsockopt(pk_dg, SOL_PACKET, PACKET_RESERVE, &rsv, sizeof rsv)) die("PACKET_RESERVE");
  if (setsockopt(pk_dg, SOL_PACKET, PACKET_ORIGDEV, &one, sizeof one)) die("PACKET_ORIGDEV");
  if (setsockopt(pk_dg, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof fanout)) die("PACKET_FANOUT");
  pk_udp = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in lo4 = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  if (bind(pk_udp, (struct sockaddr *)&lo4, sizeof lo4)) die("bind udp");
}

static int sockopt(int fd, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_PACKET, name, &v, &len)) return -1;
  return v;
}

static int same_ll(const struct sockaddr_ll *a, const struct sockaddr_ll *b) {
  return a->sll_family == b->sll_family && a->sll_protocol == b->sll_protocol && a->sll_ifindex == b->sll_ifindex;
}

static void check_packet(void) {
  struct sockaddr_ll ll;
  socklen_t len = sizeof ll;
  getsockname(pk_raw, (struct sockaddr *)&ll, &len);
  report(same_ll(&ll, &pk_raw_addr), "packet-raw-name", "family %d proto %#x ifindex %d", ll.sll_family, ntohs(ll.sll_protocol), ll.sll_ifindex);
  int type = -1;
  len = sizeof type;
  getsockopt(pk_raw, SOL_SOCKET, SO_TYPE, &type, &len);
  report(type == SOCK_RAW, "packet-raw-type", "SO_TYPE %d", type);
  report(sockopt(pk_raw, PACKET_VERSION) == TPACKET_V2, "packet-version", "PACKET_VERSION %d", sockopt(pk_raw, PACKET_VERSION));
  report(sockopt(pk_raw, PACKET_AUXDATA) == 1, "packet-auxdata", "PACKET_AUXDATA %d", sockopt(pk_raw, PACKET_AUXDATA));
  struct tpacket_req3 ring = small_ring();
  int r = setsockopt(pk_raw, SOL_PACKET, PACKET_RX_RING, &ring, sizeof ring);
  report(r < 0 && errno == EBUSY, "packet-rx-ring", "setting an RX ring again gave %d (%s), want EBUSY (one in place)", r, strerror(errno));
  struct packet_mreq mr = { .mr_ifindex = pk_lo, .mr_type = PACKET_MR_PROMISC };
  report(setsockopt(pk_raw, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &mr, sizeof mr) == 0, "packet-membership", "promisc membership gone: %s", strerror(errno));
  len = sizeof ll;
  getsockname(pk_dg, (struct sockaddr *)&ll, &len);
  report(same_ll(&ll, &pk_dg_addr), "packet-dgram-name", "family %d proto %#x ifindex %d", ll.sll_family, ntohs(ll.sll_protocol), ll.sll_ifindex);
  report(sockopt(pk_dg, PACKET_RESERVE) == 8, "packet-reserve", "PACKET_RESERVE %d", sockopt(pk_dg, PACKET_RESERVE));
  report(sockopt(pk_dg, PACKET_ORIGDEV) == 1, "packet-origdev", "PACKET_ORIGDEV %d", sockopt(pk_dg, PACKET_ORIGDEV));
  int fo = sockopt(pk_dg, PACKET_FANOUT);
  report(fo == (77 | (PACKET_FANOUT_CPU << 16)), "packet-fanout", "PACKET_FANOUT %#x", fo);
  /* The bound socket sees an IP packet sent over lo after restore. */
  struct sockaddr_in to;
  len = sizeof to;
  getsockname(pk_udp, (struct sockaddr *)&to, &len);
  const char *msg = "stasis-packet-probe";
  sendto(pk_udp, msg, strlen(msg), 0, (struct sockaddr *)&to, sizeof to);
  int seen = 0;
  char buf[2048];
  for (int i = 0; i < 200 && !seen; i++) {
    ssize_t n = recv(pk_see, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) { nap(5); continue; }
    if (memmem(buf, n, msg, strlen(msg))) seen = 1;
  }
  report(seen, "packet-sees-traffic", "the ETH_P_IP socket bound to lo saw no datagram");
}

/* ---- epoll-closed ---- */
static int ec_ep, ec_pipe[2], ec_pipe2[2], ec_efd;
#define EC_FD 200

static void setup_epoll_closed(void) {
  ec_ep = epoll_create1(0);
  if (pipe(ec_pipe)) die("pipe");
  if (dup2(ec_pipe[0], EC_FD) != EC_FD) die("dup2");
  struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x5eed0000beefULL };
  if (epoll_ctl(ec_ep, EPOLL_CTL_ADD, EC_FD, &ev)) die("epoll_ctl");
  close(EC_FD);
  if (pipe(ec_pipe2)) die("pipe");
  if (dup2(ec_pipe2[0], EC_FD) != EC_FD) die("dup2");
  ev.data.u64 = 0x2222;
  if (epoll_ctl(ec_ep, EPOLL_CTL_ADD, EC_FD, &ev)) die("epoll_ctl 2");
  close(EC_FD);
  ec_efd = eventfd(9, 0);
  if (dup2(ec_efd, EC_FD) != EC_FD) die("dup2 eventfd");
  close(ec_efd);
}

static void check_epoll_closed(void) {
  struct epoll_event ev;
  int n = epoll_wait(ec_ep, &ev, 1, 0);
  report(n == 0, "epoll-closed-quiet", "%d events before the write", n);
  if (write(ec_pipe[1], "x", 1) != 1) die("write");
  n = epoll_wait(ec_ep, &ev, 1, 1000);
  report(n == 1 && ev.data.u64 == 0x5eed0000beefULL && (ev.events & EPOLLIN), "epoll-closed-watch-fires",
         "%d events, data %#llx events %#x", n, (unsigned long long)ev.data.u64, ev.events);
  char c;
  if (read(ec_pipe[0], &c, 1) != 1 || write(ec_pipe2[1], "y", 1) != 1) die("pipe io");
  n = epoll_wait(ec_ep, &ev, 1, 1000);
  report(n == 1 && ev.data.u64 == 0x2222, "epoll-closed-second-watch-fires", "%d events, data %#llx", n, (unsigned long long)ev.data.u64);
  uint64_t v = 0;
  report(read(EC_FD, &v, sizeof v) == sizeof v && v == 9, "epoll-closed-fd-reused", "fd %d reads %llu, want the eventfd's 9", EC_FD, (unsigned long long)v);
}

/* ---- fanotify ---- */
static int fan;

static void setup_fanotify(void) {
  fan = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE);
  if (fan < 0) die("fanotify_init");
  int fd = open(at("fa"), O_CREAT | O_WRONLY, 0644);
  close(fd);
  fd = open(at("fq"), O_CREAT | O_WRONLY, 0644);
  close(fd);
  if (fanotify_mark(fan, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, at("fa"))) die("fanotify_mark inode");
  if (fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN, AT_FDCWD, dir)) die("fanotify_mark mount");
  if (fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN, AT_FDCWD, at("fq")))
    die("fanotify_mark ignore");
  /* drain what setting up caused */
  char buf[8192];
  ssize_t n;
  nap(20);
  while ((n = read(fan, buf, sizeof buf)) > 0) {
    for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) if (m->fd >= 0) close(m->fd);
  }
}

/* Reads the group's events for a while; returns the masks seen on `path`, or-ed. */
static unsigned fan_events_on(const char *path) {
  unsigned seen = 0;
  char buf[8192], link[64], target[4200];
  for (int i = 0; i < 20; i++) {
    ssize_t n = read(fan, buf, sizeof buf);
    if (n <= 0) { nap(5); continue; }
    for (struct fanotify_event_metadata *m = (void *)buf; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
      if (m->fd < 0) continue;
      snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
      ssize_t l = readlink(link, target, sizeof target - 1);
      if (l > 0) { target[l] = 0; if (!strcmp(target, path)) seen |= m->mask; }
      close(m->fd);
    }
  }
  return seen;
}

static void check_fanotify(void) {
  int fl = fcntl(fan, F_GETFL);
  report((fl & O_NONBLOCK) != 0, "fanotify-nonblock", "flags %o", fl);
  int fd = open(at("fa"), O_WRONLY);
  if (write(fd, "m", 1) != 1) die("write fa");
  close(fd);
  unsigned m = fan_events_on(at("fa"));
  report(m & FAN_MODIFY, "fanotify-inode-mark", "no FAN_MODIFY on %s (mask %#x)", at("fa"), m);
  report(m & FAN_OPEN, "fanotify-mount-mark", "no FAN_OPEN on %s (mask %#x)", at("fa"), m);
  fd = open(at("fq"), O_RDONLY);
  close(fd);
  m = fan_events_on(at("fq"));
  report(!(m & FAN_OPEN), "fanotify-ignored-mask", "FAN_OPEN reported on the ignored %s", at("fq"));
}

/* ---- seccomp-strict ---- */
static pid_t sc_child;
static int sc_sk;

static int seccomp_of(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  int mode = -1;
  while (f && fgets(line, sizeof line, f)) if (sscanf(line, "Seccomp:\t%d", &mode) == 1) break;
  if (f) fclose(f);
  return mode;
}

static int st_in[2], st_out[2];
static volatile pid_t st_tid;

static void *strict_thread(void *arg) {
  (void)arg;
  st_tid = gettid();
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)) return NULL;
  char c;
  if (read(st_in[0], &c, 1) == 1) { c++; if (write(st_out[1], &c, 1) != 1) syscall(SYS_exit, 1); }
  syscall(SYS_exit, 0);
  return NULL;
}

static void setup_seccomp_strict(void) {
  if (pipe(st_in) || pipe(st_out)) die("pipe");
  pthread_t th;
  pthread_create(&th, NULL, strict_thread, NULL);
  pthread_detach(th);
  while (!st_tid) nap(1);
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", st_tid);
  for (int mode = -1; mode != SECCOMP_MODE_STRICT; nap(1)) {
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f)) if (sscanf(line, "Seccomp:\t%d", &mode) == 1) break;
    if (f) fclose(f);
  }

  int sp[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp)) die("socketpair");
  sc_child = fork();
  if (sc_child == 0) {
    close(sp[0]);
    char c = 'r';
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)) _exit(5);
    if (write(sp[1], &c, 1) != 1) syscall(SYS_exit, 6);
    /* Told 'e': echo and exit cleanly; told 'k': echo, then make a call strict mode forbids. */
    if (read(sp[1], &c, 1) != 1) syscall(SYS_exit, 7);
    char reply = c == 'e' ? 'E' : 'K';
    if (write(sp[1], &reply, 1) != 1) syscall(SYS_exit, 8);
    if (c == 'k') syscall(SYS_getppid);
    syscall(SYS_exit, 0);
  }
  close(sp[1]);
  sc_sk = sp[0];
  char c;
  if (read(sc_sk, &c, 1) != 1 || c != 'r') die("child in strict mode");
}

static void check_seccomp_strict(void) {
  char path[64], line[256];
  int tmode = -1;
  snprintf(path, sizeof path, "/proc/self/task/%d/status", st_tid);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof line, f)) if (sscanf(line, "Seccomp:\t%d", &tmode) == 1) break;
  if (f) fclose(f);
  report(tmode == SECCOMP_MODE_STRICT, "seccomp-strict-thread-mode", "the thread's Seccomp: %d", tmode);
  char t = 'a';
  struct pollfd tp = { st_out[0], POLLIN, 0 };
  int tok = write(st_in[1], &t, 1) == 1 && poll(&tp, 1, 2000) == 1 && read(st_out[0], &t, 1) == 1 && t == 'b';
  report(tok, "seccomp-strict-thread-runs", "the strict thread did not answer");
  int mode = seccomp_of(sc_child);
  report(mode == SECCOMP_MODE_STRICT, "seccomp-strict-mode", "the child's Seccomp: %d, want %d", mode, SECCOMP_MODE_STRICT);
  char c = 'k';
  struct pollfd p = { sc_sk, POLLIN, 0 };
  int ok = write(sc_sk, &c, 1) == 1 && poll(&p, 1, 2000) == 1 && read(sc_sk, &c, 1) == 1 && c == 'K';
  report(ok, "seccomp-strict-child-runs", "the child did not answer over the socket");
  int status = 0;
  pid_t w = waitpid(sc_child, &status, 0);
  report(w == sc_child && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "seccomp-strict-enforced",
         "child status %#x: a forbidden call should have been killed with SIGKILL", status);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);
  snprintf(dir, sizeof dir, "%s", argv[1]);
  const char *mode = argv[2];
  if (chdir(dir)) die("chdir");
  struct { const char *name; void (*setup)(void), (*check)(void); } modes[] = {
    { "pipe-flags", setup_pipe_flags, check_pipe_flags },
    { "fown", setup_fown, check_fown },
    { "fown-thread", setup_fown_thread, check_fown_thread },
    { "file-attr", setup_file_attr, check_file_attr },
    { "udp-shutdown", setup_udp_shutdown, check_udp_shutdown },
    { "packet", setup_packet, check_packet },
    { "epoll-closed", setup_epoll_closed, check_epoll_closed },
    { "fanotify", setup_fanotify, check_fanotify },
    { "seccomp-strict", setup_seccomp_strict, check_seccomp_strict },
  };
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
    if (strcmp(modes[i].name, mode)) continue;
    modes[i].setup();
    printf("ready %d\n", getpid());
    wait_check();
    modes[i].check();
    return result();
  }
  printf("unknown mode %s\n", mode);
  return 2;
}
