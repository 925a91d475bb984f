// Per-description state beyond the kind (status flags, F_SETOWN owners, a deleted file's
// attributes, a UDP socket's shutdown) and the less common kinds (packet sockets, epoll watches
// through closed fds, fanotify, strict seccomp): the fdstate workload sets each up, is dumped
// and restored, and checks every item itself.
import test, { type ExecutionContext } from 'ava';
import { selfCheckInContainer, selfCheckRoundTrip } from '../helpers/stasis.js';

async function roundTrip(t: ExecutionContext, mode: string): Promise<void> {
  await selfCheckRoundTrip(t, 'fdstate', { args: (work) => [work, mode] });
}

test.serial('a pipe end keeps O_NONBLOCK apart from the other end and from a reopen of it, and its queued data', async (t) => {
  await roundTrip(t, 'pipe-flags');
});

test.serial('F_SETOWN/F_SETSIG owners (process, process group) and O_ASYNC survive, and the signals are delivered', async (t) => {
  await roundTrip(t, 'fown');
});

test.serial('an F_SETOWN_EX owner that is a thread (not the main one) survives', async (t) => {
  await roundTrip(t, 'fown-thread');
});

test.serial('a deleted open file keeps its mode (setuid/setgid bits), owner and mtime', async (t) => {
  await roundTrip(t, 'file-attr');
});

test.serial('a UDP socket shut down for writing still refuses sends; its peer shut down for reading polls RDHUP', async (t) => {
  await roundTrip(t, 'udp-shutdown');
});

test.serial('packet sockets keep their binding, version, options, ring, membership and fanout, and see traffic', async (t) => {
  await roundTrip(t, 'packet');
});

// In a container (its own pid, mount and network namespaces, restored under --root): owners by
// the pids the container knows, sockets in its network namespace, marks on its paths.
for (const mode of ['packet', 'fown', 'fown-thread', 'udp-shutdown', 'epoll-closed', 'fanotify', 'seccomp-strict', 'pipe-flags', 'file-attr']) {
  test.serial(`in a container: fdstate ${mode} checks itself after runc checkpoint and restore through stasis`, async (t) => {
    await selfCheckInContainer(t, 'fdstate', { args: [mode] });
  });
}

test.serial('epoll watches added through an fd since closed (twice, the number now reused) still fire', async (t) => {
  await roundTrip(t, 'epoll-closed');
});

test.serial('a fanotify group keeps its flags, inode mark, mount mark and ignored mask', async (t) => {
  await roundTrip(t, 'fanotify');
});

test.serial('a child and a thread in strict seccomp mode are restored in strict mode, run on, and a forbidden call kills', async (t) => {
  await roundTrip(t, 'seccomp-strict');
});
