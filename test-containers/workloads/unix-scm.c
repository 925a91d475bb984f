/* unix-scm: descriptors in flight, sent with SCM_RIGHTS and not yet received when the process is
 * dumped. Run with DIR: prints "ready", waits for DIR/check (after restore), then receives them
 * and checks each item ("ok"/"FAIL" lines, "result PASS|FAIL").
 *   scm-pipe       a datagram pair carries the read end of a pipe; the sender closed its copy
 *                  and holds only the write end (at the read end's old number)
 *   scm-two        one message carrying two descriptors: a file of DIR opened read-write at
 *                  offset 5, and the write end of the same pipe (which the process also holds)
 *   scm-stream     a stream pair: bytes, then bytes with a descriptor (an eventfd), then bytes
 *   scm-order      the datagrams around them keep their order and contents
 *   scm-socket     one end of a stream socketpair in flight (the sender closed it), with bytes
 *                  queued for it; the other end kept
 *   scm-child      a child's datagram pair carries the read end of a pipe whose write end only
 *                  the parent holds (the parent writes, the child reads what it receives);
 *                  left out with "no-child" */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "selfcheck.h"

static void die(const char *what) { printf("ERR %s: %s\n", what, strerror(errno)); exit(2); }

/* Send `len` bytes of `data` with `n` descriptors attached. */
static int send_fds(int via, const char *data, int len, const int *fds, int n) {
  char control[CMSG_SPACE(4 * sizeof(int))];
  memset(control, 0, sizeof control);
  struct iovec iov = { (void *)data, len };
  struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = CMSG_SPACE(n * sizeof(int)) };
  struct cmsghdr *c = CMSG_FIRSTHDR(&h);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(n * sizeof(int));
  memcpy(CMSG_DATA(c), fds, n * sizeof(int));
  return sendmsg(via, &h, 0) == len ? 0 : -1;
}

/* Why the last recv_fds failed: its errno, or the truncation flags it saw. */
static char why[64];

/* Receive one message: its bytes into buf (returns their count), its descriptors into fds. */
static int recv_fds(int via, char *buf, int len, int *fds, int *n) {
  char control[CMSG_SPACE(4 * sizeof(int))];
  struct iovec iov = { buf, len };
  struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control };
  int r = recvmsg(via, &h, MSG_DONTWAIT);
  *n = 0;
  if (r < 0) snprintf(why, sizeof why, "%s", strerror(errno));
  else snprintf(why, sizeof why, "msg_flags 0x%x", h.msg_flags);
  if (r < 0 || (h.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    *n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    memcpy(fds, CMSG_DATA(c), *n * sizeof(int));
  }
  return r;
}

int main(int argc, char **argv) {
  if (argc < 2 || chdir(argv[1])) return 2;
  setvbuf(stdout, NULL, _IOLBF, 0);

  int dg[2], st[2], p[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) || socketpair(AF_UNIX, SOCK_STREAM, 0, st) || pipe(p)) die("setup");
  send(dg[0], "before", 6, 0);
  if (send_fds(dg[0], "P", 1, &p[0], 1)) die("send pipe");
  /* The read end now lives only in flight; the write end moves to its number. */
  int rd_num = p[0];
  close(p[0]);
  if (dup2(p[1], rd_num) < 0) die("dup2");
  close(p[1]);
  int wr = rd_num;

  int file = open("scm-file", O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (file < 0 || write(file, "0123456789", 10) != 10 || lseek(file, 5, SEEK_SET) != 5) die("file");
  int two[2] = { file, wr };
  if (send_fds(dg[0], "FW", 2, two, 2)) die("send two");
  close(file);
  send(dg[0], "after", 5, 0);

  int sp[2], sk[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sk) || socketpair(AF_UNIX, SOCK_STREAM, 0, sp)) die("socket pairs");
  write(sp[0], "queued", 6);
  if (send_fds(sk[0], "S", 1, &sp[1], 1)) die("send socket");
  close(sp[1]);

  int ev = eventfd(7, 0);
  write(st[0], "head-", 5);
  if (send_fds(st[0], "fd", 2, &ev, 1)) die("send eventfd");
  close(ev);
  write(st[0], "-tail", 5);

  /* A child holds the read end of the parent's pipe only in flight. */
  int with_child = !(argc > 2 && !strcmp(argv[2], "no-child"));
  int cp[2], set[2];
  if (pipe(cp) || pipe(set)) die("pipes for the child");
  pid_t child = with_child ? fork() : -1;
  if (child == 0) {
    int pair[2];
    close(cp[1]);
    close(set[0]);
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) || send_fds(pair[0], "C", 1, &cp[0], 1)) die("child send");
    close(cp[0]);
    close(set[1]); /* set up: the parent may say ready */
    wait_check();
    char cb[16] = {0};
    int fds[4], n, r = recv_fds(pair[1], cb, sizeof cb, fds, &n);
    struct pollfd pfd = { n == 1 ? fds[0] : -1, POLLIN, 0 };
    int ready = r == 1 && n == 1 && poll(&pfd, 1, 2000) == 1;
    int got = ready ? read(fds[0], cb, sizeof cb - 1) : -1;
    report(got == 6 && !memcmp(cb, "parent", 6), "scm-child", "received %d bytes with %d descriptors (%s), read %d from it", r, n, why, got);
    return result();
  }
  close(cp[0]);
  close(set[1]);
  char c;
  if (with_child && read(set[0], &c, 1) != 0) die("child setup");
  close(set[0]);

  printf("ready\n");
  wait_check();
  if (with_child) write(cp[1], "parent", 6);

  char buf[64];
  int fds[4], n, r;
  r = recv_fds(dg[1], buf, sizeof buf, fds, &n);
  int order_ok = r == 6 && !memcmp(buf, "before", 6) && n == 0;

  r = recv_fds(dg[1], buf, sizeof buf, fds, &n);
  if (r == 1 && buf[0] == 'P' && n == 1) {
    int got = fds[0];
    char pb[8] = {0};
    int w = write(wr, "HELLO", 5), rr = read(got, pb, sizeof pb);
    report(w == 5 && rr == 5 && !memcmp(pb, "HELLO", 5) && (fcntl(got, F_GETFL) & O_ACCMODE) == O_RDONLY, "scm-pipe",
           "write %d, read %d \"%.5s\" from the received read end", w, rr, pb);
  } else {
    report(0, "scm-pipe", "received %d bytes with %d descriptors", r, n);
  }

  r = recv_fds(dg[1], buf, sizeof buf, fds, &n);
  if (r == 2 && !memcmp(buf, "FW", 2) && n == 2) {
    char fb[8] = {0};
    int fr = read(fds[0], fb, 3);
    struct stat s1, s2;
    fstat(fds[1], &s1);
    fstat(wr, &s2);
    int same_pipe = S_ISFIFO(s1.st_mode) && s1.st_ino == s2.st_ino;
    /* The same description, not a copy: status flags set on one show on the other. */
    fcntl(wr, F_SETFL, O_NONBLOCK);
    int shared = (fcntl(fds[1], F_GETFL) & O_NONBLOCK) != 0;
    fcntl(wr, F_SETFL, 0);
    report(fr == 3 && !memcmp(fb, "567", 3) && (fcntl(fds[0], F_GETFL) & O_ACCMODE) == O_RDWR && same_pipe && shared, "scm-two",
           "file read %d \"%.3s\" (want 3 \"567\"), same pipe %d, shared description %d", fr, fb, same_pipe, shared);
  } else {
    report(0, "scm-two", "received %d bytes with %d descriptors", r, n);
  }

  r = recv_fds(dg[1], buf, sizeof buf, fds, &n);
  order_ok = order_ok && r == 5 && !memcmp(buf, "after", 5) && n == 0;
  r = recv_fds(dg[1], buf, sizeof buf, fds, &n);
  report(order_ok && r < 0, "scm-order", "the datagrams around the descriptors differ, or more follow (%d)", r);

  r = recv_fds(sk[1], buf, sizeof buf, fds, &n);
  if (r == 1 && n == 1) {
    char qb[16] = {0};
    int q = recv(fds[0], qb, sizeof qb, MSG_DONTWAIT);
    int back = write(fds[0], "back", 4) == 4 && recv(sp[0], qb + 8, 4, MSG_DONTWAIT) == 4 && !memcmp(qb + 8, "back", 4);
    report(q == 6 && !memcmp(qb, "queued", 6) && back, "scm-socket", "read %d queued bytes, answer %s", q, back ? "arrived" : "lost");
  } else {
    report(0, "scm-socket", "received %d bytes with %d descriptors", r, n);
  }

  /* Stream: the bytes up to the descriptor, the descriptor with its bytes, the rest. */
  char sb[64] = {0};
  int total = 0, got_fd = -1;
  for (int i = 0; i < 4; i++) {
    r = recv_fds(st[1], sb + total, sizeof sb - 1 - total, fds, &n);
    if (r <= 0) break;
    total += r;
    if (n == 1) got_fd = fds[0];
  }
  uint64_t v = 0;
  int er = got_fd >= 0 ? read(got_fd, &v, sizeof v) : -1;
  report(total == 12 && !memcmp(sb, "head-fd-tail", 12) && er == 8 && v == 7, "scm-stream",
         "read %d bytes \"%s\", eventfd %d gave %d (value %llu)", total, sb, got_fd, er, (unsigned long long)v);
  unlink("scm-file");
  if (with_child) {
    int cst = 0;
    waitpid(child, &cst, 0);
    report(WIFEXITED(cst) && WEXITSTATUS(cst) == 0, "scm-child-passed", "child status 0x%x", cst);
  }
  return result();
}
